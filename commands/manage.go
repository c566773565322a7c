package commands

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// Manager is the part of the Connect API the management commands call:
// notes, sharing, settings, materials, lists and reports, registration.
type Manager interface {
	SetClusterNote(ctx context.Context, clusterID, note string) (*connect.Cluster, error)
	ShareCluster(ctx context.Context, clusterID string, s connect.Sharing) (*connect.Cluster, error)
	DeleteCluster(ctx context.Context, clusterID string) error
	SetJobNote(ctx context.Context, clusterID, jobUUID, note string) (*connect.PrintJobDetails, error)
	Settings(ctx context.Context) (*connect.Settings, error)
	SetSettings(ctx context.Context, s connect.Settings) (*connect.Settings, error)
	UploadMaterial(ctx context.Context, name, contentType string, content []byte) (*connect.MaterialProfile, error)
	PrintJobRaw(ctx context.Context, clusterID, jobUUID string) (json.RawMessage, error)
	PrintJobs(ctx context.Context, q connect.PrintJobQuery) ([]connect.PrintJob, connect.Page, error)
	Reports(ctx context.Context, q connect.ReportQuery) ([]connect.Report, connect.Page, error)
	Filters(ctx context.Context) ([]connect.Filter, error)
	ConfirmRegistrationPIN(ctx context.Context, pin, brand string) (*connect.Registration, error)
	ConfirmRegistration(ctx context.Context, connectionID string) (*connect.Registration, error)
	RegisterMakerBot(ctx context.Context, printerID string) (*connect.Registration, error)
	ShareAll(ctx context.Context, s connect.Sharing) (json.RawMessage, error)
	TeamCount(ctx context.Context, teamIDs []string) (map[string]int, error)
	Cluster(ctx context.Context, clusterID string) (*connect.Cluster, error)
	MakerBotPrinters(ctx context.Context) ([]connect.MakerBotPrinter, error)
	UserClusters(ctx context.Context, userID string) ([]connect.Cluster, error)
	Spec(ctx context.Context, version string) (json.RawMessage, error)
	Root(ctx context.Context) (*connect.Uptime, error)
	Teapot(ctx context.Context) (bool, error)
	DeleteTeam(ctx context.Context, teamID string) error
}

// managed reports whether an action needs the Manager.
func managed(action string) bool {
	return slices.Contains(ClusterManagement, action) || slices.Contains(WorkspaceActions, action) ||
		action == "rename" || action == "import_material" ||
		(slices.Contains(BridgeActions, action) && !slices.Contains([]string{"refresh", "maintenance_done", "print"}, action))
}

// MaxAnswer bounds an answer: a list longer than this is cut, and says so
// in data.truncated.
const MaxAnswer = 256 << 10

// Limits of the management commands' fields, from the reference's models.
const (
	maxClusterNote = 3500
	maxJobNote     = 500
	maxListLimit   = 100
	maxMaterial    = 16 << 20 // a material file read from MATERIALS_DIR
)

var (
	cloudIDRe  = regexp.MustCompile(`^[A-Za-z0-9_-]{40,43}={0,3}$`)
	pinRe      = regexp.MustCompile(`^[0-9A-Z]{6}$`)
	hostGUIDRe = regexp.MustCompile(`^[0-9A-Fa-f-]{20,36}$`)
	jobStates  = []string{"wait_approval", "sending", "waiting", "in_progress", "history", "deleted"}
)

