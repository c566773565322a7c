package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/activity"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testlog"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/monitor"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// fakeSource is a bridge with two printers in one cluster, one of them
// with a picture and a job that has a preview.
type fakeSource struct {
	mu       sync.Mutex
	printers map[string]state.Printer
}

func newFakeSource() *fakeSource {
	return &fakeSource{printers: map[string]state.Printer{
		"farm_s5": {ID: "farm_s5", FriendlyName: "Farm S5", Cluster: "farm", Online: true, Status: "printing",
			Job: &state.Job{Name: "bracket", PreviewURL: "https://cloud.example/preview/1?signature=secret"}},
		"farm_s3": {ID: "farm_s3", FriendlyName: "Farm S3", Cluster: "farm", Status: "idle"},
	}}
}

func (f *fakeSource) Printers() []state.Printer {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []state.Printer
	for _, p := range f.printers {
		out = append(out, p)
	}
	return out
}

func (f *fakeSource) Printer(id string) (state.Printer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.printers[id]
	return p, ok
}

func (f *fakeSource) set(p state.Printer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.printers[p.ID] = p
}

func (f *fakeSource) Clusters() []state.Cluster {
	c, _ := f.Cluster("farm")
	return []state.Cluster{c}
}

func (f *fakeSource) Cluster(id string) (state.Cluster, bool) {
	if id != "farm" {
		return state.Cluster{}, false
	}
	return state.Cluster{ID: "farm", FriendlyName: "Farm", Printers: []string{"farm_s3", "farm_s5"}}, true
}

func (f *fakeSource) Info() []byte { return []byte(`{"version":"test"}`) }

var jpeg = []byte{0xff, 0xd8, 0xff, 0xe0, 'j', 'p', 'e', 'g'}

func (f *fakeSource) LatestPicture(printer string) (picture.Picture, bool) {
	if printer != "farm_s5" {
		return picture.Picture{}, false
	}
	return picture.Picture{Printer: printer, JPEG: jpeg, TakenAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}, true
}

// fakeCommands answers every command with answer, after a pending one,
// and remembers what it was given.
type fakeCommands struct {
	mu        sync.Mutex
	answer    commands.Response
	submitted []string // topic and payload
}

func (f *fakeCommands) Submit(ctx context.Context, topic string, payload []byte, reply func(commands.Response)) {
	f.mu.Lock()
	f.submitted = append(f.submitted, topic+" "+string(payload))
	a := f.answer
	f.mu.Unlock()
	reply(commands.Response{Status: "pending", Action: a.Action})
	reply(a)
}

func (f *fakeCommands) MaxPayloadFor(topic string) int { return 256 }

func (f *fakeCommands) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.submitted...)
}

// fakeImages is the cloud's preview store.
type fakeImages struct {
	mu      sync.Mutex
	fetched int
	fail    bool
}

func (f *fakeImages) Image(ctx context.Context, url string) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetched++
	if f.fail {
		return nil, "", errors.New("cloud said 503")
	}
	return jpeg, "image/jpeg", nil
}

// discard is a broker that takes every message and keeps none.
type discard struct{}

func (discard) Publish(context.Context, ...bus.Message) error { return nil }

// newFeed is the activity feed as the bridge wires it to srv.
func newFeed(srv **Server) *activity.Feed {
	f := activity.New(activity.Config{Tree: topics.Tree{Base: "ultimaker"}}, discard{}, zerolog.Nop())
	f.Watch(func(items []activity.Item) { (*srv).Activity(items) })
	return f
}

// observe hands srv an update as the bridge does: its events through
// the activity feed.
func (w *world) observe(u poller.Update) {
	w.srv.Observe(u)
	w.feed.Events(u.Events)
}

type world struct {
	feed   *activity.Feed
	srv    *Server
	http   *httptest.Server
	src    *fakeSource
	cmd    *fakeCommands
	images *fakeImages
	log    *testlog.Buffer
}

