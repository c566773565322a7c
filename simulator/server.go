// Package simulator is a fake UltiMaker Connect cloud with scripted printers, for demos and tests.
package simulator

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// BasePath is where the Connect API is served, as on api.ultimaker.com.
const BasePath = "/connect/v1"

// Options configure a Server.
type Options struct {
	// Speed is how many simulated seconds pass per real second (default 1).
	Speed float64
	// Seed makes job names, durations, pauses and aborts repeatable.
	Seed uint64
	// Tokens are the bearer tokens accepted; empty accepts any non-empty one.
	Tokens []string
	// ExtraPrinters adds that many single-printer clusters (load tests).
	ExtraPrinters int
	// OnlyExtra drops the scripted world, leaving only the extra printers.
	OnlyExtra bool
	// ExtraName, when set, names the i-th extra printer (from 1); default
	// Farm-0001 and on.
	ExtraName func(i int) string
	// IdleExtra starts the extra printers idle (else half of them print);
	// an idle printer gets its first job after a few simulated minutes.
	IdleExtra bool
	// Calm turns off the scripted pauses and aborts, for tests that pause
	// and abort themselves.
	Calm bool
	// Latency delays every API answer.
	Latency time.Duration
	// ErrorRate is the probability (0–1) of a random 500 on any API request.
	ErrorRate float64
	// Now is the real clock; nil means time.Now.
	Now func() time.Time
	// AccessTokenLifetime is the simulated lifetime of OAuth access
	// tokens (default 10 minutes, as the real account server).
	AccessTokenLifetime time.Duration
	// ClientID and ClientSecret, when set, are the only OAuth client the
	// account server knows.
	ClientID, ClientSecret string
	// OnAction, when set, is called as each printer or print-job action
	// request arrives (before faults and checks), with its path.
	OnAction func(path string)
}

// FaultKind names an injected failure.
type FaultKind string

// Fault kinds.
const (
	FaultServerError FaultKind = "server_error" // 500 unexpectedError
	FaultUnavailable FaultKind = "unavailable"  // 503, no body
	FaultRateLimit   FaultKind = "rate_limit"   // 429 with Retry-After
	FaultMalformed   FaultKind = "malformed"    // 200 with truncated JSON
	FaultNonJSON     FaultKind = "non_json"     // 200 with an HTML page
	FaultWrongShape  FaultKind = "wrong_shape"  // 200 with data of the wrong type
	FaultHang        FaultKind = "hang"         // no answer until the client gives up
	FaultFailAction  FaultKind = "fail_action"  // the next actions end "failed"
)

// Fault is a failure injected into requests whose path contains
// PathContains ("" matches all API paths).
type Fault struct {
	Kind         FaultKind     `json:"kind"`
	PathContains string        `json:"path_contains,omitempty"`
	Count        int           `json:"count,omitempty"` // 0 = until cleared
	RetryAfter   time.Duration `json:"retry_after,omitempty"`
}

// Server is the simulated Connect API. Serve it with net/http.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	realT0   time.Time
	simT0    time.Time
	mu       sync.Mutex
	world    *world
	faults   []*Fault
	actions  map[string]*action
	expired  map[string]bool
	tokens   map[string]bool
	requests map[string]int
	rng      *rand.Rand
	codes    map[string]*authCode
	grants   map[string]*grant
	access   map[string]*accessToken
	acct     AccountStats
	// the rest of the API
	settings  connect.Settings
	materials map[string]*material
}

type action struct {
	id, clusterID, kind string
	polls               int
	fail                bool
	imageURL            string
}