// planManage plans a cluster's note, job note, sharing or removal.
func (h *Handler) planManage(c state.Cluster, req Request) (work, *Response) {
	switch req.Action {
	case "note":
		if req.Note == nil {
			return nil, fail(CodeBadRequest, `note needs "note": the text, "" clears it`)
		}
		if n := len([]rune(*req.Note)); n > maxClusterNote {
			return nil, fail(CodeBadRequest, fmt.Sprintf("note is %d characters; at most %d", n, maxClusterNote))
		}
		note := *req.Note
		if shown := []rune(c.Note); len(shown) > discovery.NoteShown && note == string(shown[:discovery.NoteShown]) {
			// What Home Assistant showed of a longer note, saved back: the
			// note is kept whole, nothing is sent.
			return func(ctx context.Context, answer func(*Response)) {
				answer(&Response{Status: "ok", Data: map[string]any{"note": c.Note, "unchanged": true}})
			}, nil
		}
		return h.thenRefresh(c.ClusterID, func(ctx context.Context) (any, error) {
			cl, err := h.manager.SetClusterNote(ctx, c.ClusterID, note)
			if err != nil {
				return nil, err
			}
			got := ""
			if cl.Note != nil {
				got = cl.Note.Note
			}
			return map[string]any{"note": got}, nil
		}), nil
	case "job_note":
		if req.Job == "" || req.Note == nil {
			return nil, fail(CodeBadRequest, `job_note needs "job" (a print job uuid) and "note"`)
		}
		if n := len([]rune(*req.Note)); n > maxJobNote {
			return nil, fail(CodeBadRequest, fmt.Sprintf("a job note is %d characters; at most %d", n, maxJobNote))
		}
		if !knowsJob(c, req.Job) && !h.printsJob(c, req.Job) {
			return nil, fail(CodeNotFound, fmt.Sprintf("job %s is not queued, printing or recently completed in this cluster", req.Job))
		}
		note, job := *req.Note, req.Job
		return h.thenRefresh(c.ClusterID, func(ctx context.Context) (any, error) {
			d, err := h.manager.SetJobNote(ctx, c.ClusterID, job, note)
			if err != nil {
				return nil, err
			}
			return map[string]any{"job": job, "note": d.Note}, nil
		}), nil
	case "share":
		s, resp := sharing(req)
		if resp != nil {
			return nil, resp
		}
		return h.thenRefresh(c.ClusterID, func(ctx context.Context) (any, error) {
			cl, err := h.manager.ShareCluster(ctx, c.ClusterID, s)
			if err != nil {
				return nil, err
			}
			return map[string]any{"organization_shared": cl.OrganizationShared, "team_ids": nonNilStrings(cl.TeamIDs)}, nil
		}), nil
	default: // delete
		if req.Confirm == "" {
			return nil, fail(CodeBadRequest, `delete needs "confirm": the cluster's topic id or cloud id`)
		}
		if req.Confirm != c.ID && req.Confirm != c.ClusterID {
			return nil, fail(CodeBadRequest, fmt.Sprintf("confirm %q does not name this cluster (%s or %s)", truncate(req.Confirm, 60), c.ID, c.ClusterID))
		}
		return func(ctx context.Context, answer func(*Response)) {
			if err := h.manager.DeleteCluster(ctx, c.ClusterID); err != nil {
				answer(cloudFailure(err, h.now()))
				return
			}
			// The cluster list drops it: its topics and devices are cleared.
			h.refresh.RefreshWorkspace()
			answer(&Response{Status: "ok", Data: map[string]any{"cluster_id": c.ClusterID, "deleted": true}})
		}, nil
	}
}

// planPrinterAction plans rename and import_material: printer actions the
// cloud carries out asynchronously.
func (h *Handler) planPrinterAction(p state.Printer, req Request) (work, *Response) {
	if p.UUID == "" {
		return nil, fail(CodeConflict, "this printer reports no GUID (MakerBot); the cloud cannot address it")
	}
	body := &connect.PrinterActionBody{}
	switch req.Action {
	case "rename":
		if n := len([]rune(strings.TrimSpace(req.Name))); n < 3 || n > 64 {
			return nil, fail(CodeBadRequest, `rename needs "name": 3 to 64 characters`)
		}
		body.Name = strings.TrimSpace(req.Name)
	default: // import_material
		if !cloudIDRe.MatchString(req.MaterialProfileID) {
			return nil, fail(CodeBadRequest, `import_material needs "material_profile_id": the 44-character id upload_material answers`)
		}
		body.MaterialProfileID = req.MaterialProfileID
	}
	return func(ctx context.Context, answer func(*Response)) {
		st, err := h.cloud.PrinterAction(ctx, p.ClusterID, p.UUID, req.Action, body)
		h.follow(ctx, p.ClusterID, st, err, answer, nil, func(final *connect.ActionStatus) any {
			return map[string]any{"action_id": final.ActionID}
		})
	}, nil
}

