package connect

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind classifies a failed Connect request by what the caller should do.
type Kind string

// Error kinds. The values are stable: they appear in logs and MQTT payloads.
const (
	KindAuth        Kind = "auth"         // 401, 403: refresh or re-authorise
	KindNotFound    Kind = "not_found"    // 404
	KindConflict    Kind = "conflict"     // 409, e.g. printerNotAcceptingJobs
	KindRateLimited Kind = "rate_limited" // 429: wait RetryAfter
	KindBadRequest  Kind = "bad_request"  // other 4xx
	KindServer      Kind = "server"       // 5xx
	KindNetwork     Kind = "network"      // no HTTP answer: DNS, refused, timeout
	KindBadBody     Kind = "bad_body"     // an answer that is not the documented JSON
)

// APIError is a failed Connect request, built from the API's error object
// when there is one. It never carries the bearer token or a request body.
type APIError struct {
	Kind       Kind
	HTTPStatus int           // 0 for network errors
	Code       string        // e.g. "printerNotAcceptingJobs"
	Title      string        // the API's human-readable title
	Detail     string        // optional detail
	RetryAfter time.Duration // from Retry-After on 429 (and 503)
	Method     string
	Path       string // path below the API root, no query
	Err        error  // underlying cause for network and bad-body errors
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Method, e.Path)
	switch {
	case e.HTTPStatus == 0:
		fmt.Fprintf(&b, "%s error", e.Kind)
	default:
		fmt.Fprintf(&b, "%d", e.HTTPStatus)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
	}
	if e.Title != "" {
		fmt.Fprintf(&b, ": %s", e.Title)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.Err }

// Answered reports whether err (nil included) still means the API gave a
// sensible answer: anything but no answer, a 5xx or an unreadable body.
func Answered(err error) bool {
	switch KindOf(err) {
	case KindNetwork, KindServer, KindBadBody:
		return false
	}
	return true
}

// Retryable reports whether the same request may succeed later: no
// answer, a 5xx, or a 429 (after Retry-After).
func Retryable(err error) bool {
	switch KindOf(err) {
	case KindNetwork, KindServer, KindRateLimited:
		return true
	}
	return false
}

// KindOf returns the Kind of err if it is or wraps an *APIError, else "".
func KindOf(err error) Kind {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Kind
	}
	return ""
}

// errorObject is one entry of the API's {"errors":[…]} body.
type errorObject struct {
	ID         string          `json:"id"`
	Code       string          `json:"code"`
	Title      string          `json:"title"`
	HTTPStatus json.RawMessage `json:"http_status"` // a string per the spec; tolerate numbers
	Detail     string          `json:"detail"`
}

// kindForStatus maps an HTTP status to a Kind. 403 tokenExpired and a plain
// 403 are both auth: the caller cannot tell a missing scope from an expired
// token without trying a refresh.
func kindForStatus(status int) Kind {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return KindAuth
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusConflict:
		return KindConflict
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status >= 500:
		return KindServer
	default:
		return KindBadRequest
	}
}

// newHTTPError builds the error for a non-2xx answer from its body.
func newHTTPError(method, path string, resp *http.Response, body []byte, now time.Time) *APIError {
	e := &APIError{
		Kind:       kindForStatus(resp.StatusCode),
		HTTPStatus: resp.StatusCode,
		Method:     method,
		Path:       path,
	}
	var env struct {
		Errors []errorObject `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		o := env.Errors[0]
		e.Code, e.Title, e.Detail = o.Code, o.Title, o.Detail
	}
	if e.Title == "" {
		e.Title = http.StatusText(resp.StatusCode)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	if e.Kind == KindRateLimited && e.RetryAfter <= 0 {
		e.RetryAfter = DefaultRetryAfter
	}
	return e
}

// DefaultRetryAfter is how long a 429 without Retry-After pauses the
// account: the API documents no limit, so a minute, as the FAQ's polling
// advice.
const DefaultRetryAfter = time.Minute

// parseRetryAfter reads delta-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return min(time.Duration(s)*time.Second, 24*time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, 24*time.Hour)
		}
	}
	return 0
}