// New returns a Server whose world starts at the current time.
func New(opts Options) *Server {
	if opts.Speed <= 0 {
		opts.Speed = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := opts.Now()
	specs := defaultSpecs()
	if opts.OnlyExtra {
		specs = nil
	}
	specs = append(specs, farmSpecs(opts.ExtraPrinters, opts.IdleExtra, opts.ExtraName)...)
	s := &Server{
		opts: opts, mux: http.NewServeMux(), realT0: now, simT0: now,
		world:   newWorld(specs, opts.Seed, opts.Calm, now),
		actions: map[string]*action{}, expired: map[string]bool{}, tokens: map[string]bool{},
		requests: map[string]int{}, rng: rand.New(rand.NewPCG(opts.Seed, 7)),
		codes: map[string]*authCode{}, grants: map[string]*grant{}, access: map[string]*accessToken{},
		settings: connect.Settings{EnablePrintPrep: true}, materials: map[string]*material{},
	}
	s.world.speed, s.world.realT0, s.world.simT0 = opts.Speed, now, now
	for _, t := range opts.Tokens {
		s.tokens[t] = true
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	api := func(pattern string, h func(w http.ResponseWriter, r *http.Request, now time.Time)) {
		method, path, _ := strings.Cut(pattern, " ")
		wrapped := s.api(h)
		s.mux.Handle(method+" "+BasePath+path, wrapped)
		// The API routes /cluster and /clusters alike (a "clusters?" regex).
		if strings.HasPrefix(path, "/clusters") {
			s.mux.Handle(method+" "+BasePath+"/cluster"+strings.TrimPrefix(path, "/clusters"), wrapped)
		}
	}
	s.mux.HandleFunc("GET "+BasePath+"/{$}", s.root)
	// Like the root, the spec and the teapot need no token (reference §2).
	s.mux.HandleFunc("GET "+BasePath+"/spec", s.spec)
	s.mux.HandleFunc("GET "+BasePath+"/teapot", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusTeapot, "iAmATeapot", "The server is permanently a teapot", "")
	})
	api("GET /clusters", s.listClusters)
	api("GET /clusters/{cid}", s.getCluster)
	api("GET /clusters/{cid}/status", s.getStatus)
	api("GET /clusters/{cid}/maintenance/pending", s.getMaintenance)
	api("GET /clusters/{cid}/print_jobs/{jid}", s.getPrintJob)
	api("GET /clusters/{cid}/action_status/{aid}", s.getActionStatus)
	api("POST /clusters/{cid}/print_jobs/{jid}/action/{action}", s.postPrintJobAction)
	api("POST /clusters/{cid}/printers/{pid}/action/{action}", s.postPrinterAction)
	api("GET /makerbot/printers", s.listMakerBots)
	api("POST /clusters/{cid}/print/{job}", s.postPrint)
	api("POST /clusters/{cid}/reprint/{orig}/{jid}", s.postReprint)
	api("PUT /clusters/{cid}/maintenance", s.putMaintenance)
	s.moreRoutes(api)
	s.mux.Handle(BasePath+"/", s.api(func(w http.ResponseWriter, r *http.Request, _ time.Time) {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
	}))
	s.mux.HandleFunc("POST /_sim/faults", s.addFaultHTTP)
	s.mux.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, _ *http.Request) { s.ClearFaults(); w.WriteHeader(http.StatusNoContent) })
	s.mux.HandleFunc("GET /_sim/snapshots/{id}", s.snapshotPicture)
	s.mux.HandleFunc("GET /_sim/previews/{id}", s.preview)
	s.accountRoutes()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// SimNow is the simulated time now.
func (s *Server) SimNow() time.Time {
	real := s.opts.Now().Sub(s.realT0)
	return s.simT0.Add(time.Duration(float64(real) * s.opts.Speed))
}

// AddFault injects a failure.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every injected failure.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// ExpireToken makes the API answer 403 tokenExpired for tok.
func (s *Server) ExpireToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired[tok] = true
}

// Requests counts API requests whose path contains sub ("" counts all).
func (s *Server) Requests(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return countRequests(s.requests, func(p string) bool { return strings.Contains(p, sub) })
}

// countRequests sums the request counts of the paths that match.
func countRequests(byPath map[string]int, match func(path string) bool) int {
	n := 0
	for p, c := range byPath {
		if match(p) {
			n += c
		}
	}
	return n
}

// ClusterIDs lists the ids of the simulated clusters, in order.
func (s *Server) ClusterIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, len(s.world.clusters))
	for i, c := range s.world.clusters {
		ids[i] = c.id
	}
	return ids
}

// RemoveCluster drops a cluster from the account, as when it is unshared.
func (s *Server) RemoveCluster(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.world.clusters {
		if c.id == id {
			s.world.clusters = append(s.world.clusters[:i], s.world.clusters[i+1:]...)
			return true
		}
	}
	return false
}

// SetClusterOnline switches a cluster's connection to the cloud.
func (s *Server) SetClusterOnline(id string, online bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.world.cluster(id); c != nil {
		c.spec.online = online
		return true
	}
	return false
}

