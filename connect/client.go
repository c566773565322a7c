// Package connect is a typed client for the UltiMaker Connect API (Digital Factory).
package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
)

// DefaultBaseURL is the production Connect API root.
const DefaultBaseURL = "https://api.ultimaker.com/connect/v1"

// maxBody bounds what one answer may make us read; a status of a large
// cluster is far below this.
const maxBody = 16 << 20

// maxPages bounds pagination so a server that always offers a next page
// cannot keep us busy forever.
const maxPages = 1000

// Options configure a Client.
type Options struct {
	// BaseURL is the API root, e.g. DefaultBaseURL.
	BaseURL string
	// TokenSource supplies bearer tokens. It is the seam for API tokens
	// (oauth2.StaticTokenSource) and OAuth2 refresh; nil sends no header.
	// If it also implements Invalidator, a request answered 401 or 403
	// tokenExpired is retried once with a fresh token.
	TokenSource oauth2.TokenSource
	// HTTPClient is the transport to use; its Transport is wrapped with the
	// token source. Nil means a fresh client on http.DefaultTransport.
	HTTPClient *http.Client
	// Timeout bounds each request, including reading the body. Default 20s.
	Timeout time.Duration
	// UserAgent is sent on every request.
	UserAgent string
	// Observe, when set, is told of every request: its route with ids
	// replaced by {id}, the HTTP status (0 without an answer) and latency.
	Observe func(method, route string, status int, took time.Duration)
	// Log gets one warning per route and field for every field of an
	// unexpected type in an answer (the field is treated as absent).
	Log zerolog.Logger
}

// Client calls the Connect API. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	http      *http.Client
	images    *http.Client // public addresses only, but the API's own (images.go)
	ts        oauth2.TokenSource
	timeout   time.Duration
	userAgent string
	now       func() time.Time
	observe   func(method, route string, status int, took time.Duration)
	log       zerolog.Logger
	warned    sync.Map // method route field -> true: warned once per run

	mu          sync.Mutex
	pausedUntil time.Time // a 429 pauses every request of the account
	// After a pause one request probes; the rest wait for its answer.
	needProbe bool          // a 429 came, and no answer other than 429 since
	probing   bool          // the probe is out
	probeDone chan struct{} // closed when it comes back
}

// New returns a Client for opts.BaseURL.
func New(opts Options) (*Client, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("connect: base URL %q: want http(s)://host/path", opts.BaseURL)
	}
	// http.DefaultTransport keeps two idle connections per host: with
	// more requests in flight than that, every request beyond two dialled
	// and closed a connection of its own (most of a poll's CPU at 1,000
	// printers). Keep enough for every request in flight.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	hc := &http.Client{Transport: tr}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		hc = &c
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "ultimaker2mqtt"
	}
	return &Client{base: u, http: hc, images: imageClient(hc, u), ts: opts.TokenSource, timeout: opts.Timeout,
		userAgent: opts.UserAgent, now: time.Now, observe: opts.Observe,
		log: opts.Log.With().Str("component", "connect").Logger()}, nil
}

// Clusters lists every cluster the token can see, following all pages.
func (c *Client) Clusters(ctx context.Context) ([]Cluster, error) {
	var all []Cluster
	for page := 1; page <= maxPages; page++ {
		var list []Cluster
		var meta struct {
			Meta  *Pagination `json:"meta"`
			Links *Links      `json:"links"`
		}
		q := url.Values{"page": {strconv.Itoa(page)}}
		if err := c.do(ctx, http.MethodGet, "/clusters", q, nil, &list, &meta); err != nil {
			return nil, err
		}
		all = append(all, list...)
		// Stop on the last page, or when the server gives no page info and
		// no next link (an unpaginated answer), or on an empty page.
		if len(list) == 0 {
			break
		}
		if meta.Meta != nil && meta.Meta.Page.TotalPages > 0 {
			if float64(page) >= meta.Meta.Page.TotalPages {
				break
			}
			continue
		}
		if meta.Links == nil || meta.Links.Next == "" {
			break
		}
	}
	return all, nil
}