// planSettings plans the workspace settings command: read the settings,
// change what the command names, write them, show them at once.
func (h *Handler) planSettings(req Request) (work, *Response) {
	if req.RequirePrintApproval == nil && req.EnablePrintPrep == nil {
		return nil, fail(CodeBadRequest, `settings needs "require_print_approval" or "enable_print_prep" (true or false)`)
	}
	return func(ctx context.Context, answer func(*Response)) {
		cur, err := h.manager.Settings(ctx)
		if err != nil {
			answer(cloudFailure(err, h.now()))
			return
		}
		next := *cur
		if req.RequirePrintApproval != nil {
			next.RequirePrintApproval = *req.RequirePrintApproval
		}
		if req.EnablePrintPrep != nil {
			next.EnablePrintPrep = *req.EnablePrintPrep
		}
		got, err := h.manager.SetSettings(ctx, next)
		if err != nil {
			answer(cloudFailure(err, h.now()))
			return
		}
		h.refresh.RefreshWorkspace()
		answer(&Response{Status: "ok", Data: state.SettingsOf(*got)})
	}, nil
}

// planRequest plans the bridge requests of the management commands.
func (h *Handler) planRequest(req Request) (work, *Response) {
	clusterID, resp := h.optionalCluster(req.Cluster)
	if resp != nil {
		return nil, resp
	}
	query := func(f func(ctx context.Context) (any, error)) (work, *Response) {
		return func(ctx context.Context, answer func(*Response)) {
			data, err := f(ctx)
			if err != nil {
				answer(cloudFailure(err, h.now()))
				return
			}
			answer(&Response{Status: "ok", Data: data})
		}, nil
	}
	switch req.Action {
	case "upload_material":
		return h.planUpload(req)
	case "job":
		if clusterID == "" || req.Job == "" {
			return nil, fail(CodeBadRequest, `job needs "cluster" and "job" (a print job uuid)`)
		}
		return query(func(ctx context.Context) (any, error) { return h.manager.PrintJobRaw(ctx, clusterID, req.Job) })
	case "print_jobs":
		limit, resp := pageLimit(req)
		if resp != nil {
			return nil, resp
		}
		q := connect.PrintJobQuery{Page: max(req.Page, 1), Limit: limit}
		if clusterID != "" {
			q.ClusterIDs = []string{clusterID}
		}
		if req.Status != "" {
			if !slices.Contains(jobStates, req.Status) {
				return nil, fail(CodeBadRequest, fmt.Sprintf(`"status" is one of %s`, strings.Join(jobStates, ", ")))
			}
			q.States = []string{req.Status}
		}
		return query(func(ctx context.Context) (any, error) {
			jobs, page, err := h.manager.PrintJobs(ctx, q)
			return listAnswer(jobs, page), err
		})
	case "report":
		limit, resp := pageLimit(req)
		if resp != nil {
			return nil, resp
		}
		start, err1 := time.Parse(time.RFC3339, req.Start)
		end, err2 := time.Parse(time.RFC3339, req.End)
		if err1 != nil || err2 != nil || !start.Before(end) {
			return nil, fail(CodeBadRequest, `report needs "start" and "end": RFC 3339 times, start before end`)
		}
		q := connect.ReportQuery{Start: start, End: end, Page: max(req.Page, 1), Limit: limit}
		if clusterID != "" {
			q.ClusterIDs = []string{clusterID}
		}
		return query(func(ctx context.Context) (any, error) {
			rows, page, err := h.manager.Reports(ctx, q)
			return listAnswer(rows, page), err
		})
	case "filters":
		return query(func(ctx context.Context) (any, error) {
			fs, err := h.manager.Filters(ctx)
			return listAnswer(fs, connect.Page{}), err
		})
	case "register":
		return h.planRegister(req)
	case "share_all":
		s, resp := sharing(req)
		if resp != nil {
			return nil, resp
		}
		return func(ctx context.Context, answer func(*Response)) {
			raw, err := h.manager.ShareAll(ctx, s)
			if err != nil {
				answer(cloudFailure(err, h.now()))
				return
			}
			h.refresh.Refresh("")
			answer(&Response{Status: "ok", Data: map[string]any{"result": raw}})
		}, nil
	case "team_count":
		if len(req.TeamIDs) == 0 {
			return nil, fail(CodeBadRequest, `team_count needs "team_ids": a list of team ids`)
		}
		return query(func(ctx context.Context) (any, error) {
			counts, err := h.manager.TeamCount(ctx, req.TeamIDs)
			return map[string]any{"counts": counts}, err
		})
	case "cluster":
		if clusterID == "" {
			return nil, fail(CodeBadRequest, `cluster needs "cluster": a cluster id`)
		}
		return query(func(ctx context.Context) (any, error) { return h.manager.Cluster(ctx, clusterID) })
	case "makerbot_printers":
		return query(func(ctx context.Context) (any, error) {
			ps, err := h.manager.MakerBotPrinters(ctx)
			return listAnswer(ps, connect.Page{}), err
		})
	case "user_clusters":
		if req.User == "" {
			return nil, fail(CodeBadRequest, `user_clusters needs "user": a user id`)
		}
		return query(func(ctx context.Context) (any, error) {
			cs, err := h.manager.UserClusters(ctx, req.User)
			return listAnswer(cs, connect.Page{}), err
		})
	case "spec":
		return query(func(ctx context.Context) (any, error) {
			raw, err := h.manager.Spec(ctx, req.Version)
			if err != nil {
				return nil, err
			}
			if len(raw) > MaxAnswer-1024 {
				return map[string]any{"truncated": true, "size": len(raw)}, nil
			}
			return map[string]any{"spec": raw}, nil
		})
	case "api":
		return query(func(ctx context.Context) (any, error) {
			up, err := h.manager.Root(ctx)
			if err != nil {
				return nil, err
			}
			teapot, _ := h.manager.Teapot(ctx)
			return map[string]any{"ok": up.OK, "version": up.Version, "uptime": up.Uptime, "time": up.Time, "teapot": teapot}, nil
		})
	default: // delete_team
		if req.Team == "" || req.Confirm != req.Team {
			return nil, fail(CodeBadRequest, `delete_team needs "team" (a team id) and "confirm" repeating it`)
		}
		return query(func(ctx context.Context) (any, error) {
			return map[string]any{"team": req.Team, "deleted": true}, h.manager.DeleteTeam(ctx, req.Team)
		})
	}
}

