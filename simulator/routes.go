package simulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// material is an uploaded material profile and its bytes' arrival.
type material struct {
	profile  connect.MaterialProfile
	uploaded bool
}

var (
	pinRe      = regexp.MustCompile(`^[0-9A-Z]{6}$`)
	hostGUIDRe = regexp.MustCompile(`^[0-9A-Fa-f-]{20,36}$`)
)

// moreRoutes serves the rest of the reference's §2: settings, usage,
// reports, print-job lists and notes, cluster notes, sharing and removal,
// teams, registration, materials.
func (s *Server) moreRoutes(api func(string, func(http.ResponseWriter, *http.Request, time.Time))) {
	api("POST /clusters", s.accessibleClusters)
	api("DELETE /clusters/{cid}", s.deleteCluster)
	api("POST /clusters/{cid}/note", s.postNote)
	api("POST /clusters/{cid}/share", s.postShare)
	api("POST /clusters/share_all", s.postShareAll)
	api("GET /clusters/team_count", s.teamCount)
	api("GET /clusters/{cid}/maintenance/completed", s.completedMaintenance)
	api("POST /clusters/{cid}/print_jobs/{jid}", s.postJobNote)
	api("GET /print_jobs", s.printJobs)
	api("GET /print_jobs/reports", s.reports)
	api("GET /filters/print_jobs", s.filters)
	api("GET /settings", func(w http.ResponseWriter, _ *http.Request, _ time.Time) { writeData(w, http.StatusOK, s.settings) })
	api("POST /settings", s.postSettings)
	api("GET /usage", s.usage)
	api("POST /confirm-registration/{id}", s.confirmRegistration)
	api("POST /confirm-registration-pin/{pin}", s.confirmRegistration)
	api("PUT /makerbot/printers", s.registerMakerBot)
	api("PUT /materials/upload", s.uploadMaterial)
	api("GET /user/{uid}/clusters", s.userClusters)
	api("DELETE /teams/{tid}", s.deleteTeam)
	// The signed storage URL of a material upload: no bearer token.
	s.mux.HandleFunc("PUT /_sim/uploads/{id}", s.receiveUpload)
}

