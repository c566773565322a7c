package simulator

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// Pairing answers of a simulated printer's screen.
const (
	PairApprove = "approve" // ALLOW, after LocalOptions.ApproveAfter
	PairRefuse  = "refuse"  // DENY, after LocalOptions.ApproveAfter
	PairIgnore  = "ignore"  // nobody comes: the request stays unknown
)

// LocalOptions shape one printer's LAN API.
type LocalOptions struct {
	// Algorithm of the digest challenge: "MD5" (default; sent without an
	// algorithm, as firmware 6.x does) or "SHA-256".
	Algorithm string
	// Pairing is what the person at the printer does (default approve).
	Pairing string
	// ApproveAfter is how long the person takes (real time).
	ApproveAfter time.Duration
	// GatedReads makes the printer refuse its state (/printer, /print_job,
	// the cluster API) to anyone not paired, as firmware from 2025 does.
	GatedReads bool
	// Hostname is the host name /api/v1/system reports (default: the
	// printer's unique name, as the cloud knows it).
	Hostname string
	// Members are, on a group's host, the addresses (host:port) where the
	// LAN API of other printers of the group is served: the cluster API
	// reports them as their ip_address, as a real group reports its
	// members' IPs.
	Members map[string]string
}

// LocalPrinter is one simulated printer's LAN API (/api/v1, and
// /cluster-api/v1 on a group's host), driven by the same world as the
// cloud. Serve it with net/http on an address of its own.
type LocalPrinter struct {
	s    *Server
	p    *printer
	opts LocalOptions
	mux  *http.ServeMux

	mu       sync.Mutex
	pairings map[string]*pairing // by id
	nonces   map[string]bool
	offline  bool
	requests map[string]int
}

type pairing struct {
	key   string
	asked time.Time
	state string // unknown, authorized, unauthorized
}

// LocalPrinter returns the LAN API of the printer with this unique name.
func (s *Server) LocalPrinter(uniqueName string, opts LocalOptions) (*LocalPrinter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *printer
	for _, c := range s.world.clusters {
		for _, p := range c.printers {
			if p.spec.uniqueName == uniqueName {
				found = p
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no printer %q in the simulated world", uniqueName)
	}
	if opts.Pairing == "" {
		opts.Pairing = PairApprove
	}
	lp := &LocalPrinter{s: s, p: found, opts: opts, mux: http.NewServeMux(), pairings: map[string]*pairing{},
		nonces: map[string]bool{}, requests: map[string]int{}}
	lp.routes()
	return lp, nil
}

// LocalPrinterNames lists the printers a LocalPrinter can serve.
func (s *Server) LocalPrinterNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.world.clusters {
		for _, p := range c.printers {
			if p.spec.uniqueName != "" && !isMakerBot(c) {
				out = append(out, p.spec.uniqueName)
			}
		}
	}
	return out
}

// SetOffline makes the printer drop every connection (asleep, rebooting,
// unplugged) or answer again.
func (lp *LocalPrinter) SetOffline(off bool) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.offline = off
}

// RevokePairings forgets every pairing, as a factory reset does.
func (lp *LocalPrinter) RevokePairings() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.pairings = map[string]*pairing{}
}

// Requests counts the requests whose path starts with prefix.
func (lp *LocalPrinter) Requests(prefix string) int {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return countRequests(lp.requests, func(p string) bool { return strings.HasPrefix(p, prefix) })
}