// planRegister adds a printer to the workspace by the PIN on its screen,
// its connection id, or (MakerBot) its host GUID.
func (h *Handler) planRegister(req Request) (work, *Response) {
	given := 0
	for _, s := range []string{req.PIN, req.ConnectionID, req.MakerBotPrinterID} {
		if s != "" {
			given++
		}
	}
	switch {
	case given != 1:
		return nil, fail(CodeBadRequest, `register needs one of "pin", "connection_id" or "makerbot_printer_id"`)
	case req.PIN != "" && !pinRe.MatchString(req.PIN):
		return nil, fail(CodeBadRequest, `"pin" is the 6 characters (0-9, A-Z) on the printer's screen`)
	case req.PrinterBrand != "" && req.PIN == "":
		return nil, fail(CodeBadRequest, `"printer_brand" goes with "pin"`)
	case req.ConnectionID != "" && !cloudIDRe.MatchString(req.ConnectionID):
		return nil, fail(CodeBadRequest, `"connection_id" is a 44-character id`)
	case req.MakerBotPrinterID != "" && !hostGUIDRe.MatchString(req.MakerBotPrinterID):
		return nil, fail(CodeBadRequest, `"makerbot_printer_id" is the printer's host GUID (20 to 36 hex characters)`)
	}
	return func(ctx context.Context, answer func(*Response)) {
		var reg *connect.Registration
		var err error
		switch {
		case req.PIN != "":
			reg, err = h.manager.ConfirmRegistrationPIN(ctx, req.PIN, req.PrinterBrand)
		case req.ConnectionID != "":
			reg, err = h.manager.ConfirmRegistration(ctx, req.ConnectionID)
		default:
			reg, err = h.manager.RegisterMakerBot(ctx, req.MakerBotPrinterID)
		}
		if err != nil {
			answer(cloudFailure(err, h.now()))
			return
		}
		// The new printer appears within seconds, not at the next list.
		h.refresh.RefreshWorkspace()
		answer(&Response{Status: "ok", Data: map[string]any{"cluster_id": reg.ClusterID, "host_name": reg.HostName}})
	}, nil
}