// newWorld serves the page over real HTTP on loopback.
func newWorld(t *testing.T, token string) *world {
	t.Helper()
	w := &world{src: newFakeSource(), cmd: &fakeCommands{answer: commands.Response{Status: "ok", Action: "pause"}},
		images: &fakeImages{}, log: &testlog.Buffer{}}
	w.feed = newFeed(&w.srv)
	w.srv = New(Config{Tree: topics.Tree{Base: "ultimaker"}, Token: token, CommandTimeout: 2 * time.Second, Feed: w.feed},
		w.src, w.cmd, w.images, zerolog.New(w.log))
	w.http = httptest.NewServer(endpoint(w.srv))
	t.Cleanup(w.http.Close)
	return w
}

// endpoint serves srv as the bridge does: through monitor, which owns the
// Host check and the headers of every answer.
func endpoint(srv *Server) http.Handler {
	mon := monitor.New("", monitor.NewMetrics(monitor.Sources{}), func() monitor.Health { return monitor.Evaluate() },
		monitor.Options{}, zerolog.Nop())
	mon.Page(srv.Handler())
	return mon.Handler()
}

func (w *world) do(t *testing.T, method, path string, header map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, w.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestReadsServeTheBridgesView(t *testing.T) {
	w := newWorld(t, "")
	tests := []struct {
		name, path, typ, has string
	}{
		{"page", "/", "text/html; charset=utf-8", "<title>Printers"},
		{"script", "/assets/app.js", "text/javascript; charset=utf-8", "EventSource"},
		{"style", "/assets/app.css", "text/css; charset=utf-8", ".tile"},
		{"printers", "/api/printers", "application/json", `"friendly_name":"Farm S3"`},
		{"printer", "/api/printers/farm_s5", "application/json", `"friendly_name":"Farm S5"`},
		{"clusters", "/api/clusters", "application/json", `"id":"farm"`},
		{"cluster", "/api/clusters/farm", "application/json", `"friendly_name":"Farm"`},
		{"bridge", "/api/bridge", "application/json", `"version":"test"`},
		{"feed", "/api/feed", "application/json", `[]`},
		{"picture", "/api/printers/farm_s5/picture", "image/jpeg", "jpeg"},
		{"preview", "/api/printers/farm_s5/preview", "image/jpeg", "jpeg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := w.do(t, "GET", tt.path, nil, "")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tt.typ ||
				!strings.Contains(body, tt.has) {
				t.Errorf("%s: %s %q %.200q, want 200 %q with %q", tt.path, resp.Status,
					resp.Header.Get("Content-Type"), body, tt.typ, tt.has)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("%s: Content-Security-Policy %q", tt.path, csp)
			}
		})
	}
}

func TestPreviewIsFetchedOnce(t *testing.T) {
	w := newWorld(t, "")
	for range 3 {
		if resp, _ := w.do(t, "GET", "/api/printers/farm_s5/preview", nil, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("preview: %s", resp.Status)
		}
	}
	w.images.mu.Lock()
	fetched := w.images.fetched
	w.images.fail = true
	w.images.mu.Unlock()
	if fetched != 1 {
		t.Errorf("the preview was fetched %d times from the cloud, want once", fetched)
	}

	// A new job is a new preview; a cloud that fails is a 502, not a 500.
	p, _ := w.src.Printer("farm_s5")
	p.Job = &state.Job{Name: "next", PreviewURL: "https://cloud.example/preview/2"}
	w.src.set(p)
	if resp, _ := w.do(t, "GET", "/api/printers/farm_s5/preview", nil, ""); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("preview with the cloud failing: %s, want 502", resp.Status)
	}
}

