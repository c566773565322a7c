// Package web serves the farm's page and its API: every printer at a glance, live, and their commands behind a token.
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/activity"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Source is the bridge's current view: what MQTT gets. *render.Renderer
// is one.
type Source interface {
	Printers() []state.Printer
	Printer(id string) (state.Printer, bool)
	Clusters() []state.Cluster
	Cluster(id string) (state.Cluster, bool)
	Info() []byte
	LatestPicture(printer string) (picture.Picture, bool)
}

// Commands carries out the page's commands, by the same rules as MQTT's.
// *commands.Handler is one.
type Commands interface {
	Submit(ctx context.Context, topic string, payload []byte, reply func(commands.Response))
	MaxPayloadFor(topic string) int
}

// Activity is the farm's activity feed; *activity.Feed is one. Tell the
// server of its new items (Server.Activity).
type Activity interface {
	Recent() []activity.Item
}

// Images fetches a job's preview from the cloud; *connect.Client is one.
type Images interface {
	Image(ctx context.Context, url string) ([]byte, string, error)
}

// Config is what the page needs besides its sources.
type Config struct {
	Tree topics.Tree
	// Token unlocks the actions; empty: the page and the API stay
	// read-only.
	Token string
	// CommandTimeout bounds the wait for a command's final answer.
	CommandTimeout time.Duration
	// Health is the bridge's health (as /healthz says it), for the page.
	Health func() any
	// PreviewMemory bounds the job previews kept (8 MiB by default).
	PreviewMemory int
	// Feed is the activity feed the page shows.
	Feed Activity
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (WEB_TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// Reports, when set, answers the job log and the utilisation.
	Reports Reports
}

//go:embed assets
var assets embed.FS

// Server is the page and its API.
type Server struct {
	cfg      Config
	src      Source
	cmd      Commands
	images   Images // nil: no previews (LAN only)
	log      zerolog.Logger
	hub      *hub
	guard    *guard
	previews *picture.Store
	fetching chan struct{} // bounds the previews fetched at once
	clients  clients

	mu        sync.Mutex
	unfetched map[string]time.Time // preview URLs that failed, and when: not asked again for a while
}

// New returns the page's server. Feed it the renderer's updates
// (Observe) and the activity feed's new items (Activity).
func New(cfg Config, src Source, cmd Commands, images Images, log zerolog.Logger) *Server {
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = time.Minute
	}
	if cfg.PreviewMemory <= 0 {
		cfg.PreviewMemory = 8 << 20
	}
	if cfg.Health == nil {
		cfg.Health = func() any { return nil }
	}
	l := log.With().Str("component", "web").Logger()
	c := clients{trusted: cfg.TrustedProxies}
	return &Server{cfg: cfg, src: src, cmd: cmd, images: images, log: l, hub: newHub(cfg.Feed), clients: c,
		guard: newGuard(cfg.Token, c, l), previews: picture.NewStore(cfg.PreviewMemory), fetching: make(chan struct{}, 4),
		unfetched: map[string]time.Time{}}
}

// maxQuery bounds a request's query: the page's own are a few words.
const maxQuery = 1024

// topicID is what a printer's or cluster's topic id looks like
// (topics.Segment's output).
var topicID = regexp.MustCompile(`^[a-z0-9_-]{1,128}$`)

// Handler serves the page, its assets and the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /assets/{name}", s.asset)
	mux.HandleFunc("GET /api/printers", s.printers)
	mux.HandleFunc("GET /api/printers/{printer}", s.printer)
	mux.HandleFunc("GET /api/printers/{printer}/statistics", s.statistics)
	mux.HandleFunc("GET /api/printers/{printer}/picture", s.picture)
	mux.HandleFunc("GET /api/printers/{printer}/preview", s.preview)
	mux.HandleFunc("POST /api/printers/{printer}/actions", s.action(topics.Printer))
	mux.HandleFunc("GET /api/clusters", s.clusters)
	mux.HandleFunc("GET /api/clusters/{cluster}", s.cluster)
	mux.HandleFunc("POST /api/clusters/{cluster}/actions", s.action(topics.Cluster))
	mux.HandleFunc("GET /api/bridge", s.bridge)
	mux.HandleFunc("GET /api/feed", s.feed)
	mux.HandleFunc("GET /api/stream", s.stream)
	mux.HandleFunc("GET /api/snapshot", s.snapshot)
	mux.HandleFunc("GET /api/jobs", s.jobs(false))
	mux.HandleFunc("GET /api/jobs.csv", s.jobs(true))
	mux.HandleFunc("GET /api/utilisation", s.utilisation(false))
	mux.HandleFunc("GET /api/utilisation.csv", s.utilisation(true))
	mux.HandleFunc("GET /api/auth", s.auth)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "no such API path or method")
	})
	return s.secure(mux)
}

