package web

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Rate of the guarded requests (actions, token checks) per client
// address: a burst, then one every refill.
const (
	burst        = 10
	refill       = 500 * time.Millisecond
	maxBuckets   = 4096 // clients remembered; beyond, full buckets are forgotten
	bearerScheme = "Bearer "
)

// guard decides who may act: the token, the page's own origin, a rate
// per client. Refusals are logged once per streak.
type guard struct {
	token []byte
	log   zerolog.Logger
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	refused int // refusals in a row, for the log
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newGuard(token string, log zerolog.Logger) *guard {
	return &guard{token: []byte(token), log: log, now: time.Now, buckets: map[string]*bucket{}}
}

// allow checks the rate and the token; it answers 429 or 401 itself, and
// nothing else happens for the request.
func (g *guard) allow(w http.ResponseWriter, r *http.Request) bool {
	if !g.take(clientOf(r)) {
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusTooManyRequests, "too many requests from this client; try again in a second")
		return false
	}
	if len(g.token) == 0 {
		g.refuse("no WEB_TOKEN is set: the page and the API are read-only")
		problem(w, http.StatusUnauthorized, "the bridge has no WEB_TOKEN: its page and API are read-only")
		return false
	}
	h := r.Header.Get("Authorization")
	given, ok := strings.CutPrefix(h, bearerScheme)
	if !ok || subtle.ConstantTimeCompare([]byte(given), g.token) != 1 {
		g.refuse("a request without the right token was refused")
		w.Header().Set("WWW-Authenticate", `Bearer realm="ultimaker2mqtt"`)
		problem(w, http.StatusUnauthorized, "send the bridge's WEB_TOKEN as Authorization: Bearer …")
		return false
	}
	g.mu.Lock()
	if g.refused > 0 {
		g.log.Info().Int("refused", g.refused).Msg("a request with the right token again")
	}
	g.refused = 0
	g.mu.Unlock()
	return true
}

// refuse logs the first refusal of a streak.
func (g *guard) refuse(why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refused++; g.refused == 1 {
		g.log.Warn().Msg(why + " (logged once until one is accepted)")
	}
}

// sameOrigin refuses (403) a request a browser sent from another site:
// its Origin must be the page's own, when it says one.
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
	now := g.now()
	b := g.buckets[client]
	if b == nil {
		if len(g.buckets) >= maxBuckets {
			for k, o := range g.buckets {
				if now.Sub(o.at) > burst*refill {
					delete(g.buckets, k)
				}
			}
		}
		if len(g.buckets) >= maxBuckets {
			return false
		}
		b = &bucket{tokens: burst, at: now}
		g.buckets[client] = b
	}
	b.tokens = min(burst, b.tokens+float64(now.Sub(b.at))/float64(refill))
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientOf is the address a request came from.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