func TestHostileRequestsGetA4xx(t *testing.T) {
	w := newWorld(t, "secret-token")
	long := strings.Repeat("a", 129)
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"upper-case id", "GET", "/api/printers/Farm_S5", http.StatusBadRequest},
		{"id too long", "GET", "/api/printers/" + long, http.StatusBadRequest},
		{"dot id", "GET", "/api/printers/..%2e/statistics", http.StatusBadRequest},
		{"escaped slash", "GET", "/api/printers/farm%2Fs5", http.StatusBadRequest},
		{"unknown printer", "GET", "/api/printers/nobody", http.StatusNotFound},
		{"no picture", "GET", "/api/printers/farm_s3/picture", http.StatusNotFound},
		{"no preview", "GET", "/api/printers/farm_s3/preview", http.StatusNotFound},
		{"no statistics", "GET", "/api/printers/farm_s5/statistics", http.StatusNotFound},
		{"unknown cluster", "GET", "/api/clusters/other", http.StatusNotFound},
		{"asset outside", "GET", "/assets/..%2fweb.go", http.StatusNotFound},
		{"asset unlisted", "GET", "/assets/index.html", http.StatusNotFound},
		{"unknown API", "GET", "/api/printers/farm_s5/secrets", http.StatusNotFound},
		{"wrong method", "DELETE", "/api/printers/farm_s5", http.StatusNotFound},
		{"action by GET", "GET", "/api/printers/farm_s5/actions", http.StatusNotFound},
		{"long query", "GET", "/api/printers?" + strings.Repeat("x", maxQuery+1), http.StatusRequestURITooLong},
		{"no page below", "GET", "/elsewhere", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := w.do(t, tt.method, tt.path, nil, "")
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s: %s %.200q, want %d", tt.method, tt.path, resp.Status, body, tt.want)
			}
		})
	}
	if n := len(w.cmd.calls()); n != 0 {
		t.Errorf("%d commands submitted by reads", n)
	}
}

func TestActionsNeedTheTokenAndTheOrigin(t *testing.T) {
	const token = "secret-token"
	bearer := map[string]string{"Authorization": "Bearer " + token}
	tests := []struct {
		name   string
		token  string // the bridge's WEB_TOKEN
		path   string
		header map[string]string
		body   string
		want   int
		sent   bool // the command reached the handler
	}{
		{"no token set", "", "/api/printers/farm_s5/actions", bearer, `{"action":"pause"}`, 401, false},
		{"no token sent", token, "/api/printers/farm_s5/actions", nil, `{"action":"pause"}`, 401, false},
		{"wrong token", token, "/api/printers/farm_s5/actions", map[string]string{"Authorization": "Bearer nope"},
			`{"action":"pause"}`, 401, false},
		{"token as basic", token, "/api/printers/farm_s5/actions", map[string]string{"Authorization": "Basic " + token},
			`{"action":"pause"}`, 401, false},
		{"other origin", token, "/api/printers/farm_s5/actions",
			map[string]string{"Authorization": "Bearer " + token, "Origin": "http://evil.example"}, `{"action":"pause"}`,
			403, false},
		{"cross-site fetch", token, "/api/printers/farm_s5/actions",
			map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "cross-site"}, `{"action":"pause"}`,
			403, false},
		{"body too large", token, "/api/printers/farm_s5/actions", bearer, `{"note":"` + strings.Repeat("n", 300) + `"}`,
			413, false},
		{"bad id", token, "/api/printers/FARM/actions", bearer, `{"action":"pause"}`, 400, false},
		{"printer action", token, "/api/printers/farm_s5/actions", bearer, `{"action":"pause"}`, 200, true},
		{"cluster action", token, "/api/clusters/farm/actions", bearer, `{"action":"pause"}`, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.token)
			resp, body := w.do(t, "POST", tt.path, tt.header, tt.body)
			if resp.StatusCode != tt.want {
				t.Errorf("%s, want %d: %.200s", resp.Status, tt.want, body)
			}
			if got := len(w.cmd.calls()) > 0; got != tt.sent {
				t.Errorf("command submitted %v, want %v (%v)", got, tt.sent, w.cmd.calls())
			}
			if strings.Contains(body, token) || strings.Contains(w.log.String(), token) {
				t.Error("the token leaked into an answer or the log")
			}
			if tt.sent {
				var a commands.Response
				if err := json.Unmarshal([]byte(body), &a); err != nil || a.Status != "ok" {
					t.Errorf("answer %q (%v), want the final answer, ok", body, err)
				}
			}
		})
	}
}

func TestActionTopicsAreTheCommandTopics(t *testing.T) {
	w := newWorld(t, "t")
	bearer := map[string]string{"Authorization": "Bearer t"}
	w.do(t, "POST", "/api/printers/farm_s5/actions", bearer, `{"action":"pause"}`)
	w.do(t, "POST", "/api/clusters/farm/actions", bearer, `{"action":"resume"}`)
	want := []string{"ultimaker/printers/farm_s5/set {\"action\":\"pause\"}", "ultimaker/clusters/farm/set {\"action\":\"resume\"}"}
	if got := w.cmd.calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("submitted %q, want %q", got, want)
	}
}

