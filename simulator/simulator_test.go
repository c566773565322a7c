package simulator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testclock"
)

func start(t *testing.T, opts Options) (*Server, *httptest.Server, *connect.Client, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Tokens == nil {
		opts.Tokens = []string{"tok"}
	}
	sim := New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c, err := connect.New(connect.Options{BaseURL: srv.URL + BasePath, Timeout: 2 * time.Second,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
	if err != nil {
		t.Fatal(err)
	}
	return sim, srv, c, clk
}

func get(t *testing.T, url, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("GET %s: body is not JSON: %q", url, b)
	}
	return resp.StatusCode, body
}

var cloudIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]*={0,3}$`)
var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestScriptedWorld(t *testing.T) {
	_, _, c, _ := start(t, Options{})
	ctx := context.Background()
	clusters, err := c.Clusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(clusters) < 4 {
		t.Fatalf("%d clusters, want the scripted four", len(clusters))
	}
	var sawMulti, sawOffline, sawMakerBot, sawTwoExtruderS5, sawS3 bool
	for _, cl := range clusters {
		if len(cl.ClusterID) != 44 || !cloudIDRe.MatchString(cl.ClusterID) {
			t.Errorf("cluster id %q is not a 44-character cloud id", cl.ClusterID)
		}
		st, err := c.ClusterStatus(ctx, cl.ClusterID)
		if err != nil {
			t.Fatal(err)
		}
		if int(cl.PrinterCount) != len(st.Printers) {
			t.Errorf("%s: printer_count %v, status has %d", cl.FriendlyName, cl.PrinterCount, len(st.Printers))
		}
		sawMulti = sawMulti || len(st.Printers) > 1
		sawOffline = sawOffline || (!cl.IsOnline && st.IsOnline != nil && !*st.IsOnline)
		for _, p := range st.Printers {
			switch {
			case strings.HasPrefix(p.MachineVariant, "MakerBot"):
				sawMakerBot = sawMakerBot || p.UUID == ""
			case p.UUID != "" && !uuidRe.MatchString(p.UUID):
				t.Errorf("printer uuid %q", p.UUID)
			}
			sawTwoExtruderS5 = sawTwoExtruderS5 || (p.MachineVariant == "Ultimaker S5" && len(p.Configuration) == 2)
			sawS3 = sawS3 || p.MachineVariant == "Ultimaker S3"
			if !cl.IsOnline && p.Status != "unreachable" {
				t.Errorf("printer %s of offline cluster is %q", p.FriendlyName, p.Status)
			}
		}
		for _, j := range st.PrintJobs {
			if !uuidRe.MatchString(j.UUID) || len(j.CloudJobID) != 44 {
				t.Errorf("job ids %q %q", j.UUID, j.CloudJobID)
			}
		}
	}
	for name, ok := range map[string]bool{"multi-printer cluster": sawMulti, "offline cluster": sawOffline,
		"MakerBot with empty GUID": sawMakerBot, "S5 with two extruders": sawTwoExtruderS5, "S3": sawS3} {
		if !ok {
			t.Errorf("world lacks a %s", name)
		}
	}
	mb, err := c.MakerBotPrinters(ctx)
	if err != nil || len(mb) != 1 || len(mb[0].HostGUID) != 20 {
		t.Errorf("makerbot printers = %+v, %v", mb, err)
	}
}

func TestEnvelopesErrorsAndAliases(t *testing.T) {
	sim, srv, _, _ := start(t, Options{})
	id := sim.ClusterIDs()[0]
	base := srv.URL + BasePath

	status, body := get(t, base+"/clusters", "")
	checkError(t, status, body, 401, "noBearerToken")

	sim.ExpireToken("tok")
	status, body = get(t, base+"/clusters", "tok")
	checkError(t, status, body, 403, "tokenExpired")

	status, body = get(t, base+"/clusters", "someone-else")
	checkError(t, status, body, 401, "invalidBearerToken")

	sim2, srv2, _, _ := start(t, Options{})
	base = srv2.URL + BasePath
	for _, p := range []string{"/clusters/" + id, "/cluster/" + id, "/clusters/" + id + "/status", "/cluster/" + id + "/status",
		"/clusters/" + id + "/maintenance/pending", "/cluster/" + id + "/maintenance/pending"} {
		status, body := get(t, base+p, "tok")
		if status != 200 || body["data"] == nil {
			t.Errorf("GET %s = %d %v", p, status, body)
		}
	}
	status, body = get(t, base+"/clusters/"+strings.Repeat("A", 43)+"=/status", "tok")
	checkError(t, status, body, 404, "recordNotFound")
	_ = sim2

	status, body = get(t, base+"/clusters?page=1&limit=3", "tok")
	meta, _ := body["meta"].(map[string]any)
	links, _ := body["links"].(map[string]any)
	page, _ := meta["page"].(map[string]any)
	if status != 200 || len(body["data"].([]any)) != 3 || page["total_pages"] != 2.0 || !strings.Contains(links["next"].(string), "page=2") {
		t.Errorf("page 1 of 2: %d meta %v links %v", status, meta, links)
	}
}

func checkError(t *testing.T, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	errs, _ := body["errors"].([]any)
	if status != wantStatus || len(errs) != 1 {
		t.Fatalf("status %d body %v, want %d with one error", status, body, wantStatus)
	}
	e := errs[0].(map[string]any)
	if e["code"] != wantCode || e["http_status"] != strconv.Itoa(wantStatus) || e["id"] == "" || e["title"] == "" {
		t.Errorf("error object %v, want code %s and http_status %q as a string", e, wantCode, strconv.Itoa(wantStatus))
	}
}

// A print runs queued → pre_print → printing → post_print → wait_cleanup
// → finished on the simulated clock.
func TestJobLifecycle(t *testing.T) {
	sim, _, c, clk := start(t, Options{Seed: 3})
	ctx := context.Background()
	farm := sim.ClusterIDs()[1]
	seen := map[string]bool{}
	var history int
	for range 1500 {
		clk.Add(40 * time.Second)
		st, err := c.ClusterStatus(ctx, farm)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range st.PrintJobs {
			seen[j.Status] = true
			if j.TimeElapsed > j.TimeTotal || j.TimeRemaining < 0 {
				t.Fatalf("job times: elapsed %v total %v remaining %v", j.TimeElapsed, j.TimeTotal, j.TimeRemaining)
			}
		}
		for _, j := range st.RecentlyCompleted {
			seen["history:"+j.Status] = true
			if j.State != "history" {
				t.Errorf("completed job state %q", j.State)
			}
		}
		history = len(st.RecentlyCompleted)
	}
	for _, s := range []string{"queued", "pre_print", "printing", "post_print", "wait_cleanup", "paused", "history:finished"} {
		if !seen[s] {
			t.Errorf("never saw %s in %v", s, seen)
		}
	}
	if history > 10 {
		t.Errorf("recently_completed holds %d, the API keeps at most 10", history)
	}
}

func TestActionsAndStatusLifecycle(t *testing.T) {
	sim, _, c, _ := start(t, Options{})
	ctx := context.Background()
	lab := sim.ClusterIDs()[0]
	st, _ := c.ClusterStatus(ctx, lab)
	var job connect.PrintJob
	for _, j := range st.PrintJobs {
		if j.Status == "printing" {
			job = j
		}
	}
	if job.UUID == "" {
		t.Fatal("scripted Lab-S5-1 is not printing at start")
	}
	a, err := c.PrintJobAction(ctx, lab, job.UUID, "pause", nil)
	if err != nil || a.Status != "pending" || !uuidRe.MatchString(a.ActionID) {
		t.Fatalf("pause = %+v, %v", a, err)
	}
	var steps []string
	for range 4 {
		s, err := c.ActionStatus(ctx, lab, a.ActionID)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, s.Status)
	}
	if strings.Join(steps, ",") != "pending,sent,success,success" {
		t.Errorf("action lifecycle %v", steps)
	}
	st, _ = c.ClusterStatus(ctx, lab)
	if got := st.PrintJobs[0].Status; got != "pausing" {
		t.Errorf("after pause the job is %q", got)
	}
	// Pausing twice is refused by the cloud.
	if _, err := c.PrintJobAction(ctx, lab, job.UUID, "pause", nil); connect.KindOf(err) != connect.KindConflict {
		t.Errorf("second pause: %v, want conflict", err)
	}
	if _, err := c.PrintJobAction(ctx, lab, "00000000-0000-4000-8000-000000000000", "pause", nil); connect.KindOf(err) != connect.KindNotFound {
		t.Errorf("unknown job: %v, want not found", err)
	}

	// A webcam snapshot ends with an image URL that serves a JPEG.
	p := st.Printers[0]
	a, err = c.PrinterAction(ctx, lab, p.UUID, "get_webcam_snapshot", nil)
	if err != nil {
		t.Fatal(err)
	}
	var final *connect.ActionStatus
	for range 5 {
		if final, err = c.ActionStatus(ctx, lab, a.ActionID); err != nil || final.Settled() {
			break
		}
	}
	resp, err := http.Get(final.ImageURL())
	if err != nil || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("snapshot %q: %v", final.ImageURL(), err)
	}
	resp.Body.Close()

	// Told to fail, an action ends failed.
	sim.AddFault(Fault{Kind: FaultFailAction, Count: 1})
	a, _ = c.PrinterAction(ctx, lab, p.UUID, "get_webcam_snapshot", nil)
	for range 4 {
		final, _ = c.ActionStatus(ctx, lab, a.ActionID)
	}
	if final.Status != "failed" {
		t.Errorf("failed action ends %q", final.Status)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		fault Fault
		kind  connect.Kind
	}{
		{Fault{Kind: FaultServerError, Count: 1}, connect.KindServer},
		{Fault{Kind: FaultUnavailable, Count: 1}, connect.KindServer},
		{Fault{Kind: FaultRateLimit, Count: 1, RetryAfter: 42 * time.Second}, connect.KindRateLimited},
		{Fault{Kind: FaultMalformed, Count: 1}, connect.KindBadBody},
		{Fault{Kind: FaultNonJSON, Count: 1}, connect.KindBadBody},
		{Fault{Kind: FaultWrongShape, Count: 1}, connect.KindBadBody},
		{Fault{Kind: FaultHang, Count: 1}, connect.KindNetwork},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault.Kind), func(t *testing.T) {
			sim, srv, c, _ := start(t, Options{})
			id := sim.ClusterIDs()[0]
			sim.AddFault(tt.fault)
			_, err := c.ClusterStatus(context.Background(), id)
			if connect.KindOf(err) != tt.kind {
				t.Fatalf("err = %v, want %s", err, tt.kind)
			}
			if tt.fault.Kind == FaultRateLimit {
				var ae *connect.APIError
				if !asAPIError(err, &ae) || ae.RetryAfter != 42*time.Second {
					t.Errorf("Retry-After lost: %v", err)
				}
			}
			// Asked over plain HTTP: after a 429 the client itself holds
			// back every request until Retry-After.
			if code, _ := get(t, srv.URL+BasePath+"/clusters/"+id+"/status", "tok"); code != http.StatusOK {
				t.Errorf("fault with count 1 hit twice: %d", code)
			}
		})
	}
}

func asAPIError(err error, ae **connect.APIError) bool {
	e, ok := err.(*connect.APIError)
	*ae = e
	return ok
}

func TestFaultOnlyMatchingPath(t *testing.T) {
	sim, _, c, _ := start(t, Options{})
	ids := sim.ClusterIDs()
	sim.AddFault(Fault{Kind: FaultServerError, PathContains: ids[1]})
	if _, err := c.ClusterStatus(context.Background(), ids[0]); err != nil {
		t.Errorf("other cluster failed: %v", err)
	}
	for range 3 {
		if _, err := c.ClusterStatus(context.Background(), ids[1]); connect.KindOf(err) != connect.KindServer {
			t.Errorf("faulted cluster: %v", err)
		}
	}
	sim.ClearFaults()
	if _, err := c.ClusterStatus(context.Background(), ids[1]); err != nil {
		t.Errorf("after ClearFaults: %v", err)
	}
}

func TestExtraPrinters(t *testing.T) {
	_, _, c, _ := start(t, Options{ExtraPrinters: 250, OnlyExtra: true})
	cl, err := c.Clusters(context.Background())
	if err != nil || len(cl) != 250 {
		t.Fatalf("%d clusters, %v", len(cl), err)
	}
}

func TestClusterGoesOffline(t *testing.T) {
	sim, _, c, _ := start(t, Options{})
	id := sim.ClusterIDs()[0]
	if !sim.SetClusterOnline(id, false) {
		t.Fatal("unknown cluster")
	}
	st, err := c.ClusterStatus(context.Background(), id)
	if err != nil || st.IsOnline == nil || *st.IsOnline || st.Printers[0].Status != "unreachable" {
		t.Fatalf("offline cluster: %+v %v", st, err)
	}
	sim.SetClusterOnline(id, true)
	if st, _ := c.ClusterStatus(context.Background(), id); st.Printers[0].Status == "unreachable" {
		t.Error("back online but printers unreachable")
	}
}

// TestSimulatorPromises: a pause a user sent is never resumed by the
// simulator; actions on an offline cluster change nothing; /spec and
// /teapot need no token; at a speed above 1 durations are reported on the
// wall clock (issue 9.15, 9.16).
func TestSimulatorPromises(t *testing.T) {
	t.Run("UserPauseStays", func(t *testing.T) {
		sim, _, c, clk := start(t, Options{Calm: true})
		ctx := context.Background()
		lab := sim.ClusterIDs()[0]
		st, _ := c.ClusterStatus(ctx, lab)
		job := st.PrintJobs[0]
		if _, err := c.PrintJobAction(ctx, lab, job.UUID, "pause", nil); err != nil {
			t.Fatal(err)
		}
		for range 60 {
			clk.Add(time.Minute)
			st, _ = c.ClusterStatus(ctx, lab)
		}
		if got := st.PrintJobs[0].Status; got != "paused" {
			t.Fatalf("an hour after a user's pause the job is %s, want paused", got)
		}
		if _, err := c.PrintJobAction(ctx, lab, job.UUID, "print", nil); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
		if st, _ = c.ClusterStatus(ctx, lab); st.PrintJobs[0].Status != "printing" {
			t.Errorf("after resume the job is %s", st.PrintJobs[0].Status)
		}
	})
	t.Run("OfflineChangesNothing", func(t *testing.T) {
		sim, _, c, _ := start(t, Options{})
		ctx := context.Background()
		old := sim.ClusterIDs()[3] // the offline Ultimaker 3
		st, _ := c.ClusterStatus(ctx, old)
		p := st.Printers[0]
		name := "Renamed"
		_, err := c.PrinterAction(ctx, old, p.UUID, "rename", &connect.PrinterActionBody{Name: name})
		if connect.KindOf(err) != connect.KindConflict {
			t.Fatalf("rename of an offline printer: %v", err)
		}
		st, _ = c.ClusterStatus(ctx, old)
		if st.Printers[0].FriendlyName == name {
			t.Errorf("an offline printer was renamed")
		}
	})
	t.Run("NoTokenNeeded", func(t *testing.T) {
		_, srv, _, _ := start(t, Options{})
		if code, body := get(t, srv.URL+BasePath+"/spec", ""); code != http.StatusOK || body["swagger"] != "2.0" {
			t.Errorf("/spec: %d %v", code, body)
		}
		if code, _ := get(t, srv.URL+BasePath+"/teapot", ""); code != http.StatusTeapot {
			t.Errorf("/teapot: %d", code)
		}
	})
	t.Run("WallClockDurations", func(t *testing.T) {
		sim, _, c, clk := start(t, Options{Speed: 30, Calm: true})
		ctx := context.Background()
		lab := sim.ClusterIDs()[0]
		st, _ := c.ClusterStatus(ctx, lab)
		j0 := st.PrintJobs[0]
		clk.Add(10 * time.Second) // 300 simulated seconds
		st, _ = c.ClusterStatus(ctx, lab)
		j1 := st.PrintJobs[0]
		if d := j1.TimeElapsed - j0.TimeElapsed; d < 9 || d > 11 {
			t.Errorf("elapsed grew %v s in 10 wall seconds at 30x, want about 10", d)
		}
		if j1.TimeTotal > 4*60*60/30+1 {
			t.Errorf("total %v s is not on the wall clock", j1.TimeTotal)
		}
	})
}