// secure refuses an over-long query before anything reads it. (The
// headers every answer carries, and the Host check, are monitor's: the
// endpoint's, for every path.)
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.URL.RawQuery) > maxQuery {
			problem(w, http.StatusRequestURITooLong, fmt.Sprintf("the query is over %d bytes", maxQuery))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// problem answers an error as JSON, {"error": message}.
func problem(w http.ResponseWriter, code int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": message})
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	b, _ := assets.ReadFile("assets/index.html")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

// assetTypes are the page's own files and their media types; nothing else
// is served from assets/ (no listing, no path outside it).
var assetTypes = map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
	"reports.js": "text/javascript; charset=utf-8", "icon.svg": "image/svg+xml"}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	typ, ok := assetTypes[name]
	if !ok {
		problem(w, http.StatusNotFound, "no such asset")
		return
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		problem(w, http.StatusNotFound, "no such asset")
		return
	}
	w.Header().Set("Content-Type", typ)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

// id is the path value name, checked as a topic id; false (answered 400)
// when it is not one.
func id(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v := r.PathValue(name)
	if !topicID.MatchString(v) {
		problem(w, http.StatusBadRequest, fmt.Sprintf("%q is not a %s id (lower-case letters, digits, - and _)", truncate(v, 40), name))
		return "", false
	}
	return v, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// writeJSONList writes a JSON array of the given encodings.
func writeJSONList(w http.ResponseWriter, items [][]byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(it)
	}
	buf.WriteByte(']')
	w.Write(buf.Bytes())
}

// writeJSON writes v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		problem(w, http.StatusInternalServerError, "the answer could not be encoded")
		return
	}
	writeRaw(w, b)
}

func writeRaw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func (s *Server) printers(w http.ResponseWriter, r *http.Request) {
	ps := s.src.Printers()
	items := make([][]byte, len(ps))
	for i, p := range ps {
		items[i] = p.JSON()
	}
	writeJSONList(w, items)
}

func (s *Server) printer(w http.ResponseWriter, r *http.Request) {
	pid, ok := id(w, r, "printer")
	if !ok {
		return
	}
	p, ok := s.src.Printer(pid)
	if !ok {
		problem(w, http.StatusNotFound, fmt.Sprintf("no printer %q", pid))
		return
	}
	writeRaw(w, p.JSON())
}

func (s *Server) statistics(w http.ResponseWriter, r *http.Request) {
	pid, ok := id(w, r, "printer")
	if !ok {
		return
	}
	b, ok := s.hub.statisticsOf(pid)
	if !ok {
		problem(w, http.StatusNotFound, fmt.Sprintf("no statistics of printer %q yet", pid))
		return
	}
	writeRaw(w, b)
}

func (s *Server) clusters(w http.ResponseWriter, r *http.Request) {
	cs := s.src.Clusters()
	items := make([][]byte, len(cs))
	for i, c := range cs {
		items[i] = c.JSON()
	}
	writeJSONList(w, items)
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	cid, ok := id(w, r, "cluster")
	if !ok {
		return
	}
	c, ok := s.src.Cluster(cid)
	if !ok || c.ID != cid {
		problem(w, http.StatusNotFound, fmt.Sprintf("no cluster %q", cid))
		return
	}
	writeRaw(w, c.JSON())
}

func (s *Server) bridge(w http.ResponseWriter, r *http.Request) { writeRaw(w, s.src.Info()) }

func (s *Server) feed(w http.ResponseWriter, r *http.Request) {
	b, _ := json.Marshal(s.hub.feed.Recent())
	writeRaw(w, b)
}

// picture serves a printer's latest picture.
func (s *Server) picture(w http.ResponseWriter, r *http.Request) {
	pid, ok := id(w, r, "printer")
	if !ok {
		return
	}
	p, ok := s.src.LatestPicture(pid)
	if !ok {
		problem(w, http.StatusNotFound, fmt.Sprintf("no picture of printer %q", pid))
		return
	}
	serveImage(w, r, p)
}

func serveImage(w http.ResponseWriter, r *http.Request, p picture.Picture) {
	typ := "image/jpeg"
	if !picture.IsJPEG(p.JPEG) {
		typ = "image/png"
	}
	w.Header().Set("Content-Type", typ)
	// The page asks with the picture's time in the query: a new picture
	// is a new address, an old one may be kept a while.
	w.Header().Set("Cache-Control", "private, max-age=300")
	http.ServeContent(w, r, "", p.TakenAt, bytes.NewReader(p.JPEG))
}