// ServeHTTP implements http.Handler.
func (lp *LocalPrinter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lp.mu.Lock()
	off := lp.offline
	lp.requests[r.URL.Path]++
	lp.mu.Unlock()
	if off {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	lp.mux.ServeHTTP(w, r)
}

func (lp *LocalPrinter) routes() {
	// open: read without pairing (the gated ones only before 2025)
	open := func(pattern string, h func(http.ResponseWriter, *http.Request, time.Time)) {
		lp.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { lp.world(w, r, h) })
	}
	gated := func(pattern string, h func(http.ResponseWriter, *http.Request, time.Time)) {
		lp.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if lp.opts.GatedReads && !lp.authorized(w, r) {
				return
			}
			lp.world(w, r, h)
		})
	}
	signed := func(pattern string, h func(http.ResponseWriter, *http.Request, time.Time)) {
		lp.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if lp.authorized(w, r) {
				lp.world(w, r, h)
			}
		})
	}
	open("GET /api/v1/system", lp.system)
	open("GET /api/v1/camera", func(w http.ResponseWriter, r *http.Request, _ time.Time) {
		writeJSON(w, http.StatusOK, map[string]string{"feed": "http://" + r.Host + "/api/v1/camera/0/stream"})
	})
	for _, kind := range []string{"snapshot", "stream"} {
		lp.mux.HandleFunc("GET /api/v1/camera/0/"+kind, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/_sim/camera.jpg", http.StatusFound)
		})
	}
	lp.mux.HandleFunc("GET /_sim/camera.jpg", func(w http.ResponseWriter, r *http.Request) {
		lp.s.mu.Lock()
		now := lp.s.SimNow()
		lp.s.world.advanceCluster(lp.p.cluster, now)
		b := lp.s.cameraPicture(lp.p, now)
		lp.s.mu.Unlock()
		servePicture(w, b)
	})
	gated("GET /api/v1/printer", lp.printer)
	gated("GET /api/v1/print_job", lp.printJob)
	gated("GET /api/v1/history/print_jobs", lp.history)
	signed("PUT /api/v1/print_job/state", lp.putJobState)
	gated("GET /cluster-api/v1/printers", lp.clusterPrinters)
	gated("GET /cluster-api/v1/print_jobs", lp.clusterJobs)
	signed("PUT /cluster-api/v1/print_jobs/{jid}", lp.queueAction("force"))
	signed("DELETE /cluster-api/v1/print_jobs/{jid}", lp.queueAction("remove"))
	signed("POST /cluster-api/v1/print_jobs/{jid}/action/move", lp.queueAction("move"))
	lp.mux.HandleFunc("POST /api/v1/auth/request", lp.authRequest)
	lp.mux.HandleFunc("GET /api/v1/auth/check/{id}", lp.authCheck)
	lp.mux.HandleFunc("GET /api/v1/auth/verify", func(w http.ResponseWriter, r *http.Request) {
		if lp.authorized(w, r) {
			writeJSON(w, http.StatusOK, map[string]string{"message": "ok"})
		}
	})
}

// world runs h with the world moved to now, holding the server's lock.
func (lp *LocalPrinter) world(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request, time.Time)) {
	lp.s.mu.Lock()
	defer lp.s.mu.Unlock()
	now := lp.s.SimNow()
	lp.s.world.advanceCluster(lp.p.cluster, now)
	h(w, r, now)
}

func (lp *LocalPrinter) system(w http.ResponseWriter, _ *http.Request, _ time.Time) {
	s := lp.p.spec
	host := s.uniqueName
	if lp.opts.Hostname != "" {
		host = lp.opts.Hostname
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": s.name, "hostname": host, "guid": s.uuid,
		"firmware": s.firmware, "variant": s.variant, "type": "3D printer", "hardware": map[string]int{"typeid": 9051}})
}

// temps are a hotend's or the bed's reading and target: at target while
// printing, cooling otherwise.
func temps(job *job, target float64) map[string]float64 {
	if job == nil || job.status == "post_print" || job.status == "wait_cleanup" {
		return map[string]float64{"current": 24.3, "target": 0}
	}
	if job.status == "pre_print" {
		return map[string]float64{"current": target - 35.5, "target": target}
	}
	return map[string]float64{"current": target - 0.2, "target": target}
}

func (lp *LocalPrinter) printer(w http.ResponseWriter, _ *http.Request, _ time.Time) {
	p := lp.p
	status := "idle"
	if p.job != nil {
		status = "printing"
	}
	var extruders []any
	for i, c := range p.spec.cores {
		target := 215.0
		if c.material == "empty" {
			target = 0
		}
		hotend := map[string]any{"id": c.core, "serial": fmt.Sprintf("cf6d7e49%04x", i), "revision": "1",
			"temperature": temps(p.job, target)}
		mat := map[string]any{"length_remaining": -1, "guid": "", "GUID": ""}
		if c.material != "empty" {
			guid := uuidOf("material:" + c.brand + c.material + c.color)
			mat["guid"], mat["GUID"] = guid, guid
		}
		extruders = append(extruders, map[string]any{"hotend": hotend, "active_material": mat})
	}
	body := map[string]any{"status": status,
		"bed":   map[string]any{"type": p.spec.plate, "temperature": temps(p.job, 60), "pre_heat": map[string]bool{"active": false}},
		"heads": []any{map[string]any{"fan": 0, "extruders": extruders}},
		"led":   map[string]float64{"hue": 0, "saturation": 0, "brightness": 100},
	}
	writeJSON(w, http.StatusOK, body)
}

