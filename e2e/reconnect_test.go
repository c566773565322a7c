package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// proxy is a small reverse proxy in front of the bridge's page, as a wall
// page often has: it answers 502 while the bridge is away, and the test
// can make it answer 503 (a full bridge), cut every open stream (a
// network change) or hold a stream open without passing anything on (a
// laptop asleep, a proxy's stuck connection).
type proxy struct {
	rp *httputil.ReverseProxy

	mu      sync.Mutex
	mode    string // "pass", "503", "full" (503 for streams only), "silence" or "freeze"
	streams map[*http.Request]context.CancelFunc
}

func newProxy(t *testing.T, backend string) *httptest.Server {
	t.Helper()
	u, _ := url.Parse("http://" + backend)
	p := &proxy{rp: httputil.NewSingleHostReverseProxy(u), mode: "pass", streams: map[*http.Request]context.CancelFunc{}}
	p.rp.FlushInterval = -1 // Server-Sent Events pass at once
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	proxies.Store(srv.URL, p)
	return srv
}

var proxies sync.Map

func proxyOf(srv *httptest.Server) *proxy {
	p, _ := proxies.Load(srv.URL)
	return p.(*proxy)
}

// set changes the mode and cuts the streams open now, but for "silence":
// the streams stay open and pass nothing on from now.
func (p *proxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
	if mode == "silence" {
		return
	}
	for _, cancel := range p.streams {
		cancel()
	}
}

func (p *proxy) silent() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode == "silence"
}

// hush passes a stream on until the proxy goes silent.
type hush struct {
	http.ResponseWriter
	p *proxy
}

func (h hush) Write(b []byte) (int, error) {
	if h.p.silent() {
		return len(b), nil
	}
	return h.ResponseWriter.Write(b)
}

func (h hush) Flush() {
	if !h.p.silent() {
		h.ResponseWriter.(http.Flusher).Flush()
	}
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	mode := p.mode
	ctx, cancel := context.WithCancel(r.Context())
	stream := r.URL.Path == "/api/stream"
	if stream {
		p.streams[r] = cancel
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.streams, r)
		p.mu.Unlock()
		cancel()
	}()
	switch {
	case mode == "503", mode == "full" && stream:
		w.Header().Set("Retry-After", "10")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	case mode == "freeze" && stream:
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-ctx.Done()
	case stream:
		p.rp.ServeHTTP(hush{w, p}, r.WithContext(ctx))
	default:
		p.rp.ServeHTTP(w, r.WithContext(ctx))
	}
}

// TestPageComesBack: a wall page behind a reverse proxy says within 20 s
// that it is not live when the bridge stops (the proxy's 502s), when the
// stream is cut or goes silent, and when the bridge is full (503); and
// comes back by itself, showing what changed meanwhile, without a reload
// (issue 27).
func TestPageComesBack(t *testing.T) {
	w := fastWorld(t, "back")
	addr := freeAddr(t)
	env := append(slices.Clone(w.env), "HTTP_LISTEN="+addr)
	stop, _ := startBridge(t, env)
	waitForPrinters(t, w, "back")
	front := newProxy(t, addr)
	p := proxyOf(front)

	b := openBrowser(t, 1400, 900)
	ctx, do := b.ctx, b.do
	// within polls expr until it holds, and says how long that took.
	within := func(what, expr string, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(limit), chromedp.WithPollingInterval(100*time.Millisecond)))
		return time.Since(start)
	}
	const (
		notLive = `document.body.classList.contains('not-live') && !document.getElementById('stale').hidden && ` +
			`document.getElementById('stale').textContent.startsWith('Not live since')`
		live = `!document.body.classList.contains('not-live') && document.getElementById('stale').hidden`
	)
	do("open the wall", chromedp.Navigate(front.URL+"/?view=wall"),
		chromedp.Poll[chromedp.Void](`window.__u2m && window.__u2m.ready`, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Evaluate[chromedp.Void](`window.__loadedOnce = 'yes'`))
	within("live at first", live, 5*time.Second)

	// The bridge stops: the stream ends and the proxy answers 502.
	if err, _ := stop(); err != nil {
		t.Fatal(err)
	}
	took := within("not live after the stop", notLive, 20*time.Second)
	t.Logf("bridge stopped: the wall says not live after %s", took.Round(100*time.Millisecond))
	shoot(t, ctx, "wall-not-live.png")
	renamed := w.sim.Rename(w.sim.ClusterIDs()[0], "Renamed while away")
	time.Sleep(3 * time.Second) // a few 502s
	p.set("503")
	stop, _ = startBridge(t, env)
	time.Sleep(3 * time.Second) // a few 503s from the full bridge
	p.set("pass")
	back := within("back, with the rename", fmt.Sprintf(`[...document.querySelectorAll('.tile')].some(t => `+
		`t.dataset.id === %q && t.textContent.includes('Renamed while away')) && %s`, renamed, live), 40*time.Second)
	t.Logf("bridge back: the wall live again, with the rename, %s after the proxy passed again", back.Round(100*time.Millisecond))

	// A bridge whose streams are all taken: not live, but the farm shown
	// as it is (the page catches up from /api/snapshot while it retries).
	p.set("full")
	within("not live while the streams are full", notLive, 20*time.Second)
	second := w.sim.Rename(w.sim.ClusterIDs()[1], "Renamed while full")
	within("the rename shown while not live", fmt.Sprintf(`[...document.querySelectorAll('.tile')].some(t => `+
		`t.dataset.id === %q && t.textContent.includes('Renamed while full')) && %s`, second, notLive), 40*time.Second)
	p.set("pass")
	within("live after the full bridge", live, 30*time.Second)

	// A stream that goes silent (a laptop asleep, a stuck connection): not
	// live within 20 s; then streams that open and stay silent, then back.
	p.set("silence")
	took = within("not live on a silent stream", notLive, 20*time.Second)
	t.Logf("silent stream: the wall says not live after %s", took.Round(100*time.Millisecond))
	if took < 5*time.Second {
		t.Errorf("not live after %s of silence: the page does not wait for the heartbeat", took)
	}
	p.set("freeze")
	time.Sleep(3 * time.Second)
	within("still not live on frozen streams", notLive, time.Second)
	p.set("pass")
	within("live again", live, 30*time.Second)

	if v := b.value("the marker", `window.__loadedOnce || ''`); v != "yes" {
		t.Errorf("the page reloaded (marker %v)", v)
	}
	stop()
	b.noErrors()
}