func (s *Server) accessibleClusters(w http.ResponseWriter, r *http.Request, _ time.Time) {
	var body struct {
		Data struct {
			ClusterIDs []string `json:"cluster_ids"`
		} `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	out := []string{}
	for _, id := range body.Data.ClusterIDs {
		if s.world.cluster(id) != nil {
			out = append(out, id)
		}
	}
	writeData(w, http.StatusOK, map[string]any{"cluster_ids": out})
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request, _ time.Time) {
	if c := s.findCluster(w, r); c != nil {
		s.world.clusters = slices.DeleteFunc(s.world.clusters, func(x *cluster) bool { return x == c })
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) postNote(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	var body struct {
		Data struct {
			Note *struct {
				Note string `json:"note"`
			} `json:"note"`
		} `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	note := ""
	if body.Data.Note != nil {
		note = body.Data.Note.Note
	}
	if len([]rune(note)) > 3500 {
		writeError(w, http.StatusBadRequest, "fieldTooLong", "The note is too long", "note")
		return
	}
	c.note = note
	writeData(w, http.StatusOK, s.clusterJSON(c, now))
}

func (s *Server) postShare(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	var body struct {
		Data connect.Sharing `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	if body.Data.OrganizationShared && len(body.Data.TeamIDs) > 0 {
		writeError(w, http.StatusBadRequest, "invalidSharing", "Share with the organization or with teams, not both", "")
		return
	}
	c.orgShared, c.teamIDs = body.Data.OrganizationShared, append([]string{}, body.Data.TeamIDs...)
	writeData(w, http.StatusOK, s.clusterJSON(c, now))
}

func (s *Server) postShareAll(w http.ResponseWriter, r *http.Request, _ time.Time) {
	var body struct {
		Data connect.Sharing `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	ids := []string{}
	for _, c := range s.world.clusters {
		c.orgShared, c.teamIDs = body.Data.OrganizationShared, append([]string{}, body.Data.TeamIDs...)
		ids = append(ids, c.id)
	}
	writeData(w, http.StatusOK, map[string]any{"cluster_ids": ids})
}

func (s *Server) teamCount(w http.ResponseWriter, r *http.Request, _ time.Time) {
	counts := map[string]int{}
	for _, t := range r.URL.Query()["team_ids[]"] {
		counts[t] = 0
		for _, c := range s.world.clusters {
			if slices.Contains(c.teamIDs, t) {
				counts[t]++
			}
		}
	}
	writeData(w, http.StatusOK, map[string]any{"counts": counts})
}

func (s *Server) deleteTeam(w http.ResponseWriter, r *http.Request, _ time.Time) {
	found := false
	for _, c := range s.world.clusters {
		n := len(c.teamIDs)
		c.teamIDs = slices.DeleteFunc(c.teamIDs, func(t string) bool { return t == r.PathValue("tid") })
		found = found || len(c.teamIDs) != n
	}
	if !found {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "team")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) completedMaintenance(w http.ResponseWriter, r *http.Request, _ time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	items := append([]connect.CompletedMaintenance{}, c.maintLog...)
	s.writePage(w, r, len(items), func(lo, hi int) any { return items[lo:hi] })
}

func (s *Server) postJobNote(w http.ResponseWriter, r *http.Request, now time.Time) {
	c := s.findCluster(w, r)
	if c == nil {
		return
	}
	j := c.findJob(r.PathValue("jid"))
	if j == nil {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "")
		return
	}
	var body struct {
		Data struct {
			Note string `json:"note"`
		} `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	if len([]rune(body.Data.Note)) > 500 {
		writeError(w, http.StatusBadRequest, "fieldTooLong", "The note is too long", "note")
		return
	}
	j.note = body.Data.Note
	writeData(w, http.StatusOK, connect.PrintJobDetails{PrintJob: s.world.jobJSON(c, j, now)})
}

// printJobs lists queued, active and ended jobs; status[] filters on the
// job's state, as the reference says.
func (s *Server) printJobs(w http.ResponseWriter, r *http.Request, now time.Time) {
	s.world.advance(now)
	q := r.URL.Query()
	var items []connect.PrintJob
	for _, c := range s.world.clusters {
		if ids := q["cluster_ids[]"]; len(ids) > 0 && !slices.Contains(ids, c.id) {
			continue
		}
		var jobs []*job
		jobs = append(jobs, c.queue...)
		for _, p := range c.printers {
			if p.job != nil {
				jobs = append(jobs, p.job)
			}
		}
		for i := len(c.history) - 1; i >= 0; i-- {
			jobs = append(jobs, c.history[i])
		}
		for _, j := range jobs {
			pj := s.world.jobJSON(c, j, now)
			if st := q["status[]"]; len(st) > 0 && !slices.Contains(st, pj.State) {
				continue
			}
			items = append(items, pj)
		}
	}
	s.writePage(w, r, len(items), func(lo, hi int) any { return items[lo:hi] })
}

// reports lists the jobs that ended between start_date and end_date.
func (s *Server) reports(w http.ResponseWriter, r *http.Request, now time.Time) {
	s.world.advance(now)
	q := r.URL.Query()
	start, err1 := time.Parse(time.RFC3339, q.Get("start_date"))
	end, err2 := time.Parse(time.RFC3339, q.Get("end_date"))
	if err1 != nil || err2 != nil {
		writeError(w, http.StatusBadRequest, "requiredField", "A required field is missing.", "start_date, end_date")
		return
	}
	// Only the page asked for is encoded: a farm's month is a hundred
	// pages, and each would encode every job again.
	type match struct {
		c *cluster
		j *job
	}
	var matches []match
	for _, c := range s.world.clusters {
		if ids := q["cluster_ids[]"]; len(ids) > 0 && !slices.Contains(ids, c.id) {
			continue
		}
		for _, j := range c.history {
			if ended := s.world.wallTime(j.endedAt); !ended.Before(start) && !ended.After(end) {
				matches = append(matches, match{c, j})
			}
		}
	}
	s.writePage(w, r, len(matches), func(lo, hi int) any {
		items := make([]connect.Report, 0, hi-lo)
		for _, m := range matches[lo:hi] {
			pj := s.world.jobJSON(m.c, m.j, now)
			items = append(items, connect.Report{UUID: pj.UUID, ClusterID: pj.ClusterID, Name: pj.Name, Status: pj.Status,
				State: pj.State, Started: true, TimeTotal: pj.TimeTotal, TimeElapsed: pj.TimeElapsed, PrinterUUID: pj.PrinterUUID,
				PrintedOnUUID: pj.PrintedOnUUID, PrinterName: pj.PrinterName, Owner: pj.Owner, CreatedAt: pj.CreatedAt,
				UpdatedAt: connect.Time{Time: s.world.wallTime(m.j.endedAt)}, PrinterConfiguration: s.world.configurationOf(m.j.printer)})
		}
		return items
	})
}

func (s *Server) filters(w http.ResponseWriter, _ *http.Request, _ time.Time) {
	writeData(w, http.StatusOK, []map[string]any{
		{"key": "material_station_optimized", "display_name": "Material Station optimized", "type": "boolean"},
		{"key": "sent_from", "display_name": "Sent from", "type": "multi_select", "options": []map[string]string{
			{"key": "cloud", "display_name": "Digital Factory"}, {"key": "usb", "display_name": "USB"},
			{"key": "network", "display_name": "Network"}, {"key": "reprint", "display_name": "Reprint"}}},
	})
}

func (s *Server) postSettings(w http.ResponseWriter, r *http.Request, _ time.Time) {
	var body struct {
		Data connect.Settings `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	s.settings = body.Data
	writeData(w, http.StatusOK, s.settings)
}

// usage has no published schema; this shape is the simulator's own.
func (s *Server) usage(w http.ResponseWriter, _ *http.Request, now time.Time) {
	s.world.advance(now)
	printers, jobs, secs := 0, 0, 0.0
	for _, c := range s.world.clusters {
		printers += len(c.printers)
		for _, j := range c.history {
			if now.Sub(j.endedAt) < 30*24*time.Hour {
				jobs++
				secs += s.world.wallDur(j.elapsed)
			}
		}
	}
	writeData(w, http.StatusOK, map[string]any{"clusters": len(s.world.clusters), "printers": printers,
		"print_jobs_30d": jobs, "print_seconds_30d": secs})
}

// confirmRegistration adds a printer to the account, by the PIN on its
// screen or its connection id: a new single-printer cluster appears.
func (s *Server) confirmRegistration(w http.ResponseWriter, r *http.Request, now time.Time) {
	key := r.PathValue("id")
	if pin := r.PathValue("pin"); pin != "" {
		if !pinRe.MatchString(pin) {
			writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "pin_code")
			return
		}
		key = pin
	} else if len(key) != 44 {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "connection_id")
		return
	}
	s.register(w, "ultimakersystem-"+fmt.Sprintf("%012x", hash32(key)), "Registered-"+key[:6], "ultimaker_s5", "Ultimaker S5", now)
}