// Cluster fetches one cluster.
func (c *Client) Cluster(ctx context.Context, clusterID string) (*Cluster, error) {
	var v Cluster
	if err := c.do(ctx, http.MethodGet, "/clusters/"+seg(clusterID), nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// ClusterStatus fetches the live status of one cluster: printers, queue and
// recently completed jobs.
func (c *Client) ClusterStatus(ctx context.Context, clusterID string) (*ClusterStatus, error) {
	var v ClusterStatus
	if err := c.do(ctx, http.MethodGet, "/clusters/"+seg(clusterID)+"/status", nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// PendingMaintenance lists a cluster's pending maintenance tasks.
func (c *Client) PendingMaintenance(ctx context.Context, clusterID string) ([]MaintenanceTask, error) {
	var v []MaintenanceTask
	if err := c.do(ctx, http.MethodGet, "/clusters/"+seg(clusterID)+"/maintenance/pending", nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// PrintJob fetches one print job with its source file.
func (c *Client) PrintJob(ctx context.Context, clusterID, jobUUID string) (*PrintJobDetails, error) {
	var v PrintJobDetails
	if err := c.do(ctx, http.MethodGet, "/clusters/"+seg(clusterID)+"/print_jobs/"+seg(jobUUID), nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// ActionStatus fetches the state of an asynchronous action.
func (c *Client) ActionStatus(ctx context.Context, clusterID, actionID string) (*ActionStatus, error) {
	var v ActionStatus
	if err := c.do(ctx, http.MethodGet, "/clusters/"+seg(clusterID)+"/action_status/"+seg(actionID), nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// PrinterAction starts a printer action such as get_webcam_snapshot. body
// may be nil.
func (c *Client) PrinterAction(ctx context.Context, clusterID, printerUUID, action string, body *PrinterActionBody) (*ActionStatus, error) {
	var v ActionStatus
	path := "/clusters/" + seg(clusterID) + "/printers/" + seg(printerUUID) + "/action/" + seg(action)
	if err := c.do(ctx, http.MethodPost, path, nil, dataOf(body), &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// PrintJobAction starts a print-job action: pause, print (resume), abort,
// move, remove, force. body may be nil.
func (c *Client) PrintJobAction(ctx context.Context, clusterID, jobUUID, action string, body *PrintJobActionBody) (*ActionStatus, error) {
	var v ActionStatus
	path := "/clusters/" + seg(clusterID) + "/print_jobs/" + seg(jobUUID) + "/action/" + seg(action)
	if err := c.do(ctx, http.MethodPost, path, nil, dataOf(body), &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// MakerBotPrinters lists the account's MakerBot printers.
func (c *Client) MakerBotPrinters(ctx context.Context) ([]MakerBotPrinter, error) {
	var v []MakerBotPrinter
	if err := c.do(ctx, http.MethodGet, "/makerbot/printers", nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// dataOf wraps a request body in the {"data": …} envelope; a nil body is
// sent as {"data":{}}, which the API accepts for every action.
func dataOf[T any](body *T) any {
	if body == nil {
		return map[string]any{"data": map[string]any{}}
	}
	return map[string]any{"data": body}
}

func seg(s string) string { return url.PathEscape(s) }

// do performs one request. out receives the envelope's data; extra, when
// non-nil, receives the whole envelope (for meta and links).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out, extra any) error {
	probe, err := c.rateLimitGate(ctx, method, path)
	if err != nil {
		return err
	}
	// answered says whether the probe met anything but a 429: then the
	// requests waiting behind it go.
	answered := false
	if probe {
		defer func() { c.endProbe(answered) }()
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	// path arrives escaped (seg); keep both forms so an id holding '/'
	// stays one path segment.
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path
	if p, err := url.PathUnescape(u.RawPath); err == nil {
		u.Path = p
	}
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		payload = b
	}
	var resp *http.Response
	var raw []byte
	// The body is only decoded (strings are copied out), so its buffer
	// can serve the next request.
	buf := bodies.Get().(*bytes.Buffer)
	defer putBody(buf)
	for attempt := 1; ; attempt++ {
		var used string
		var err error
		resp, raw, used, err = c.roundTrip(ctx, method, u.String(), path, payload, buf)
		if err != nil {
			return err
		}
		answered = resp.StatusCode != http.StatusTooManyRequests
		if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			break
		}
		apiErr := newHTTPError(method, path, resp, raw, c.now())
		if apiErr.Kind == KindRateLimited {
			c.pause(apiErr.RetryAfter)
			return apiErr
		}
		inv, ok := c.ts.(Invalidator)
		expired := resp.StatusCode == http.StatusUnauthorized || (resp.StatusCode == http.StatusForbidden && apiErr.Code == "tokenExpired")
		if !ok || !expired || attempt > 1 || used == "" {
			return apiErr
		}
		// The token died early (revoked, clock skew): refresh and retry once.
		inv.Invalidate(used)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	probs, err := decodeData(raw, out, extra)
	c.warn(method, path, probs)
	if err != nil {
		return &APIError{Kind: KindBadBody, HTTPStatus: resp.StatusCode, Method: method, Path: path, Err: err}
	}
	return nil
}

// rateLimitGate refuses, without a request, anything sent while the
// account is paused by a 429: the limit is per account, so any request in
// the window only prolongs it. When the pause ends one request probes
// (probe true: call endProbe with its outcome); the others wait for its
// answer, then go if it met no 429 and are refused if it did, so a window
// longer than Retry-After said costs one request, not every one due.
func (c *Client) rateLimitGate(ctx context.Context, method, path string) (probe bool, err error) {
	for {
		c.mu.Lock()
		now := c.now()
		switch {
		case now.Before(c.pausedUntil):
			until := c.pausedUntil
			c.mu.Unlock()
			return false, &APIError{Kind: KindRateLimited, HTTPStatus: http.StatusTooManyRequests, Code: "rateLimited",
				Title: "Rate limited by the cloud; nothing sent", RetryAfter: until.Sub(now), Method: method, Path: path}
		case !c.needProbe:
			c.mu.Unlock()
			return false, nil
		case !c.probing:
			c.probing, c.probeDone = true, make(chan struct{})
			c.mu.Unlock()
			return true, nil
		}
		wait := c.probeDone
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false, &APIError{Kind: KindNetwork, Method: method, Path: path, Err: ctx.Err()}
		}
	}
}

// endProbe lets the requests waiting behind a probe go on: they are sent
// when it met no 429 (answered); else the new pause refuses them, or one
// of them probes again (the probe got no answer at all).
func (c *Client) endProbe(answered bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probing = false
	c.needProbe = c.needProbe && !answered
	close(c.probeDone)
}

func (c *Client) pause(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.needProbe = true
	if until := c.now().Add(d); until.After(c.pausedUntil) {
		c.pausedUntil = until
	}
}

// RateLimitedUntil is when the account's current 429 pause ends; zero or
// past when there is none.
func (c *Client) RateLimitedUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pausedUntil
}

// warn logs each field problem once per route, field and run: a cloud
// that sends one odd field sends it on every poll.
func (c *Client) warn(method, path string, probs []FieldProblem) {
	for _, p := range probs {
		key := method + " " + Route(path) + " " + p.Path
		if _, seen := c.warned.LoadOrStore(key, true); seen {
			continue
		}
		msg := "unexpected value in cloud answer; field treated as absent"
		if p.Skipped {
			msg = "unreadable identity in cloud answer; record left out"
		}
		c.log.Warn().Str("route", method+" "+Route(path)).Str("field", p.Path).Str("problem", p.Err.Error()).Msg(msg)
	}
}

// Invalidator is implemented by token sources that can refresh a token
// the API rejected.
type Invalidator interface {
	Invalidate(accessToken string)
}

// bodies are reused read buffers: an answer read into a new slice each
// time (io.ReadAll, growing it from 512 bytes) was a tenth of a poll's
// garbage.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBody(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 { // a rare huge answer is not kept for good
		bodies.Put(b)
	}
}

// roundTrip sends one request and reads the answer into buf (a new buffer
// when nil); the bytes returned are buf's. It returns the access token it
// used, for Invalidate.
func (c *Client) roundTrip(ctx context.Context, method, target, path string, payload []byte, buf *bytes.Buffer) (*http.Response, []byte, string, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	var used string
	if c.ts != nil {
		tok, err := c.ts.Token()
		if err != nil {
			return nil, nil, "", &APIError{Kind: KindAuth, Code: "noToken", Title: "No access token", Method: method, Path: path, Err: err}
		}
		used = tok.AccessToken
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if c.observe != nil {
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		c.observe(method, Route(path), status, time.Since(start))
	}
	if err != nil {
		return nil, nil, used, &APIError{Kind: KindNetwork, Method: method, Path: path, Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if resp.ContentLength > 0 && resp.ContentLength <= maxBody {
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1))
	raw := buf.Bytes()
	if err != nil {
		return nil, nil, used, &APIError{Kind: KindNetwork, HTTPStatus: resp.StatusCode, Method: method, Path: path, Err: scrubURLError(err)}
	}
	if len(raw) > maxBody {
		return nil, nil, used, &APIError{Kind: KindBadBody, HTTPStatus: resp.StatusCode, Method: method, Path: path, Err: errors.New("body too large")}
	}
	return resp, raw, used, nil
}

// decodeData decodes a {"data": …} envelope into out, and the whole
// envelope into extra when it is non-nil. A body without "data" is an
// error: the API always wraps, and a bare object would decode to zero values
// that look like a real, empty answer.
//
// A value of the wrong type does not fail the answer: the field is left
// absent and reported as a FieldProblem, and a list element whose identity
// is unreadable is left out alone (see decodeLenient).
func decodeData(raw []byte, out, extra any) ([]FieldProblem, error) {
	// One pass over the body: the envelope's data decodes straight into
	// out's type (decoding it as a RawMessage first read the body twice).
	env := reflect.New(envelopeType(reflect.TypeOf(out)))
	err := json.Unmarshal(raw, env.Interface())
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return decodeDataLenient(raw, out, extra)
	case err != nil:
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	data := env.Elem().Field(0)
	if data.IsNil() {
		return nil, errors.New("decode envelope: no data")
	}
	reflect.ValueOf(out).Elem().Set(data.Elem())
	return nil, decodeExtra(raw, extra)
}

// envelopeTypes caches struct{ Data T `json:"data"` } per pointer type T.
var envelopeTypes sync.Map

func envelopeType(ptr reflect.Type) reflect.Type {
	if t, ok := envelopeTypes.Load(ptr); ok {
		return t.(reflect.Type)
	}
	t := reflect.StructOf([]reflect.StructField{{Name: "Data", Type: ptr, Tag: `json:"data"`}})
	envelopeTypes.Store(ptr, t)
	return t
}

// decodeDataLenient is the slow path for an answer with a value of the
// wrong type somewhere: field by field, see decodeLenient.
func decodeDataLenient(raw []byte, out, extra any) ([]FieldProblem, error) {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	if len(env.Data) == 0 || bytes.Equal(env.Data, []byte("null")) {
		return nil, errors.New("decode envelope: no data")
	}
	reflect.ValueOf(out).Elem().SetZero()
	probs, err := decodeLenient(env.Data, out)
	if err != nil {
		return probs, fmt.Errorf("decode data: %w", err)
	}
	return probs, decodeExtra(raw, extra)
}

// decodeExtra reads the whole envelope (meta, links) into extra. Paging is
// a hint: a wrong-typed field there costs the hint only.
func decodeExtra(raw []byte, extra any) error {
	if extra == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if err := json.Unmarshal(raw, extra); err != nil && !errors.As(err, &te) {
		return fmt.Errorf("decode envelope meta: %w", err)
	}
	return nil
}

// scrubURLError drops the URL from a *url.Error: the path is already in
// the APIError, and a URL could carry a query we do not want in logs.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// PrintRequest is a PrintRequestResponse: a job accepted into a cluster's
// queue.
type PrintRequest struct {
	JobID           string `json:"job_id"`
	JobInstanceUUID string `json:"job_instance_uuid"`
	Status          string `json:"status"`
	GeneratedTime   Time   `json:"generated_time"`
}

// Print sends an uploaded Digital Factory job (its job_id) to a cluster.
func (c *Client) Print(ctx context.Context, clusterID, jobID string) (*PrintRequest, error) {
	var v PrintRequest
	if err := c.do(ctx, http.MethodPost, "/clusters/"+seg(clusterID)+"/print/"+seg(jobID), nil, map[string]any{"data": map[string]any{}}, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// Reprint queues a recently completed job again on clusterID.
func (c *Client) Reprint(ctx context.Context, clusterID, originalClusterID, jobUUID string) (*PrintRequest, error) {
	var v PrintRequest
	path := "/clusters/" + seg(clusterID) + "/reprint/" + seg(originalClusterID) + "/" + seg(jobUUID)
	if err := c.do(ctx, http.MethodPost, path, nil, map[string]any{"data": map[string]any{}}, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// CompleteMaintenance logs maintenance tasks of a cluster as done.
func (c *Client) CompleteMaintenance(ctx context.Context, clusterID string, taskCodes []string) error {
	body := map[string]any{"data": map[string]any{"task_codes": taskCodes}}
	return c.do(ctx, http.MethodPut, "/clusters/"+seg(clusterID)+"/maintenance", nil, body, nil, nil)
}

// routeWords are the fixed words of Connect paths; anything else in a path
// is an id.
var routeWords = map[string]bool{"clusters": true, "cluster": true, "status": true, "maintenance": true, "pending": true,
	"print_jobs": true, "action": true, "action_status": true, "printers": true, "makerbot": true, "print": true, "reprint": true,
	"note": true, "share": true, "share_all": true, "team_count": true, "teams": true, "user": true, "reports": true,
	"filters": true, "completed": true, "confirm-registration": true, "confirm-registration-pin": true, "materials": true,
	"upload": true, "settings": true, "usage": true, "spec": true, "teapot": true}

// Route is path with its ids replaced by {id} (action names after
// "action" are kept), for metrics with bounded label values.
func Route(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if p == "" || routeWords[p] || (i > 0 && parts[i-1] == "action") {
			continue
		}
		parts[i] = "{id}"
	}
	return strings.Join(parts, "/")
}

// Picture fetches a picture the cloud made (the image_url of a webcam
// snapshot): a JPEG of at most picture.MaxSize (see Image).
func (c *Client) Picture(ctx context.Context, rawURL string) ([]byte, error) {
	b, typ, err := c.Image(ctx, rawURL)
	if err == nil && typ != "image/jpeg" {
		err = fmt.Errorf("picture: %w", picture.ErrNotJPEG)
	}
	return b, err
}

// Image fetches an image the cloud keeps (a webcam snapshot, a job's
// preview): a JPEG or PNG of at most picture.MaxSize, with its media
// type, without the bearer token. The URL comes from an answer, so only
// https addresses, or the API's own host, are fetched.
func (c *Client) Image(ctx context.Context, rawURL string) ([]byte, string, error) {
	allowed := func(u *url.URL) bool {
		return u.Host != "" && (u.Scheme == "https" || u.Scheme == c.base.Scheme && u.Host == c.base.Host)
	}
	u, err := url.Parse(rawURL)
	if err != nil || !allowed(u) {
		return nil, "", fmt.Errorf("picture %q: want an https address", rawURL)
	}
	hc := *c.images
	hc.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) > 3 || !allowed(r.URL) {
			return fmt.Errorf("picture: redirect to %s refused", r.URL.Redacted())
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", &APIError{Kind: KindNetwork, Method: http.MethodGet, Path: u.Path, Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("picture: HTTP %d", resp.StatusCode)
	}
	b, typ, err := picture.ReadImage(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("picture: %w", err)
	}
	return b, typ, nil
}
