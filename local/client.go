// Package local reads UltiMaker printers through their own LAN API, pairs with them and sends them print-job actions.
package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
)

// maxBody bounds what the bridge reads of one LAN answer: a printer's
// whole state is a few KB; a cluster of 20 printers some tens.
const maxBody = 1 << 20

// ErrAuth is a printer refusing the bridge (401 or 403): reads that need
// pairing, or a credential it no longer accepts.
var ErrAuth = errors.New("the printer refuses the bridge: pair it (ultimaker2mqtt pair HOST, or bridge/request/pair)")

// ErrNotWatched is the answer to pairing a printer the bridge does not read.
var ErrNotWatched = errors.New("no printer the bridge reads on the LAN")

// ErrNoJob is the answer of a printer without a print job.
var ErrNoJob = errors.New("no print job")

// StatusError is an answer with an unexpected HTTP status.
type StatusError struct {
	Method, Path string
	Code         int
}

func (e *StatusError) Error() string { return fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.Code) }

// Credential is what pairing gives: the digest user name (id) and password
// (key). The key is a secret: it never reaches logs or topics.
type Credential struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// Client talks to one printer's LAN API. It is safe for concurrent use.
type Client struct {
	base      string // http://host[:port]
	host      string
	transport http.RoundTripper
	timeout   time.Duration

	mu     sync.Mutex
	cred   *Credential
	authed *http.Client // digest, with cred
	plain  *http.Client
}

// ParseHost checks a LOCAL_PRINTERS entry (a host name or IP, optionally
// with :port) and returns it as host or host:port.
func ParseHost(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "/?#@ \t") {
		return "", fmt.Errorf("%q: want a host name or IP, optionally with :port", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), ""
	}
	if host == "" {
		return "", fmt.Errorf("%q: no host", s)
	}
	if port != "" {
		var n int
		if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 1 || n > 65535 || fmt.Sprint(n) != port {
			return "", fmt.Errorf("%q: bad port", s)
		}
		return net.JoinHostPort(host, port), nil
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]", nil // IPv6 without a port
	}
	return host, nil
}

// NewClient returns a client of the printer at host (host or host:port);
// transport nil uses a transport of its own.
func NewClient(host string, timeout time.Duration, transport http.RoundTripper) *Client {
	if transport == nil {
		transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute,
			DialContext: (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext}
	}
	return &Client{base: "http://" + host, host: host, transport: transport, timeout: timeout,
		plain: &http.Client{Transport: transport, Timeout: timeout, CheckRedirect: noRedirect}}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Host is the printer's address as configured.
func (c *Client) Host() string { return c.host }

// URL is the absolute URL of a path on the printer.
func (c *Client) URL(path string) string { return c.base + path }

// SetCredential makes the client sign its requests with cred (nil: none).
func (c *Client) SetCredential(cred *Credential) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cred, c.authed = cred, nil
	if cred != nil {
		c.authed = &http.Client{Timeout: c.timeout, CheckRedirect: noRedirect,
			Transport: &digest.Transport{Username: cred.ID, Password: cred.Key, Transport: c.transport}}
	}
}

// Uses reports whether the client signs with cred.
func (c *Client) Uses(cred *Credential) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cred != nil && cred != nil && *c.cred == *cred
}

// Paired reports whether the client has a credential.
func (c *Client) Paired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cred != nil
}

func (c *Client) httpClient() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.authed != nil {
		return c.authed
	}
	return c.plain
}

// do sends one request and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return nil, resp.StatusCode, fmt.Errorf("%s %s: read: %w", method, path, err)
	case len(b) > maxBody:
		return nil, resp.StatusCode, fmt.Errorf("%s %s: answer over %d bytes", method, path, maxBody)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, resp.StatusCode, ErrAuth
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return b, resp.StatusCode, &StatusError{Method: method, Path: path, Code: resp.StatusCode}
	}
	return b, resp.StatusCode, nil
}

// get reads path into v, leniently: a field of the wrong type is absent.
func (c *Client) get(ctx context.Context, path string, v any) error {
	b, _, err := c.do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	if _, err := connect.DecodeLenient(b, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	return nil
}

// Printer reads /api/v1/printer: status, temperatures, print cores.
func (c *Client) Printer(ctx context.Context) (*Printer, error) {
	var p Printer
	return &p, c.get(ctx, "/api/v1/printer", &p)
}

// PrintJob reads /api/v1/print_job; ErrNoJob when there is none (404,
// 204 or an empty body).
func (c *Client) PrintJob(ctx context.Context) (*PrintJob, error) {
	b, code, err := c.do(ctx, http.MethodGet, "/api/v1/print_job", "", nil)
	if code == http.StatusNotFound || code == http.StatusNoContent || err == nil && len(bytes.TrimSpace(b)) == 0 {
		return nil, ErrNoJob
	}
	if err != nil {
		return nil, err
	}
	var j PrintJob
	if _, err := connect.DecodeLenient(b, &j); err != nil {
		return nil, fmt.Errorf("GET /api/v1/print_job: decode: %w", err)
	}
	if j.State == "" || j.State == "none" {
		return nil, ErrNoJob
	}
	return &j, nil
}

// History reads one page of the printer's own job history, newest
// first: count jobs from offset.
func (c *Client) History(ctx context.Context, offset, count int) ([]HistoryJob, error) {
	var jobs []HistoryJob
	return jobs, c.get(ctx, fmt.Sprintf("/api/v1/history/print_jobs?offset=%d&count=%d", offset, count), &jobs)
}

// System reads /api/v1/system: the printer's identity and firmware.
func (c *Client) System(ctx context.Context) (*System, error) {
	var s System
	return &s, c.get(ctx, "/api/v1/system", &s)
}

// HasCamera reports whether the printer has camera 0 (GET /api/v1/camera
// lists its feed).
func (c *Client) HasCamera(ctx context.Context) (bool, error) {
	var cam struct {
		Feed string `json:"feed"`
	}
	err := c.get(ctx, "/api/v1/camera", &cam)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return false, nil
	}
	return err == nil && cam.Feed != "", err
}