// planUpload sends a material profile, from the request or from
// MATERIALS_DIR, and imports it on the printers named.
func (h *Handler) planUpload(req Request) (work, *Response) {
	if (req.Content == "") == (req.File == "") {
		return nil, fail(CodeBadRequest, `upload_material needs "content" (base64, with "name") or "file" (a file in MATERIALS_DIR)`)
	}
	var printers []state.Printer
	for _, id := range req.Printers {
		p, ok := h.st.Printer(id)
		if !ok {
			return nil, fail(CodeNotFound, fmt.Sprintf("no printer %q", id))
		}
		if p.UUID == "" {
			return nil, fail(CodeConflict, fmt.Sprintf("printer %s reports no GUID (MakerBot); the cloud cannot address it", id))
		}
		printers = append(printers, p)
	}
	name := req.Name
	var content []byte
	if req.Content != "" {
		if name == "" {
			return nil, fail(CodeBadRequest, `upload_material with "content" needs "name": the file name with its extension`)
		}
		var err error
		if content, err = base64.StdEncoding.DecodeString(req.Content); err != nil || len(content) == 0 {
			return nil, fail(CodeBadRequest, `"content" is not base64 (standard alphabet, padded)`)
		}
	} else {
		var resp *Response
		if content, resp = h.readMaterial(req.File); resp != nil {
			return nil, resp
		}
		if name == "" {
			name = filepath.Base(req.File)
		}
	}
	if n := len(name); n < 3 || n > 255 || !strings.Contains(name, ".") {
		return nil, fail(CodeBadRequest, `"name" is a file name with its extension, 3 to 255 characters`)
	}
	return func(ctx context.Context, answer func(*Response)) {
		mp, err := h.manager.UploadMaterial(ctx, name, materialType(name), content)
		if err != nil {
			answer(cloudFailure(err, h.now()))
			return
		}
		var imports []map[string]any
		for _, p := range printers {
			st, err := h.cloud.PrinterAction(ctx, p.ClusterID, p.UUID, "import_material",
				&connect.PrinterActionBody{MaterialProfileID: mp.MaterialProfileID})
			if err != nil {
				imports = append(imports, map[string]any{"printer": p.ID, "error": cloudFailure(err, h.now()).Error})
				continue
			}
			imports = append(imports, map[string]any{"printer": p.ID, "action_id": st.ActionID})
		}
		answer(&Response{Status: "ok", Data: map[string]any{"material_profile_id": mp.MaterialProfileID, "name": name,
			"imports": imports}})
	}, nil
}

