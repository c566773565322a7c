package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The guard's bounds (the README lists them).
const (
	// A client's guarded requests (actions, token checks): a burst, then
	// one every refill.
	burst  = 10
	refill = 500 * time.Millisecond
	// maxBuckets bounds the clients remembered; beyond, one is forgotten
	// (never a refusal for a full table).
	maxBuckets = 4096
	// Failed token checks of all clients together: a burst, then one
	// every failRefill; beyond, a wrong token gets 429. The right one is
	// always let through: a token of 16 characters or more is not found
	// by guessing at this rate, and an attack must not lock its owner out.
	failBurst  = 30
	failRefill = 200 * time.Millisecond
	// failReport is how often a run of failed checks is summed up in the
	// log, with the addresses they came from.
	failReport = time.Minute
	// failAddresses bounds the addresses counted per report.
	failAddresses = 1024

	bearerScheme = "Bearer "
)

// guard decides who may act: the token, the page's own origin, a rate
// per client and for failures overall. Failures are logged at once, then
// summed up every failReport while they go on.
type guard struct {
	digest  [sha256.Size]byte // of the token; zero with none
	hasKey  bool
	clients clients
	log     zerolog.Logger
	now     func() time.Time

	mu       sync.Mutex
	buckets  map[string]*bucket
	reads    map[string]*bucket // report reads
	failures bucket             // the failed checks' budget, for every client together
	failed   map[string]int
	reported time.Time // when the running failures were last reported
	refused  int       // refusals since the last right token
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newGuard(token string, c clients, log zerolog.Logger) *guard {
	g := &guard{clients: c, log: log, now: time.Now, buckets: map[string]*bucket{}, reads: map[string]*bucket{},
		failed: map[string]int{}}
	if token != "" {
		g.digest, g.hasKey = sha256.Sum256([]byte(token)), true
	}
	g.failures = bucket{tokens: failBurst, at: g.now()}
	return g
}

// allow checks the token and the rates; it answers 401 or 429 itself,
// and nothing else happens for the request.
func (g *guard) allow(w http.ResponseWriter, r *http.Request) bool {
	client := g.clients.of(r)
	if !g.take(client) {
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusTooManyRequests, "too many requests from this client; try again in a second")
		return false
	}
	if !g.hasKey {
		g.fail(client, "no WEB_TOKEN is set: the page and the API are read-only")
		problem(w, http.StatusUnauthorized, "the bridge has no WEB_TOKEN: its page and API are read-only")
		return false
	}
	given, _ := strings.CutPrefix(r.Header.Get("Authorization"), bearerScheme)
	// Digests of equal length: the comparison tells nothing of the
	// token's length, nor how much of it was right.
	sum := sha256.Sum256([]byte(given))
	if subtle.ConstantTimeCompare(sum[:], g.digest[:]) == 1 {
		g.mu.Lock()
		if g.refused > 0 {
			g.log.Info().Int("refused", g.refused).Msg("a request with the right token again")
		}
		g.refused = 0
		g.mu.Unlock()
		return true
	}
	if !g.fail(client, "a request without the right token was refused") {
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusTooManyRequests, "too many failed token checks; try again in a second")
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="ultimaker2mqtt"`)
	problem(w, http.StatusUnauthorized, "send the bridge's WEB_TOKEN as Authorization: Bearer …")
	return false
}

// fail counts a refusal from client: the first of a streak is logged at
// once, the rest summed up every failReport with their addresses. It
// reports false when the failures' overall budget is spent.
func (g *guard) fail(client, why string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.refused++
	if len(g.failed) < failAddresses || g.failed[client] > 0 {
		g.failed[client]++
	} else {
		g.failed["others"]++
	}
	switch {
	case g.refused == 1:
		g.log.Warn().Str("client", client).Msg(why + " (then summed up every minute while they go on)")
		clear(g.failed)
		g.reported = now
	case now.Sub(g.reported) >= failReport:
		g.report(now)
	}
	return g.failures.take(now, failBurst, failRefill)
}

// report logs the failures since the last report, the addresses with the
// most first. Called with g.mu held.
func (g *guard) report(now time.Time) {
	type count struct {
		client string
		n      int
	}
	var counts []count
	total := 0
	for c, n := range g.failed {
		counts = append(counts, count{c, n})
		total += n
	}
	slices.SortFunc(counts, func(a, b count) int { return b.n - a.n })
	top := make([]string, 0, 10)
	for _, c := range counts[:min(10, len(counts))] {
		top = append(top, c.client+" ("+strconv.Itoa(c.n)+")")
	}
	g.log.Warn().Int("refused", total).Int("clients", len(counts)).Strs("from", top).Dur("within", now.Sub(g.reported)).
		Msg("requests without the right token go on")
	clear(g.failed)
	g.reported = now
}

// sameOrigin refuses (403) a request a browser sent from another site:
// its Origin must be the page's own, when it says one. (The Host itself
// is one the bridge answers to: monitor refuses any other with 421.)
func (g *guard) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		problem(w, http.StatusForbidden, "requests from another site are refused")
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser's cross-site request (curl, scripts)
	}
	if origin != "http://"+r.Host && origin != "https://"+r.Host {
		problem(w, http.StatusForbidden, "requests from another origin are refused")
		return false
	}
	return true
}

// take takes one request from the client's bucket.
func (g *guard) take(client string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return takeFrom(g.buckets, client, g.now(), burst, refill)
}

// takeFrom takes one request from client's bucket in buckets (a burst,
// then one every refill). A full table forgets a client: a flood of
// addresses never locks anyone out.
func takeFrom(buckets map[string]*bucket, client string, now time.Time, burst float64, refill time.Duration) bool {
	b := buckets[client]
	if b == nil {
		if len(buckets) >= maxBuckets {
			// One at random (a map's order): O(1) under a flood of
			// addresses, and a client forgotten starts again with a full
			// bucket, which is never a lock-out.
			for k := range buckets {
				delete(buckets, k)
				break
			}
		}
		b = &bucket{tokens: burst, at: now}
		buckets[client] = b
	}
	return b.take(now, burst, refill)
}

// Reads of the job log and utilisation per client: each may cost a walk
// of the cloud's history.
const (
	reportBurst  = 10
	reportRefill = 2 * time.Second
)

// reportRead takes one report read of the client's; it answers 429 itself.
func (g *guard) reportRead(w http.ResponseWriter, r *http.Request) bool {
	g.mu.Lock()
	ok := takeFrom(g.reads, g.clients.of(r), g.now(), reportBurst, reportRefill)
	g.mu.Unlock()
	if !ok {
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusTooManyRequests, "too many report reads from this client; try again in a few seconds")
	}
	return ok
}

// take takes one from b, refilled one per every since it was last taken
// from, up to max.
func (b *bucket) take(now time.Time, max float64, every time.Duration) bool {
	b.tokens = min(max, b.tokens+float64(now.Sub(b.at))/float64(every))
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clients tells whom a request is from: the connection's address, or,
// for a request from a trusted proxy, the nearest address in
// X-Forwarded-For that is not one of the trusted proxies (a client can
// write anything in the header; only what the proxies added is sure).
type clients struct{ trusted []netip.Prefix }

// maxForwarded bounds the X-Forwarded-For addresses looked at.
const maxForwarded = 32

func (c clients) of(r *http.Request) string {
	peer := remoteAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return r.RemoteAddr
	}
	if !c.isTrusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	if len(hops) > maxForwarded {
		hops = hops[len(hops)-maxForwarded:]
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage from here on: the last sure address is the one before
		}
		a = a.Unmap()
		peer = a
		if !c.isTrusted(a) {
			return a.String()
		}
	}
	return peer.String()
}

func (c clients) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(s string) netip.Addr {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