// Snapshot takes a picture with the printer's camera 0: GET
// /api/v1/camera/0/snapshot, which redirects to the camera's own server
// (port 8080). Redirects are followed only on the printer's own host, and
// the answer must be a JPEG of at most picture.MaxSize.
func (c *Client) Snapshot(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/camera/0/snapshot", nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: c.transport, Timeout: c.timeout, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if len(via) > 3 || r.URL.Hostname() != hostOnly(c.host) || r.URL.Scheme != "http" {
			return fmt.Errorf("camera redirect to %s refused: not the printer", r.URL.Redacted())
		}
		return nil
	}}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("camera snapshot: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, ErrAuth
	case resp.StatusCode != http.StatusOK:
		return nil, &StatusError{Method: http.MethodGet, Path: "/api/v1/camera/0/snapshot", Code: resp.StatusCode}
	}
	b, err := picture.Read(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("camera snapshot: %w", err)
	}
	return b, nil
}

// ClusterPrinters reads the group's printers from /cluster-api/v1 (only a
// group's host lists them; others answer an empty list).
func (c *Client) ClusterPrinters(ctx context.Context) ([]connect.Printer, error) {
	var ps []connect.Printer
	return ps, c.get(ctx, "/cluster-api/v1/printers", &ps)
}

// ClusterPrintJobs reads the group's queued and active print jobs.
func (c *Client) ClusterPrintJobs(ctx context.Context) ([]connect.PrintJob, error) {
	var js []connect.PrintJob
	return js, c.get(ctx, "/cluster-api/v1/print_jobs", &js)
}

func (c *Client) sendJSON(ctx context.Context, method, path string, v any) error {
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return err
		}
	}
	_, _, err := c.do(ctx, method, path, "application/json", body)
	return err
}

// SetJobState asks the printer to "pause", "print" (resume) or "abort" its
// job; it needs pairing.
func (c *Client) SetJobState(ctx context.Context, target string) error {
	return c.sendJSON(ctx, http.MethodPut, "/api/v1/print_job/state", map[string]string{"target": target})
}

// ClusterJobAction sends a queue action of a group's host: move_to_top,
// remove or force.
func (c *Client) ClusterJobAction(ctx context.Context, jobUUID, action string) error {
	p := "/cluster-api/v1/print_jobs/" + url.PathEscape(jobUUID)
	switch action {
	case "move_to_top":
		return c.sendJSON(ctx, http.MethodPost, p+"/action/move", map[string]any{"to_position": 0, "list": "queued"})
	case "remove":
		return c.sendJSON(ctx, http.MethodDelete, p, nil)
	case "force":
		return c.sendJSON(ctx, http.MethodPut, p, map[string]bool{"force": true})
	}
	return fmt.Errorf("no LAN queue action %q", action)
}

// RequestAuth starts pairing: the printer shows application and user and
// asks for ALLOW on its screen. exclusionKey replaces an earlier pairing
// made with the same key.
func (c *Client) RequestAuth(ctx context.Context, application, user, exclusionKey string) (*Credential, error) {
	form := url.Values{"application": {application}, "user": {user}, "exclusion_key": {exclusionKey}}
	b, _, err := c.do(ctx, http.MethodPost, "/api/v1/auth/request", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err != nil {
		return nil, err
	}
	var cred Credential
	if err := json.Unmarshal(b, &cred); err != nil || cred.ID == "" || cred.Key == "" {
		return nil, errors.New("POST /api/v1/auth/request: no id and key in the answer")
	}
	return &cred, nil
}

// CheckAuth is the pairing's state: "authorized", "unauthorized" or
// "unknown" (not answered yet on the printer).
func (c *Client) CheckAuth(ctx context.Context, id string) (string, error) {
	var m struct {
		Message string `json:"message"`
	}
	if err := c.get(ctx, "/api/v1/auth/check/"+url.PathEscape(id), &m); err != nil {
		return "", err
	}
	return m.Message, nil
}

// VerifyAuth checks that the printer accepts the client's credential.
func (c *Client) VerifyAuth(ctx context.Context) error {
	_, _, err := c.do(ctx, http.MethodGet, "/api/v1/auth/verify", "", nil)
	return err
}

// CloseIdleConnections closes kept-alive connections (at shutdown).
func (c *Client) CloseIdleConnections() { c.plain.CloseIdleConnections() }