// readMaterial reads a file below MATERIALS_DIR; os.Root refuses any
// path that leaves it (.., absolute paths, symbolic links out).
func (h *Handler) readMaterial(name string) ([]byte, *Response) {
	if h.cfg.MaterialsDir == "" {
		return nil, fail(CodeBadRequest, `"file" needs MATERIALS_DIR set on the bridge; send "content" instead`)
	}
	root, err := os.OpenRoot(h.cfg.MaterialsDir)
	if err != nil {
		return nil, fail(CodeNotFound, "MATERIALS_DIR cannot be read")
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return nil, fail(CodeNotFound, fmt.Sprintf("no file %q in MATERIALS_DIR", truncate(name, 80)))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMaterial+1))
	if err != nil || len(b) == 0 || len(b) > maxMaterial {
		return nil, fail(CodeBadRequest, fmt.Sprintf("%q is empty, unreadable or larger than %d bytes", truncate(name, 80), maxMaterial))
	}
	return b, nil
}

// materialType is the content type announced for a material file: Cura
// sends application/zip for its .umm packages; a single profile is XML
// (INFERRED: the accepted values are not published).
func materialType(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".umm", ".zip":
		return "application/zip"
	}
	return "application/xml"
}

// thenRefresh is the work of a command that changes a cluster: call,
// answer with what the cloud says, and poll the cluster now.
func (h *Handler) thenRefresh(clusterID string, call func(ctx context.Context) (any, error)) work {
	return func(ctx context.Context, answer func(*Response)) {
		data, err := call(ctx)
		if err != nil {
			answer(cloudFailure(err, h.now()))
			return
		}
		h.refresh.Refresh(clusterID)
		answer(&Response{Status: "ok", Data: data})
	}
}

func sharing(req Request) (connect.Sharing, *Response) {
	if req.OrganizationShared == nil && req.TeamIDs == nil {
		return connect.Sharing{}, fail(CodeBadRequest, `needs "organization_shared" (true or false) or "team_ids"`)
	}
	s := connect.Sharing{TeamIDs: req.TeamIDs}
	if req.OrganizationShared != nil {
		s.OrganizationShared = *req.OrganizationShared
	}
	if s.OrganizationShared && len(s.TeamIDs) > 0 {
		return s, fail(CodeBadRequest, "share with the whole organization or with teams, not both")
	}
	return s, nil
}

func pageLimit(req Request) (int, *Response) {
	if req.Page < 0 || req.Limit < 0 || req.Limit > maxListLimit {
		return 0, fail(CodeBadRequest, fmt.Sprintf(`"page" is 1 or more, "limit" 1 to %d`, maxListLimit))
	}
	if req.Limit == 0 {
		return 20, nil
	}
	return req.Limit, nil
}

// listAnswer is a list answer: the items, the paging, and whether the
// items were cut to keep the answer within MaxAnswer.
func listAnswer[T any](items []T, page connect.Page) map[string]any {
	out, cut := fit(items, MaxAnswer-4096)
	return map[string]any{"items": out, "page": page.Number, "total_pages": page.TotalPages,
		"total_count": page.TotalCount, "truncated": cut}
}

// fit keeps the leading items whose JSON fits in budget bytes.
func fit[T any](items []T, budget int) ([]json.RawMessage, bool) {
	out := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			continue
		}
		if budget -= len(b) + 1; budget < 0 {
			return out, true
		}
		out = append(out, b)
	}
	return out, false
}

// knowsJob reports whether c's state shows the job queued or recently
// completed.
func knowsJob(c state.Cluster, job string) bool {
	return slices.ContainsFunc(c.Queue, func(j state.QueuedJob) bool { return j.UUID == job }) ||
		slices.ContainsFunc(c.RecentlyCompleted, func(j state.CompletedJob) bool { return j.UUID == job })
}

// printsJob reports whether a printer of c prints the job now.
func (h *Handler) printsJob(c state.Cluster, job string) bool {
	for _, id := range c.Printers {
		if p, ok := h.st.Printer(id); ok && p.Job != nil && p.Job.UUID == job {
			return true
		}
	}
	return false
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