func TestRefusalsAreRateLimitedAndLoggedOnce(t *testing.T) {
	w := newWorld(t, "secret-token")
	codes := map[int]int{}
	for range burst + 5 {
		resp, _ := w.do(t, "GET", "/api/auth", map[string]string{"Authorization": "Bearer guess"}, "")
		codes[resp.StatusCode]++
	}
	if codes[401] != burst || codes[429] != 5 {
		t.Errorf("answers %v, want %d × 401 then 5 × 429", codes, burst)
	}
	if n := strings.Count(w.log.String(), "without the right token"); n != 1 {
		t.Errorf("the refusals were logged %d times, want once: %s", n, w.log.String())
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{"", 200},
		{commands.CodeBadRequest, 400},
		{commands.CodeUnknownAction, 400},
		{commands.CodeNotFound, 404},
		{commands.CodeConflict, 409},
		{commands.CodeReadOnly, 403},
		{commands.CodeBusy, 429},
		{commands.CodeTimeout, 504},
		{"cloud_error", 502},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			a := commands.Response{Status: "ok"}
			if tt.code != "" {
				a = commands.Response{Status: "error", Error: &commands.ErrorBody{Code: tt.code}}
			}
			if got := statusOf(a); got != tt.want {
				t.Errorf("statusOf(%s) = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
}

// sseReader reads a page's stream event by event.
type sseReader struct{ r *bufio.Reader }

func (s sseReader) next(t *testing.T) (event, data string) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case line == "" && event != "":
			return event, data
		}
	}
}