// FinishJob brings the job on the printer with this unique name to its
// full time now, as if it had printed to the end: it goes on to
// post_print and wait_cleanup as any print does.
func (s *Server) FinishJob(uniqueName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.SimNow()
	for _, c := range s.world.clusters {
		s.world.advanceCluster(c, now)
		for _, p := range c.printers {
			if p.spec.uniqueName != uniqueName {
				continue
			}
			if p.job == nil || p.job.status != "printing" {
				return fmt.Errorf("%s is not printing", uniqueName)
			}
			p.job.elapsed, p.job.phaseStart = p.job.total, now
			return nil
		}
	}
	return fmt.Errorf("no printer %q", uniqueName)
}

// AddHistory adds a job that ended on the printer with this unique name
// to its cluster's history (the reports, the printer's own history):
// created at created (real time), printing for elapsed of total, ended
// with result (finished, aborted, failed). For tests of the job log.
func (s *Server) AddHistory(uniqueName, name, owner, result string, created time.Time, elapsed, total time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.world.clusters {
		for _, p := range c.printers {
			if p.spec.uniqueName != uniqueName {
				continue
			}
			seed := fmt.Sprintf("added:%s:%s:%d", uniqueName, name, created.UnixNano())
			at := s.world.simTime(created)
			j := &job{uuid: uuidOf(seed), cloudID: cloudID(seed), name: name, owner: owner, variant: p.spec.variant,
				total: s.world.simDur(total), elapsed: s.world.simDur(elapsed), printer: p, status: result, state: "history",
				createdAt: at, endedAt: at.Add(s.world.simDur(elapsed) + time.Minute)}
			j.aborted = result == "aborted"
			c.history = append(c.history, j)
			return nil
		}
	}
	return fmt.Errorf("no printer %q", uniqueName)
}

// api wraps a handler with accounting, faults, latency, the bearer check
// and advancing the world to the current simulated time.
func (s *Server) api(h func(w http.ResponseWriter, r *http.Request, now time.Time)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		fault := s.takeFault(r.URL.Path)
		random500 := s.opts.ErrorRate > 0 && s.rng.Float64() < s.opts.ErrorRate
		s.mu.Unlock()
		if s.opts.Latency > 0 {
			select {
			case <-time.After(s.opts.Latency):
			case <-r.Context().Done():
				return
			}
		}
		if !s.authorized(w, r) {
			return
		}
		if fault != nil && s.writeFault(w, r, fault) {
			return
		}
		if random500 {
			writeError(w, http.StatusInternalServerError, "unexpectedError", "An unexpected error has occurred", "")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		now := s.SimNow()
		s.world.host = r.Host
		h(w, r, now)
	})
}

// takeFault returns the first fault matching path, using up one count.
// fail_action faults are taken by the action handlers instead.
func (s *Server) takeFault(path string) *Fault {
	for i, f := range s.faults {
		if f.Kind == FaultFailAction || !strings.Contains(path, f.PathContains) {
			continue
		}
		cp := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return &cp
	}
	return nil
}

func (s *Server) takeActionFailure() bool {
	for i, f := range s.faults {
		if f.Kind != FaultFailAction {
			continue
		}
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return true
	}
	return false
}

func (s *Server) writeFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	switch f.Kind {
	case FaultServerError:
		writeError(w, http.StatusInternalServerError, "unexpectedError", "An unexpected error has occurred", "")
	case FaultUnavailable:
		w.WriteHeader(http.StatusServiceUnavailable)
	case FaultRateLimit:
		ra := f.RetryAfter
		if ra <= 0 {
			ra = 30 * time.Second
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(ra.Round(time.Second).Seconds())))
		writeError(w, http.StatusTooManyRequests, "tooManyRequests", "Too many requests", "")
	case FaultMalformed:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":{"printers":[{"uuid":"`)
	case FaultNonJSON:
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
	case FaultWrongShape:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":"maintenance window"}`)
	case FaultHang:
		<-r.Context().Done()
	default:
		return false
	}
	return true
}

// authorized checks the bearer token the way the API does: 401
// noBearerToken without one, 403 tokenExpired for an expired one.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(h, "bearer ")
	}
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		writeError(w, http.StatusUnauthorized, "noBearerToken", "No bearer token given", "")
		return false
	}
	s.mu.Lock()
	expired := s.expired[tok]
	known := len(s.tokens) == 0 || s.tokens[tok]
	if a := s.access[tok]; a != nil {
		// An OAuth access token from our account server.
		known = !a.grant.revoked
		expired = expired || !s.SimNow().Before(a.expires)
	} else if strings.HasPrefix(tok, "sim-access-") {
		known = false
	}
	s.mu.Unlock()
	if expired && known {
		writeError(w, http.StatusForbidden, "tokenExpired", "The given token has expired", "")
		return false
	}
	if !known {
		// The real status for an unknown token is undocumented; 401 is
		// what an OAuth2 resource server sends.
		writeError(w, http.StatusUnauthorized, "invalidBearerToken", "The given bearer token is invalid", "")
		return false
	}
	return true
}

