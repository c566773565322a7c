package monitor

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Bounds are what one client of the endpoint gets at most: a page is left
// open for days on networks with other people's devices.
type Bounds struct {
	ReadHeader time.Duration // the request's headers
	Read       time.Duration // the whole request, body included: a body that trickles in is cut
	Write      time.Duration // an answer (the live stream sets a deadline per write instead)
	Idle       time.Duration // a keep-alive connection between requests
	// MaxHeaderBytes bounds the request's headers.
	MaxHeaderBytes int
	// MaxConns bounds the connections open at once; beyond, new ones wait
	// in the kernel's queue until one closes.
	MaxConns int
}

// DefaultBounds are the endpoint's bounds (the README lists them).
var DefaultBounds = Bounds{ReadHeader: 5 * time.Second, Read: 30 * time.Second, Write: time.Minute,
	Idle: time.Minute, MaxHeaderBytes: 32 << 10, MaxConns: 512}

// Hosts decides which Host headers the endpoint answers: IP addresses,
// localhost and its subdomains, and the names it is given (a "*.name"
// covers name's subdomains). Any other gets 421: a web page that points a
// name of its own at the bridge's address (DNS rebinding) controls Host
// and Origin both, but cannot make them one of these.
type Hosts struct {
	names    map[string]bool
	suffixes []string // ".name" of each *.name
}

// NewHosts allows names (case and a trailing dot do not matter).
func NewHosts(names ...string) Hosts {
	h := Hosts{names: map[string]bool{}}
	for _, n := range names {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		switch {
		case n == "":
		case strings.HasPrefix(n, "*."):
			h.suffixes = append(h.suffixes, n[1:])
		default:
			h.names[n] = true
		}
	}
	return h
}

// Allowed reports whether a request's Host (with or without a port) is
// one the endpoint answers.
func (h Hosts) Allowed(host string) bool {
	if host == "" || len(host) > 300 {
		return false
	}
	name := host
	if n, _, err := net.SplitHostPort(host); err == nil {
		name = n
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if _, err := netip.ParseAddr(name); err == nil {
		return !strings.Contains(name, "%") // an address, but not one with a zone from outside
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") || h.names[name] {
		return true
	}
	for _, s := range h.suffixes {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return true
		}
	}
	return false
}

// secure checks the Host, and sets the headers every answer carries:
// the page's, /healthz, /metrics and a redirect alike.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		// Nothing leaves the bridge's origin: no CDN, no outside font, no
		// frame around the page.
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		if !s.hosts.Allowed(r.Host) {
			s.misdirected(r)
			hd.Set("Content-Type", "application/json")
			hd.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusMisdirectedRequest)
			w.Write([]byte(`{"error":"this bridge does not answer to that host name: add it to WEB_ALLOWED_HOSTS"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// misdirected logs a refused Host once per name and hour, without
// filling memory with the names an attacker makes up.
func (s *Server) misdirected(r *http.Request) {
	host := r.Host
	if len(host) > 100 {
		host = host[:100]
	}
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	now := time.Now()
	if at, ok := s.refused[host]; ok && now.Sub(at) < time.Hour {
		return
	}
	if len(s.refused) >= 256 {
		clear(s.refused)
	}
	s.refused[host] = now
	s.log.Warn().Str("host", host).Str("client", r.RemoteAddr).
		Msg("a request for a host name this bridge does not answer to was refused (421); add it to WEB_ALLOWED_HOSTS if it is yours")
}
