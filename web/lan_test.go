package web

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testlog"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/monitor"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// from is an HTTP client whose connections come from a loopback address
// of its own (127.0.0.2, …): another client, for real.
func from(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxConnsPerHost: 0, DisableKeepAlives: true}}
}

// openStream opens /api/stream and reports its status; an open one
// stays open until ctx ends.
func openStream(ctx context.Context, t *testing.T, c *http.Client, url string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return resp.StatusCode
	}
	// Read the snapshot, then leave the stream open.
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil || strings.HasPrefix(line, "data: {\"printers\"") {
			break
		}
	}
	go func() { <-ctx.Done(); resp.Body.Close() }()
	return resp.StatusCode
}

// TestOneClientCannotTakeEveryStream: a client that opens 300 streams
// gets its share, the rest 503; another client still gets a stream, and
// the first one still gets the page's snapshot.
func TestOneClientCannotTakeEveryStream(t *testing.T) {
	w := newWorld(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	greedy := from("127.0.0.1")
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 300 {
		wg.Go(func() {
			code := openStream(ctx, t, greedy, w.http.URL)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[200] != maxPagesPerClient || codes[503] != 300-maxPagesPerClient {
		t.Errorf("300 streams of one client: %v, want %d × 200, the rest 503", codes, maxPagesPerClient)
	}
	if code := openStream(ctx, t, from("127.0.0.2"), w.http.URL); code != 200 {
		t.Errorf("another client's stream: %d, want 200", code)
	}
	resp, err := greedy.Get(w.http.URL + "/api/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("the snapshot for a client at its stream limit: %s", resp.Status)
	}
}

// TestTheRightTokenGetsThroughAnAttack: thousands of addresses guessing
// fill the clients' table and spend the failures' budget; the owner's
// right token still gets through, and the log sums the attack up with
// its addresses.
func TestTheRightTokenGetsThroughAnAttack(t *testing.T) {
	log := &testlog.Buffer{}
	proxy := netip.MustParsePrefix("127.0.0.1/32")
	g := newGuard("the-right-token-of-24-chars", clients{trusted: []netip.Prefix{proxy}}, zerolog.New(log))
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	ask := func(client, token string) int {
		r, _ := http.NewRequest("GET", "/api/auth", nil)
		r.RemoteAddr = "127.0.0.1:5000"
		r.Header.Set("X-Forwarded-For", client)
		r.Header.Set("Authorization", "Bearer "+token)
		rec := &recorder{header: http.Header{}}
		if g.allow(rec, r) {
			return 204
		}
		return rec.code
	}
	codes := map[int]int{}
	for i := range 2 * maxBuckets {
		codes[ask(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), fmt.Sprintf("guess-%d", i))]++
		now = now.Add(time.Millisecond)
	}
	if codes[401] == 0 || codes[429] == 0 {
		t.Errorf("guesses answered %v: want 401s, then 429s once the failures' budget is spent", codes)
	}
	if got := ask("192.0.2.7", "the-right-token-of-24-chars"); got != 204 {
		t.Errorf("the right token from a new client during the attack: %d, want 204", got)
	}
	now = now.Add(failReport)
	ask("10.9.9.9", "one-more-guess")
	out := log.String()
	if !strings.Contains(out, "go on") || !strings.Contains(out, "10.0.0.0") || strings.Contains(out, "guess-") {
		t.Errorf("the log does not sum the attack up with its addresses (or shows a token): %s", out)
	}
}

// recorder is the least http.ResponseWriter the guard needs.
type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func TestClientBehindTrustedProxies(t *testing.T) {
	c := clients{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}}
	tests := []struct {
		name, remote, forwarded, want string
	}{
		{"direct", "192.0.2.1:4000", "", "192.0.2.1"},
		{"direct, a forged header ignored", "192.0.2.1:4000", "203.0.113.9", "192.0.2.1"},
		{"through the proxy", "127.0.0.1:4000", "203.0.113.9", "203.0.113.9"},
		{"a forged hop before the proxy's", "127.0.0.1:4000", "198.51.100.1, 203.0.113.9", "203.0.113.9"},
		{"two trusted proxies", "127.0.0.1:4000", "203.0.113.9, 10.1.2.3", "203.0.113.9"},
		{"the proxy without a header", "127.0.0.1:4000", "", "127.0.0.1"},
		{"garbage after the proxy", "127.0.0.1:4000", "not an address", "127.0.0.1"},
		{"IPv6 mapped", "[::ffff:127.0.0.1]:4000", "2001:db8::1", "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.forwarded != "" {
				r.Header.Set("X-Forwarded-For", tt.forwarded)
			}
			if got := c.of(r); got != tt.want {
				t.Errorf("client %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzClientOf: whatever a request says, the client is an address, and
// one not from the header unless the connection is a trusted proxy's.
func FuzzClientOf(f *testing.F) {
	f.Add("127.0.0.1:4000", "203.0.113.9, 10.0.0.1")
	f.Add("192.0.2.1:1", "")
	f.Add("[::1]:9", "::ffff:1.2.3.4,,,")
	f.Add("junk", "1.2.3.4")
	c := clients{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, remote, forwarded string) {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", forwarded)
		got := c.of(r)
		peer := remoteAddr(remote)
		switch {
		case !peer.IsValid():
			if got != remote {
				t.Fatalf("client %q of an unreadable peer %q", got, remote)
			}
		case !c.isTrusted(peer):
			if got != peer.String() {
				t.Fatalf("client %q, want the untrusted peer %s", got, peer)
			}
		default:
			if _, err := netip.ParseAddr(got); err != nil {
				t.Fatalf("client %q is not an address", got)
			}
		}
	})
}

// A preview the cloud would not give is not asked for at every page load.
func TestPreviewFailureRemembered(t *testing.T) {
	w := newWorld(t, "")
	w.images.mu.Lock()
	w.images.fail = true
	w.images.mu.Unlock()
	for range 3 {
		if resp, _ := w.do(t, "GET", "/api/printers/farm_s5/preview", nil, ""); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("preview: %s, want 502", resp.Status)
		}
	}
	w.images.mu.Lock()
	defer w.images.mu.Unlock()
	if w.images.fetched != 1 {
		t.Errorf("a failing preview was asked for %d times, want once", w.images.fetched)
	}
}

// TestStreamOutlivesTheRequestBounds: the endpoint's read and write
// bounds cut slow requests, not a live stream, which has a deadline per
// write instead.
func TestStreamOutlivesTheRequestBounds(t *testing.T) {
	w := newWorld(t, "")
	b := monitor.DefaultBounds
	b.Read, b.Write = 300*time.Millisecond, 300*time.Millisecond
	mon := monitor.New("127.0.0.1:0", monitor.NewMetrics(monitor.Sources{}), func() monitor.Health { return monitor.Evaluate() },
		monitor.Options{Bounds: b}, zerolog.Nop())
	mon.Page(w.srv.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { mon.Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done }()

	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	in := sseReader{bufio.NewReader(resp.Body)}
	if ev, _ := in.next(t); ev != "snapshot" {
		t.Fatalf("first event %q", ev)
	}
	time.Sleep(time.Second) // three times the bounds
	p, _ := w.src.Printer("farm_s5")
	p.FriendlyName = "Still live"
	w.src.set(p)
	w.srv.Observe(poller.Update{Printers: []state.Printer{p}})
	for {
		ev, data := in.next(t)
		if ev == "printers" && strings.Contains(data, "Still live") {
			break
		}
	}
}