func TestStreamSendsASnapshotThenWhatChanged(t *testing.T) {
	w := newWorld(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", w.http.URL+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	in := sseReader{bufio.NewReader(resp.Body)}
	ev, data := in.next(t)
	var snap struct {
		Printers []state.Printer `json:"printers"`
		Pictures map[string]time.Time
		Controls bool
	}
	if err := json.Unmarshal([]byte(data), &snap); ev != "snapshot" || err != nil || len(snap.Printers) != 2 ||
		snap.Pictures["farm_s5"].IsZero() || snap.Controls {
		t.Fatalf("first event %s %.300s (%v), want a snapshot of 2 printers, a picture, no controls", ev, data, err)
	}

	// Three changes of one printer within the flush: sent once, as it is last.
	for i := range 3 {
		p, _ := w.src.Printer("farm_s3")
		p.FriendlyName = fmt.Sprintf("Farm S3 v%d", i)
		w.src.set(p)
		w.observe(poller.Update{Printers: []state.Printer{p},
			Events: []state.Event{{Type: "renamed", Printer: p.ID, PrinterName: p.FriendlyName}}})
	}
	got := map[string]string{}
	for len(got) < 2 {
		ev, data := in.next(t)
		if _, dup := got[ev]; dup {
			t.Fatalf("a second %s event in one flush: %s", ev, data)
		}
		got[ev] = data
	}
	var printers []state.Printer
	if err := json.Unmarshal([]byte(got["printers"]), &printers); err != nil || len(printers) != 1 ||
		printers[0].FriendlyName != "Farm S3 v2" {
		t.Errorf("printers event %s (%v), want farm_s3 once, as it is last", got["printers"], err)
	}
	var feed []activity.Item
	if err := json.Unmarshal([]byte(got["feed"]), &feed); err != nil || len(feed) != 3 {
		t.Errorf("feed event %s (%v), want the 3 events", got["feed"], err)
	}

	// A change with no event to tell.
	p, _ := w.src.Printer("farm_s5")
	p.Status = "paused"
	w.src.set(p)
	w.srv.Observe(poller.Update{Printers: []state.Printer{p}})
	if ev, data := in.next(t); ev != "printers" || !strings.Contains(data, `"status":"paused"`) {
		t.Errorf("after a quiet change: %s %.200s, want farm_s5 paused", ev, data)
	}

	// A printer that leaves, and an answer to a command.
	w.srv.Observe(poller.Update{RemovedPrinters: []state.Printer{{ID: "farm_s3"}}})
	w.feed.Answered("ultimaker/printers/farm_s5/set", commands.Response{Status: "error", Action: "pause",
		Error: &commands.ErrorBody{Code: commands.CodeConflict, Message: "not printing"}})
	got = map[string]string{}
	for len(got) < 2 {
		ev, data := in.next(t)
		got[ev] = data
	}
	if got["removed"] != `{"clusters":[],"printers":["farm_s3"]}` {
		t.Errorf("removed event %q", got["removed"])
	}
	if !strings.Contains(got["feed"], `"printer":"farm_s5"`) || !strings.Contains(got["feed"], `"code":"conflict"`) {
		t.Errorf("feed event %s, want the answer to farm_s5's pause", got["feed"])
	}
}

func TestStreamsAreBounded(t *testing.T) {
	h := newHub(nil)
	for i := range maxPages {
		if pg, _ := h.open(fmt.Sprint(i % 100)); pg == nil {
			t.Fatal("a page refused below the bound")
		}
	}
	if pg, why := h.open("another"); pg != nil || !strings.Contains(why, "pages are open") {
		t.Errorf("page %d opened (%q), want refused", maxPages+1, why)
	}
	h = newHub(nil)
	var mine []*page
	for range maxPagesPerClient {
		pg, _ := h.open("a")
		mine = append(mine, pg)
	}
	if pg, why := h.open("a"); pg != nil || !strings.Contains(why, "of this client") {
		t.Errorf("client a's page %d opened (%q), want refused", maxPagesPerClient+1, why)
	}
	if pg, _ := h.open("b"); pg == nil {
		t.Error("client b refused while a holds its share")
	}
	h.close(mine[0])
	h.close(mine[0]) // twice: still one slot back
	if pg, _ := h.open("a"); pg == nil {
		t.Error("client a refused after one of its pages closed")
	}
	if pg, _ := h.open("a"); pg != nil {
		t.Error("a second close freed a second slot")
	}

	// A page that does not read keeps the newest feedLength items only.
	w := newWorld(t, "")
	h = w.srv.hub
	pg, _ := h.open("a")
	for i := range feedLength + 50 {
		w.observe(poller.Update{Events: []state.Event{{Type: "x", Detail: fmt.Sprint(i), Time: time.Now()}}})
	}
	c, _, _ := h.take(pg)
	if len(c.feed) != feedLength || c.feed[0].Detail != "50" {
		t.Errorf("a page that did not read holds %d items from %q, want %d from 50", len(c.feed), c.feed[0].Detail,
			feedLength)
	}
	if len(w.feed.Recent()) != feedLength {
		t.Errorf("the feed keeps %d items, want %d", len(w.feed.Recent()), feedLength)
	}
}

// FuzzAPI sends any path and query to the API over HTTP: never a 5xx,
// never a command without the token.
func FuzzAPI(f *testing.F) {
	for _, s := range []string{"api/printers/farm_s5", "api/printers/../../etc", "assets/app.js", "api/clusters/farm?x=1",
		"api/printers/farm_s5/picture?t=1", "api/printers/%00", "api/stream?"} {
		f.Add("GET", s)
	}
	f.Add("POST", "api/printers/farm_s5/actions")
	w := newWorldF(f)
	f.Fuzz(func(t *testing.T, method, path string) {
		if method != "GET" && method != "POST" && method != "HEAD" || strings.Contains(path, "api/stream") {
			return
		}
		req, err := http.NewRequest(method, w.http.URL+"/"+path, strings.NewReader(`{"action":"pause"}`))
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s /%s: %s", method, path, resp.Status)
		}
		if len(w.cmd.calls()) > 0 {
			t.Fatalf("a command without the token: %v", w.cmd.calls())
		}
	})
}

func newWorldF(f *testing.F) *world {
	w := &world{src: newFakeSource(), cmd: &fakeCommands{}, images: &fakeImages{}, log: &testlog.Buffer{}}
	w.feed = newFeed(&w.srv)
	w.srv = New(Config{Tree: topics.Tree{Base: "ultimaker"}, Token: "fuzz-token", Feed: w.feed}, w.src, w.cmd, w.images,
		zerolog.Nop())
	w.http = httptest.NewServer(endpoint(w.srv))
	f.Cleanup(w.http.Close)
	return w
}