func (s *Server) root(w http.ResponseWriter, _ *http.Request) {
	up := s.opts.Now().Sub(s.realT0).Seconds()
	writeData(w, http.StatusOK, map[string]any{"ok": true, "time": s.opts.Now().UTC().Format("2006-01-02 15:04:05"),
		"uptime": up, "version": "simulator"})
}

// spec serves a small Swagger 2.0 document naming the simulated routes;
// the real API serves its full OpenAPI spec here.
func (s *Server) spec(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("version"); v != "" && v != "2.0" {
		writeError(w, http.StatusBadRequest, "openApiVersionNotSupported", "OpenAPI version not supported", v)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"swagger": "2.0",
		"info":     map[string]any{"title": "Stardust Cura Connect API (simulator)", "version": "simulator"},
		"basePath": BasePath, "paths": map[string]any{}})
}

// capabilitiesOf is what a cluster reports it can do: the list an S5 on
// firmware 8.2 reports (reference §3), less the webcam for a MakerBot.
func capabilitiesOf(c *cluster) []string {
	caps := []string{"queue", "status", "print_job_action", "print_job_action_reprint", "printer_action",
		"webcam_snapshot", "print_job_recent_history", "import_material", "rename", "set_availability"}
	if isMakerBot(c) {
		return []string{"queue", "status", "print_job_action", "print_job_recent_history"}
	}
	return caps
}

func isMakerBot(c *cluster) bool {
	t := c.spec.printerType
	return strings.HasPrefix(t, "lava") || strings.HasPrefix(t, "fire") || strings.HasPrefix(t, "magma")
}

func (s *Server) clusterJSON(c *cluster, now time.Time) connect.Cluster {
	cc := connect.Cluster{
		ClusterID: c.id, HostGUID: c.spec.hostGUID, HostName: c.spec.hostName, FriendlyName: c.spec.name,
		PrinterCount: float64(len(c.printers)), Status: "active", IsOnline: c.spec.online,
		HostVersion: c.spec.hostVersion, PrinterType: c.spec.printerType,
		Capabilities:   capabilitiesOf(c),
		OrganizationID: c.orgID, OrganizationShared: c.orgShared, TeamIDs: append([]string{}, c.teamIDs...), UserID: s.world.userID,
		HostPrintJobCount: float64(len(c.queue)),
	}
	if len(c.printers) > 0 {
		hp := s.world.printerJSON(c.printers[0], now)
		cc.HostPrinter = &hp
		cc.HostInternalIP = hp.IPAddress
		if j := c.printers[0].job; j != nil {
			pj := s.world.jobJSON(c, j, now)
			cc.HostCurrentPrintJob = &pj
			cc.HostRemainingPrintTime = pj.TimeRemaining
		}
	}
	for _, m := range c.maintenance {
		cc.MaintenanceDue = cc.MaintenanceDue || m.due
	}
	if c.note != "" {
		cc.Note = &connect.ClusterNote{Note: c.note}
	}
	return cc
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request, now time.Time) {
	s.world.advance(now)
	q := r.URL.Query()
	page, limit := atoiDefault(q.Get("page"), 1), atoiDefault(q.Get("limit"), 999999)
	if page < 1 || limit < 1 {
		writeError(w, http.StatusBadRequest, "invalidPagination", "page and limit must be positive", "")
		return
	}
	all := s.world.clusters
	pages := max(1, (len(all)+limit-1)/limit)
	lo, hi := min((page-1)*limit, len(all)), min(page*limit, len(all))
	items := make([]connect.Cluster, 0, hi-lo)
	for _, c := range all[lo:hi] {
		items = append(items, s.clusterJSON(c, now))
	}
	link := func(p int) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: fmt.Sprintf("page=%d&limit=%d", p, limit)}
		return u.String()
	}
	links := map[string]string{"first": link(1), "last": link(pages)}
	if page < pages {
		links["next"] = link(page + 1)
	}
	if page > 1 {
		links["prev"] = link(page - 1)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"data":  items,
		"meta":  map[string]any{"limit_reached": false, "page": map[string]any{"total_count": len(all), "total_pages": pages}},
		"links": links,
	})
}