// preview serves the preview of a printer's job, fetched from the cloud
// once and kept (PreviewMemory): the page loads nothing from outside the
// bridge (its Content-Security-Policy), and a screen on the farm's network
// may not reach the cloud at all.
func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	pid, ok := id(w, r, "printer")
	if !ok {
		return
	}
	p, ok := s.src.Printer(pid)
	if !ok || p.Job == nil || p.Job.PreviewURL == "" || s.images == nil {
		problem(w, http.StatusNotFound, fmt.Sprintf("no preview of printer %q", pid))
		return
	}
	url := p.Job.PreviewURL
	if kept, ok := s.previews.Get(pid); ok && kept.URL == url {
		serveImage(w, r, kept)
		return
	}
	if s.failedLately(url) {
		problem(w, http.StatusBadGateway, "the cloud did not give the preview; asked again in a few minutes")
		return
	}
	select {
	case s.fetching <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	b, _, err := s.images.Image(r.Context(), url)
	<-s.fetching
	if err != nil {
		if r.Context().Err() == nil {
			s.fetchFailed(url)
		}
		problem(w, http.StatusBadGateway, "the cloud did not give the preview")
		return
	}
	pic := picture.Picture{Printer: pid, JPEG: b, URL: url, TakenAt: time.Now()}
	s.previews.Put(pic)
	serveImage(w, r, pic)
}

// A preview that could not be fetched is not asked for again for
// previewRetry (every page load would ask), and at most unfetchedMax such
// addresses are remembered.
const (
	previewRetry = 10 * time.Minute
	unfetchedMax = 1024
)

func (s *Server) failedLately(url string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.unfetched[url]
	if ok && time.Since(at) >= previewRetry {
		delete(s.unfetched, url)
		return false
	}
	return ok
}

func (s *Server) fetchFailed(url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.unfetched) >= unfetchedMax {
		for u, at := range s.unfetched {
			if time.Since(at) >= previewRetry {
				delete(s.unfetched, u)
			}
		}
		if len(s.unfetched) >= unfetchedMax {
			clear(s.unfetched)
		}
	}
	s.unfetched[url] = time.Now()
}

// auth answers 204 to a request that carries the token, 401 otherwise:
// the page checks what a person typed before it offers controls.
func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	if !s.guard.allow(w, r) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// action carries out a command on a printer's or cluster's set topic,
// sent as its JSON body, through the same handler as MQTT commands, and
// answers with its final answer.
func (s *Server) action(kind topics.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := map[topics.Kind]string{topics.Printer: "printer", topics.Cluster: "cluster"}[kind]
		target, ok := id(w, r, name)
		if !ok || !s.guard.sameOrigin(w, r) || !s.guard.allow(w, r) {
			return
		}
		topic := s.cfg.Tree.Topic(topics.Address{Kind: kind, ID: target, Verb: topics.Set})
		limit := s.cmd.MaxPayloadFor(topic)
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			problem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the command is over %d bytes", limit))
			return
		case err != nil:
			problem(w, http.StatusBadRequest, "the body could not be read")
			return
		}
		answers := make(chan commands.Response, 4)
		var once sync.Once
		s.cmd.Submit(r.Context(), topic, body, func(a commands.Response) {
			if a.Status == "pending" {
				return // the feed shows it; the caller waits for the end
			}
			once.Do(func() { answers <- a })
		})
		timer := time.NewTimer(s.cfg.CommandTimeout + 5*time.Second)
		defer timer.Stop()
		select {
		case a := <-answers:
			b, _ := json.Marshal(a)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(statusOf(a))
			w.Write(b)
		case <-timer.C:
			problem(w, http.StatusGatewayTimeout, "no final answer in time; the activity feed shows it when it comes")
		case <-r.Context().Done():
		}
	}
}

// statusOf is the HTTP status of a command's answer: 200 for ok, a 4xx
// for what the caller can change, a 5xx for what the cloud did (never a
// plain 500: the bridge itself did not fail).
func statusOf(a commands.Response) int {
	if a.Error == nil {
		return http.StatusOK
	}
	switch a.Error.Code {
	case commands.CodeBadRequest, commands.CodeUnknownAction:
		return http.StatusBadRequest
	case commands.CodeNotFound:
		return http.StatusNotFound
	case commands.CodeConflict, commands.CodeDuplicate, commands.CodeRetained:
		return http.StatusConflict
	case commands.CodeReadOnly, commands.CodeNotAllowed:
		return http.StatusForbidden
	case commands.CodeBusy, commands.CodeRateLimited:
		return http.StatusTooManyRequests
	case commands.CodeTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway // unauthorized by the cloud, cloud_error, action_failed
}