// localJobState is the LAN's word for a job's status, "" when the LAN
// shows no job.
func localJobState(j *job) string {
	switch j.status {
	case "aborting":
		return "post_print"
	case "finished", "aborted", "queued":
		return ""
	}
	return j.status
}

func (lp *LocalPrinter) printJob(w http.ResponseWriter, _ *http.Request, now time.Time) {
	j := lp.p.job
	if j == nil || localJobState(j) == "" {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not found"})
		return
	}
	wd := lp.s.world
	el, total := wd.wallDur(j.elapsedAt(now)), wd.wallDur(j.total)
	result := ""
	if j.status == "wait_cleanup" {
		result = "Finished"
		if j.aborted {
			result = "Aborted"
		}
	}
	progress := 0.0
	if total > 0 {
		progress = min(el/total, 1)
	}
	writeJSON(w, http.StatusOK, map[string]any{"uuid": j.uuid, "name": j.name, "state": localJobState(j), "result": result,
		"progress": progress, "time_elapsed": el, "time_total": total, "source": "WEB_API", "source_user": j.owner,
		"datetime_started":      wd.wallTime(j.phaseStart.Add(-j.elapsed)).Format("2006-01-02T15:04:05"),
		"reprint_original_uuid": ""})
}

// history lists the jobs that ended on this printer, newest first
// (offset and count page it), as the printer's own API does: times
// without a zone, the result capitalised.
func (lp *LocalPrinter) history(w http.ResponseWriter, r *http.Request, now time.Time) {
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	count, err := strconv.Atoi(q.Get("count"))
	if err != nil || count <= 0 {
		count = 50
	}
	wd := lp.s.world
	const local = "2006-01-02T15:04:05"
	var out []map[string]any
	hist := lp.p.cluster.history
	for i := len(hist) - 1; i >= 0; i-- {
		j := hist[i]
		if j.printer != lp.p {
			continue
		}
		if offset > 0 {
			offset--
			continue
		}
		if len(out) == count {
			break
		}
		result := strings.ToUpper(j.status[:1]) + j.status[1:]
		el := wd.wallDur(j.elapsed)
		out = append(out, map[string]any{"uuid": j.uuid, "name": j.name, "result": result, "owner": j.owner,
			"created_at": wd.wallTime(j.createdAt).Format(local), "datetime_started": wd.wallTime(j.endedAt.Add(-j.elapsed)).Format(local),
			"datetime_finished": wd.wallTime(j.endedAt).Format(local), "time_elapsed": el, "time_total": wd.wallDur(j.total),
			"source": "WEB_API"})
	}
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (lp *LocalPrinter) putJobState(w http.ResponseWriter, r *http.Request, now time.Time) {
	var body struct {
		Target string `json:"target"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "bad body"})
		return
	}
	j := lp.p.job
	if j == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not found"})
		return
	}
	if body.Target != "pause" && body.Target != "print" && body.Target != "abort" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "target must be print, pause or abort"})
		return
	}
	lp.s.noteAction(r)
	if msg := lp.s.applyJobAction(lp.p.cluster, j, body.Target, connect.PrintJobActionBody{}, now); msg != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": msg})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// host is the printer that serves its group's cluster API.
func (lp *LocalPrinter) host() bool { return lp.p.cluster.printers[0] == lp.p }

func (lp *LocalPrinter) clusterPrinters(w http.ResponseWriter, _ *http.Request, now time.Time) {
	out := []connect.Printer{}
	if lp.host() {
		for _, p := range lp.p.cluster.printers {
			cp := lp.s.world.printerJSON(p, now)
			if addr, ok := lp.opts.Members[p.spec.uniqueName]; ok {
				cp.IPAddress = addr
			}
			cp.Status = p.status()
			if cp.Status == "unreachable" {
				cp.Status = "idle" // the group answers on the LAN whatever the cloud says
			}
			out = append(out, cp)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (lp *LocalPrinter) clusterJobs(w http.ResponseWriter, _ *http.Request, now time.Time) {
	out := []connect.PrintJob{}
	if lp.host() {
		c := lp.p.cluster
		for _, j := range c.queue {
			out = append(out, lp.s.world.jobJSON(c, j, now))
		}
		for _, p := range c.printers {
			if p.job != nil {
				out = append(out, lp.s.world.jobJSON(c, p.job, now))
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (lp *LocalPrinter) queueAction(act string) func(http.ResponseWriter, *http.Request, time.Time) {
	return func(w http.ResponseWriter, r *http.Request, now time.Time) {
		c := lp.p.cluster
		j := c.findJob(r.PathValue("jid"))
		if !lp.host() || j == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not found"})
			return
		}
		body := connect.PrintJobActionBody{}
		if act == "move" {
			zero := 0
			body.ToPosition = &zero
		}
		lp.s.noteAction(r)
		if msg := lp.s.applyJobAction(c, j, act, body, now); msg != "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": msg})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (lp *LocalPrinter) authRequest(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("application") == "" || r.PostForm.Get("user") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "application and user are required"})
		return
	}
	id, key := randomHex(16), randomHex(32)
	lp.mu.Lock()
	lp.pairings[id] = &pairing{key: key, asked: time.Now(), state: "unknown"}
	lp.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "key": key})
}

func (lp *LocalPrinter) authCheck(w http.ResponseWriter, r *http.Request) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	pr := lp.pairings[r.PathValue("id")]
	if pr == nil {
		writeJSON(w, http.StatusOK, map[string]string{"message": "unknown"})
		return
	}
	if pr.state == "unknown" && time.Since(pr.asked) >= lp.opts.ApproveAfter {
		switch lp.opts.Pairing {
		case PairApprove:
			pr.state = "authorized"
		case PairRefuse:
			pr.state = "unauthorized"
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": pr.state})
}

// authorized checks the request's digest (RFC 2617, qop auth) against the
// authorized pairings, computed here by hand so that the bridge's digest
// library is checked, not trusted; without a valid one it answers 401
// with a fresh challenge.
func (lp *LocalPrinter) authorized(w http.ResponseWriter, r *http.Request) bool {
	algo := strings.ToUpper(lp.opts.Algorithm)
	if h := r.Header.Get("Authorization"); h != "" {
		if cred, err := digest.ParseCredentials(h); err == nil && lp.valid(cred, r.Method, algo) {
			return true
		}
	}
	nonce := randomHex(16)
	lp.mu.Lock()
	if len(lp.nonces) > 4096 {
		lp.nonces = map[string]bool{} // older nonces go stale
	}
	lp.nonces[nonce] = true
	lp.mu.Unlock()
	chal := fmt.Sprintf(`Digest realm="Jedi-API", nonce="%s", qop="auth"`, nonce)
	if algo == "SHA-256" {
		chal += ", algorithm=SHA-256"
	}
	w.Header().Set("WWW-Authenticate", chal)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Authorization required"})
	return false
}

func (lp *LocalPrinter) valid(c *digest.Credentials, method, algo string) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	pr := lp.pairings[c.Username]
	if pr == nil || pr.state != "authorized" || !lp.nonces[c.Nonce] || c.Realm != "Jedi-API" || c.QOP != "auth" {
		return false
	}
	var h func() hash.Hash = md5.New
	switch {
	case algo == "SHA-256" && strings.EqualFold(c.Algorithm, "SHA-256"):
		h = sha256.New
	case algo == "SHA-256" || c.Algorithm != "" && !strings.EqualFold(c.Algorithm, "MD5"):
		return false
	}
	sum := func(s string) string {
		x := h()
		x.Write([]byte(s))
		return hex.EncodeToString(x.Sum(nil))
	}
	ha1 := sum(c.Username + ":Jedi-API:" + pr.key)
	ha2 := sum(method + ":" + c.URI)
	want := sum(fmt.Sprintf("%s:%s:%08x:%s:auth:%s", ha1, c.Nonce, c.Nc, c.Cnonce, ha2))
	return subtle.ConstantTimeCompare([]byte(want), []byte(c.Response)) == 1
}

// PressOnScreen does what a person at the printer does: "pause", "print"
// (resume) or "abort" its job, without the bridge.
func (lp *LocalPrinter) PressOnScreen(target string) error {
	lp.s.mu.Lock()
	defer lp.s.mu.Unlock()
	now := lp.s.SimNow()
	lp.s.world.advanceCluster(lp.p.cluster, now)
	if lp.p.job == nil {
		return fmt.Errorf("no job on %s", lp.p.spec.name)
	}
	if msg := lp.s.applyJobAction(lp.p.cluster, lp.p.job, target, connect.PrintJobActionBody{}, now); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	return nil
}