func (s *Server) registerMakerBot(w http.ResponseWriter, r *http.Request, now time.Time) {
	var body struct {
		Data struct {
			PrinterID string `json:"printer_id"`
		} `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	if !hostGUIDRe.MatchString(body.Data.PrinterID) {
		writeError(w, http.StatusBadRequest, "requiredField", "A required field is missing.", "printer_id")
		return
	}
	s.register(w, "makerbot-"+fmt.Sprintf("%08x", hash32(body.Data.PrinterID)), "MakerBot-"+body.Data.PrinterID[:4], "lava_f",
		"MakerBot Method X", now)
}

func (s *Server) register(w http.ResponseWriter, host, name, typ, variant string, now time.Time) {
	for _, c := range s.world.clusters {
		if c.spec.hostName == host {
			writeError(w, http.StatusConflict, "recordDuplicated", "The given record already exists", "")
			return
		}
	}
	spec := clusterSpec{name: name, hostName: host, printerType: typ, hostVersion: "8.3.0", online: true,
		printers: []printerSpec{{name: name, variant: variant, firmware: "8.3.0", uniqueName: host,
			cores: []coreSpec{{core: "AA 0.4", material: "PLA", brand: "Generic", color: "White"}}}}}
	nw := newWorld([]clusterSpec{spec}, 1, true, now)
	c := nw.clusters[0]
	c.orgID, c.history = cloudID("org:demo"), nil
	s.world.clusters = append(s.world.clusters, c)
	writeData(w, http.StatusOK, connect.Registration{ClusterID: c.id, HostName: host, GeneratedTime: connect.Time{Time: now}})
}

func (s *Server) uploadMaterial(w http.ResponseWriter, r *http.Request, _ time.Time) {
	var body struct {
		Data struct {
			ContentType string  `json:"content_type"`
			FileSize    float64 `json:"file_size"`
			Name        string  `json:"material_profile_name"`
			Origin      string  `json:"origin"`
		} `json:"data"`
	}
	if !readBody(w, r, &body) {
		return
	}
	d := body.Data
	if d.ContentType == "" || d.Name == "" || len(d.Name) < 3 || d.FileSize < 1 || d.Origin == "" {
		writeError(w, http.StatusBadRequest, "requiredField", "A required field is missing.", "content_type, file_size, material_profile_name, origin")
		return
	}
	id := cloudID(fmt.Sprintf("material:%s:%d", d.Name, len(s.materials)))
	m := &material{profile: connect.MaterialProfile{MaterialProfileID: id, MaterialProfileName: d.Name, ContentType: d.ContentType,
		FileSize: d.FileSize, Status: "uploading", UserID: s.world.userID, Username: "jdoe", ClientID: "ultimaker2mqtt",
		UploadURL: "http://" + r.Host + "/_sim/uploads/" + url.PathEscape(id)}}
	s.materials[id] = m
	writeData(w, http.StatusCreated, m.profile)
}

func (s *Server) receiveUpload(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.materials[r.PathValue("id")]
	if m == nil {
		http.Error(w, "no such upload", http.StatusNotFound)
		return
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<30))
	if r.Header.Get("Content-Type") != m.profile.ContentType || float64(n) != m.profile.FileSize {
		http.Error(w, "content type or size differ from the announcement", http.StatusBadRequest)
		return
	}
	m.uploaded, m.profile.Status = true, "uploaded"
	w.WriteHeader(http.StatusOK)
}

func (s *Server) userClusters(w http.ResponseWriter, r *http.Request, now time.Time) {
	s.world.advance(now)
	if r.PathValue("uid") != s.world.userID {
		writeError(w, http.StatusNotFound, "recordNotFound", "The given record does not exist", "user")
		return
	}
	out := []connect.Cluster{}
	for _, c := range s.world.clusters {
		out = append(out, s.clusterJSON(c, now))
	}
	writeData(w, http.StatusOK, out)
}

// writePage answers one page of n items (page and limit from the query)
// with meta and links, as the paginated lists of the API do.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, n int, slice func(lo, hi int) any) {
	q := r.URL.Query()
	page, limit := atoiDefault(q.Get("page"), 1), atoiDefault(q.Get("limit"), 999999)
	if page < 1 || limit < 1 {
		writeError(w, http.StatusBadRequest, "invalidPagination", "page and limit must be positive", "")
		return
	}
	pages := max(1, (n+limit-1)/limit)
	lo, hi := min((page-1)*limit, n), min(page*limit, n)
	link := func(p int) string {
		v := r.URL.Query()
		v.Set("page", strconv.Itoa(p))
		v.Set("limit", strconv.Itoa(limit))
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: v.Encode()}
		return u.String()
	}
	links := map[string]string{"first": link(1), "last": link(pages)}
	if page < pages {
		links["next"] = link(page + 1)
	}
	if page > 1 {
		links["prev"] = link(page - 1)
	}
	items := slice(lo, hi)
	if b, _ := json.Marshal(items); string(b) == "null" {
		items = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": items,
		"meta": map[string]any{"limit_reached": false, "page": map[string]any{"total_count": n, "total_pages": pages}}, "links": links})
}

func hash32(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}