func (s *Server) findCluster(w http.ResponseWriter, r *http.Request) *cluster {
	c := s.world.cluster(r.PathValue("cid"))
	if c == nil {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
		return nil
	}
	s.world.advanceCluster(c, s.SimNow())
	return c
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request, now time.Time) {
	if c := s.findCluster(w, r); c != nil {
		writeData(w, http.StatusOK, s.clusterJSON(c, now))
	}
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	online := c.spec.online
	st := connect.ClusterStatus{GeneratedTime: connect.Time{Time: s.world.wallTime(now)}, IsOnline: &online,
		Printers: []connect.Printer{}, PrintJobs: []connect.PrintJob{}, RecentlyCompleted: []connect.PrintJob{}}
	for _, p := range c.printers {
		st.Printers = append(st.Printers, s.world.printerJSON(p, now))
		if p.job != nil {
			pj := s.world.jobJSON(c, p.job, now)
			// A job on a printer was sliced: it has a preview.
			pj.PreviewURL = "http://" + r.Host + "/_sim/previews/" + pj.UUID + ".jpg"
			st.PrintJobs = append(st.PrintJobs, pj)
		}
	}
	for _, j := range c.queue {
		st.PrintJobs = append(st.PrintJobs, s.world.jobJSON(c, j, now))
	}
	for _, j := range c.recent {
		st.RecentlyCompleted = append(st.RecentlyCompleted, s.world.jobJSON(c, j, now))
	}
	writeData(w, http.StatusOK, st)
}

func (s *Server) getMaintenance(w http.ResponseWriter, r *http.Request, _ time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	out := []connect.MaintenanceTask{}
	for _, m := range c.maintenance {
		details, _ := json.Marshal(map[string]any{"type": "time_based", "value": map[string]any{"interval": 7776000}})
		out = append(out, connect.MaintenanceTask{IsDue: m.due, DueDate: connect.Time{Time: s.world.wallTime(m.dueAt)},
			TaskRule: connect.TaskRule{Code: m.code, TaskDetails: details}})
	}
	writeData(w, http.StatusOK, out)
}

func (s *Server) getPrintJob(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	j := c.findJob(r.PathValue("jid"))
	if j == nil {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
		return
	}
	d := connect.PrintJobDetails{PrintJob: s.world.jobJSON(c, j, now), Source: &connect.PrintJobSource{
		JobID: j.cloudID, Status: "uploaded", JobName: j.name, ContentType: "application/x-ufp",
		FileSize: 2_400_000, UploadedAt: connect.Time{Time: j.createdAt}, Username: j.owner}}
	writeData(w, http.StatusOK, d)
}

func (s *Server) noteAction(r *http.Request) {
	if s.opts.OnAction != nil {
		s.opts.OnAction(r.URL.Path)
	}
}

func (s *Server) newAction(c *cluster, kind string, r *http.Request) *action {
	a := &action{id: uuidOf(fmt.Sprintf("action:%d:%d", len(s.actions), s.rng.Uint64())), clusterID: c.id, kind: kind,
		fail: s.takeActionFailure()}
	if kind == "get_webcam_snapshot" {
		a.imageURL = "http://" + r.Host + "/_sim/snapshots/" + a.id + ".jpg"
	}
	s.actions[a.id] = a
	return a
}

