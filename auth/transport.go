package auth

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTPClient returns the client for token requests: bounded by timeout,
// and tolerant of an expires_in that arrives as a float or a string, which
// golang.org/x/oauth2 refuses (it wants an integer), failing the whole
// sign-in over one field.
func HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: tokenTransport{http.DefaultTransport}}
}

// tokenTransport rewrites expires_in in JSON token responses to whole
// seconds; everything else passes through untouched.
type tokenTransport struct{ next http.RoundTripper }

func (t tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(NormalizeExpiresIn(body)))
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return resp, nil
}

// NormalizeExpiresIn returns body with a float or numeric-string
// expires_in replaced by whole seconds; a body it cannot read, or whose
// expires_in is already an integer or absent, comes back unchanged.
func NormalizeExpiresIn(body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	raw, ok := m["expires_in"]
	if !ok {
		return body
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return body
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			delete(m, "expires_in") // unreadable: as if absent
			return remarshal(m, body)
		}
		f = v
	} else if f == math.Trunc(f) && !bytes.ContainsAny(raw, ".eE") {
		return body // already what oauth2 wants
	}
	if math.IsNaN(f) || f < 0 {
		f = 0
	}
	m["expires_in"] = json.RawMessage(strconv.FormatInt(int64(min(f, math.MaxInt32)), 10))
	return remarshal(m, body)
}

func remarshal(m map[string]json.RawMessage, fallback []byte) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		return fallback
	}
	return b
}
