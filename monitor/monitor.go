// Package monitor serves the bridge's HTTP endpoint: /healthz, Prometheus /metrics and the page it is given, to the host names it knows, within bounds per client.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"
)

// Check is one health condition.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Health is the /healthz answer: healthy when every check is.
type Health struct {
	Healthy bool    `json:"healthy"`
	Checks  []Check `json:"checks"`
}

// Exposition writes metrics in the Prometheus text format.
type Exposition interface {
	WritePrometheus(w io.Writer)
}

// Server serves the endpoints.
type Server struct {
	listen string
	expo   Exposition
	health func() Health
	log    zerolog.Logger
	page   http.Handler // every other path (the farm's page and its API); nil: none
	hosts  Hosts
	bounds Bounds

	refusedMu sync.Mutex
	refused   map[string]time.Time // Host names refused, when last logged
}

// Options are the endpoint's safety: the Host names it answers to and
// its bounds.
type Options struct {
	Hosts  Hosts
	Bounds Bounds // zero: DefaultBounds
}

// Page has h serve every path but /healthz and /metrics: the farm's page
// and its API. Call it before Serve.
func (s *Server) Page(h http.Handler) { s.page = h }

// New returns a Server for listen (host:port).
func New(listen string, expo Exposition, health func() Health, opts Options, log zerolog.Logger) *Server {
	if opts.Bounds == (Bounds{}) {
		opts.Bounds = DefaultBounds
	}
	return &Server{listen: listen, expo: expo, health: health, hosts: opts.Hosts, bounds: opts.Bounds,
		refused: map[string]time.Time{}, log: log.With().Str("component", "http").Logger()}
}

// Handler serves /healthz, /metrics and the page, to the allowed Host
// names only.
func (s *Server) Handler() http.Handler { return s.secure(s.mux()) }

func (s *Server) mux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := s.health()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !h.Healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.expo.WritePrometheus(w)
	})
	if s.page != nil {
		mux.Handle("/", s.page)
	}
	return mux
}

// Listen opens the socket, so a bad HTTP_LISTEN fails at start.
func (s *Server) Listen() (net.Listener, error) { return net.Listen("tcp", s.listen) }

// Serve serves ln until ctx ends, then shuts down within a second.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Requests live in ctx: the page's live streams end when it does, so
	// the shutdown below does not wait for them.
	b := s.bounds
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: b.ReadHeader, ReadTimeout: b.Read, WriteTimeout: b.Write,
		IdleTimeout: b.Idle, MaxHeaderBytes: b.MaxHeaderBytes,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(netutil.LimitListener(ln, b.MaxConns)) }()
	if s.page != nil {
		s.log.Info().Str("listen", ln.Addr().String()).Msg("the farm page is on " + PageURL(ln.Addr().String()))
	} else {
		s.log.Info().Str("listen", ln.Addr().String()).Msg("serving /healthz and /metrics")
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// PageURL is where a browser on this machine finds the endpoint that
// listens on listen: http://host:port/, 127.0.0.1 for every address.
func PageURL(listen string) string {
	host, port, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// Evaluate builds a Health from checks.
func Evaluate(checks ...Check) Health {
	h := Health{Healthy: true, Checks: checks}
	for _, c := range checks {
		h.Healthy = h.Healthy && c.OK
	}
	return h
}

// Probe asks the /healthz of a bridge listening on listen (HTTP_LISTEN;
// an unspecified host means this machine), copies the answer to out, and
// returns an error unless it is healthy: Docker's HEALTHCHECK without curl.
func Probe(ctx context.Context, listen string, out io.Writer) error {
	host, port, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(out, "%s", body)
	if resp.StatusCode != http.StatusOK {
		return errors.New("healthcheck: unhealthy")
	}
	return nil
}