// postPrintJobAction obeys a print-job action at once and answers 201 with
// a pending action, as the API does.
func (s *Server) postPrintJobAction(w http.ResponseWriter, r *http.Request, now time.Time) {
	s.noteAction(r)
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	var body struct {
		Data connect.PrintJobActionBody `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	j := c.findJob(r.PathValue("jid"))
	if j == nil {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
		return
	}
	act := r.PathValue("action")
	if !c.spec.online {
		writeError(w, http.StatusConflict, "printerNotAcceptingJobs", "Printer is not accepting jobs", "Printer is busy or unavailable.")
		return
	}
	a := s.newAction(c, act, r)
	if !a.fail {
		if msg := s.applyJobAction(c, j, act, body.Data, now); msg != "" {
			delete(s.actions, a.id)
			writeError(w, http.StatusConflict, "printJobActionNotAllowed", "The action is not allowed in the job's current state", msg)
			return
		}
	}
	writeData(w, http.StatusCreated, connect.ActionStatus{ActionID: a.id, Status: connect.ActionPending})
}

// applyJobAction changes the world for a job action, or says why it cannot.
func (s *Server) applyJobAction(c *cluster, j *job, act string, body connect.PrintJobActionBody, now time.Time) string {
	switch act {
	case "pause":
		if j.status != "printing" {
			return "only a printing job can pause"
		}
		j.elapsed = j.elapsedAt(now)
		j.status, j.phaseStart, j.phaseDur = "pausing", now, transitionDur
		j.pauseAt, j.userPaused = 0, true
	case "print":
		if j.status != "paused" && j.status != "pausing" {
			return "only a paused job can resume"
		}
		j.status, j.phaseStart, j.phaseDur = "resuming", now, transitionDur
		j.userPaused = false
	case "abort":
		switch j.status {
		case "pre_print", "printing", "pausing", "paused", "resuming":
			j.elapsed = j.elapsedAt(now)
			j.status, j.phaseStart, j.phaseDur = "aborting", now, transitionDur
		case "queued":
			s.removeQueued(c, j)
			j.status, j.state, j.endedAt = "aborted", "history", now
			s.world.remember(c, j)
		default:
			return "job is not active"
		}
	case "move":
		if j.status != "queued" {
			return "only a queued job can move"
		}
		pos := 0
		if body.ToPosition != nil {
			pos = *body.ToPosition
		}
		s.removeQueued(c, j)
		pos = max(0, min(pos, len(c.queue)))
		c.queue = append(c.queue[:pos], append([]*job{j}, c.queue[pos:]...)...)
	case "remove":
		if j.status != "queued" {
			return "only a queued job can be removed"
		}
		s.removeQueued(c, j)
	case "force":
		if j.status != "queued" {
			return "only a queued job can be forced"
		}
		j.force = true
	default:
		return "unknown action " + act
	}
	return ""
}

func (s *Server) removeQueued(c *cluster, j *job) {
	for i, q := range c.queue {
		if q == j {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			return
		}
	}
}

func (s *Server) postPrinterAction(w http.ResponseWriter, r *http.Request, _ time.Time) {
	s.noteAction(r)
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	var body struct {
		Data connect.PrinterActionBody `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	var p *printer
	for _, cand := range c.printers {
		if cand.spec.uuid != "" && cand.spec.uuid == r.PathValue("pid") {
			p = cand
		}
	}
	if p == nil {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
		return
	}
	act := r.PathValue("action")
	if !c.spec.online {
		// An offline printer hears nothing: the action changes nothing.
		writeError(w, http.StatusConflict, "printerNotAcceptingJobs", "Printer is not accepting jobs", "Printer is busy or unavailable.")
		return
	}
	switch act {
	case "get_webcam_snapshot", "identify":
	case "import_material":
		if _, ok := s.materials[body.Data.MaterialProfileID]; !ok {
			writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "material_profile_id")
			return
		}
	case "rename":
		if body.Data.Name != "" {
			p.spec.name = body.Data.Name
		}
	case "set_availability":
		if body.Data.Enabled != nil {
			p.enabled = *body.Data.Enabled
		}
	default:
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "unknown printer action")
		return
	}
	a := s.newAction(c, act, r)
	writeData(w, http.StatusCreated, connect.ActionStatus{ActionID: a.id, Status: connect.ActionPending})
}

// getActionStatus moves an action one step along pending → sent →
// success|failed per poll, the lifecycle the official SDK polls for.
func (s *Server) getActionStatus(w http.ResponseWriter, r *http.Request, _ time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	a := s.actions[r.PathValue("aid")]
	if a == nil || a.clusterID != c.id {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
		return
	}
	a.polls++
	st := connect.ActionStatus{ActionID: a.id}
	switch {
	case a.polls <= 1:
		st.Status = connect.ActionPending
	case a.polls == 2:
		st.Status = connect.ActionSent
	case a.fail:
		st.Status = connect.ActionFailed
	default:
		st.Status = connect.ActionSuccess
		if a.imageURL != "" {
			st.StatusDetails, _ = json.Marshal(map[string]any{"type": "webcam_snapshot", "value": map[string]any{"image_url": a.imageURL}})
		}
	}
	writeData(w, http.StatusOK, st)
}

// postPrint queues an uploaded job; 409 when no printer can take it.
func (s *Server) postPrint(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil || !readBody(w, r, &struct{}{}) {
		return
	}
	jobID := r.PathValue("job")
	if len(jobID) != 44 {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "unknown job_id")
		return
	}
	s.queueCopy(w, c, "library_"+jobID[:6], now)
}

func (s *Server) postReprint(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil || !readBody(w, r, &struct{}{}) {
		return
	}
	orig := s.world.cluster(r.PathValue("orig"))
	var src *job
	if orig != nil {
		for _, j := range orig.recent {
			if j.uuid == r.PathValue("jid") {
				src = j
			}
		}
	}
	if src == nil {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
		return
	}
	s.queueCopy(w, c, src.name, now)
}

func (s *Server) queueCopy(w http.ResponseWriter, c *cluster, name string, now time.Time) {
	accepting := false
	for _, p := range c.printers {
		accepting = accepting || p.enabled
	}
	if !c.spec.online || !accepting {
		writeError(w, http.StatusConflict, "printerNotAcceptingJobs", "Printer is not accepting jobs", "Printer is busy or unavailable.")
		return
	}
	j := s.world.newJob(c, now)
	j.name = name
	c.queue = append(c.queue, j)
	writeData(w, http.StatusOK, connect.PrintRequest{JobID: j.cloudID, JobInstanceUUID: j.uuid, Status: "queued",
		GeneratedTime: connect.Time{Time: now}})
}

// putMaintenance logs tasks as done: they are due again in 90 days.
func (s *Server) putMaintenance(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	var body struct {
		Data struct {
			TaskCodes []string `json:"task_codes"`
		} `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	if len(body.Data.TaskCodes) == 0 {
		writeError(w, http.StatusBadRequest, "requiredField", "A required field is missing.", "task_codes")
		return
	}
	for _, code := range body.Data.TaskCodes {
		found := false
		for i := range c.maintenance {
			if c.maintenance[i].code == code {
				c.maintenance[i].due, c.maintenance[i].dueAt, found = false, now.Add(90*24*time.Hour), true
				c.maintLog = append([]connect.CompletedMaintenance{{CompletedAt: connect.Time{Time: s.world.wallTime(now)},
					TaskCodes: []string{code}, UserID: s.world.userID, Username: "jdoe"}}, c.maintLog...)
			}
		}
		if !found {
			writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", code)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listMakerBots(w http.ResponseWriter, _ *http.Request, _ time.Time) {
	out := []connect.MakerBotPrinter{}
	for _, c := range s.world.clusters {
		if !isMakerBot(c) {
			continue
		}
		out = append(out, connect.MakerBotPrinter{FriendlyName: c.spec.name, HostGUID: c.spec.hostGUID, IsAuthorized: true,
			IsOnline: c.spec.online, PrinterType: c.spec.printerType, OrganizationID: c.orgID, UserID: s.world.userID})
	}
	writeData(w, http.StatusOK, out)
}

func (s *Server) addFaultHTTP(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&f); err != nil || f.Kind == "" {
		http.Error(w, "want {\"kind\":…}", http.StatusBadRequest)
		return
	}
	s.AddFault(f)
	w.WriteHeader(http.StatusNoContent)
}

// readBody accepts what the API accepts: no body, {} or {"data":{…}}.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return err == nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeError(w, http.StatusBadRequest, "requiredField", "The request body is not valid JSON", err.Error())
		return false
	}
	return true
}

func atoiDefault(s string, d int) int {
	if s == "" {
		return d
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func writeData(w http.ResponseWriter, status int, v any) {
	writeJSON(w, status, map[string]any{"data": v})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError writes the API's error object; http_status is a string there.
func writeError(w http.ResponseWriter, status int, code, title, detail string) {
	obj := map[string]any{"id": uuidOf(fmt.Sprintf("err:%s:%d", code, time.Now().UnixNano())), "code": code,
		"title": title, "http_status": strconv.Itoa(status)}
	if detail != "" {
		obj["detail"] = detail
	}
	writeJSON(w, status, map[string]any{"errors": []any{obj}})
}

// Rename renames the first printer of a cluster, as someone would in
// Digital Factory, and returns its unique name: benchmarks time how long
// the change takes to reach MQTT.
func (s *Server) Rename(clusterID, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.world.cluster(clusterID)
	if c == nil || len(c.printers) == 0 {
		return ""
	}
	c.printers[0].spec.name = name
	return c.printers[0].spec.uniqueName
}
