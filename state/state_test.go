package state

import (
	"encoding/json"
	"hash/maphash"
	"slices"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

var t0 = time.Date(2026, 5, 2, 9, 0, 0, 0, time.UTC)

func TestKeys(t *testing.T) {
	cl := connect.Cluster{ClusterID: "Qm9v+dGlm/dWw=", HostName: "UltimakerSystem-CCBDD30044EC"}
	tests := []struct {
		name    string
		p       connect.Printer
		i, n    int
		want    string
		cluster connect.Cluster
	}{
		{"UniqueName", connect.Printer{UniqueName: "ultimakersystem-ccbdd30044ec", UUID: "u"}, 0, 1, "ultimakersystem-ccbdd30044ec", cl},
		{"UniqueNameSanitised", connect.Printer{UniqueName: "Lab Printer #1/ü"}, 0, 1, "lab_printer__1__", cl},
		{"UUIDFallback", connect.Printer{UUID: "4B0FC38E-95e3"}, 0, 2, "4b0fc38e-95e3", cl},
		{"MakerBotSingle", connect.Printer{}, 0, 1, "ultimakersystem-ccbdd30044ec", cl},
		{"MakerBotInGroup", connect.Printer{}, 1, 3, "ultimakersystem-ccbdd30044ec-2", cl},
		{"NoHostName", connect.Printer{}, 0, 1, "qm9v_dglm_dww_", connect.Cluster{ClusterID: "Qm9v+dGlm/dWw="}},
		{"NothingAtAll", connect.Printer{}, 0, 1, "cluster", connect.Cluster{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PrinterKey(tt.p, tt.cluster, tt.i, tt.n); got != tt.want {
				t.Errorf("PrinterKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func s5(status string, job *connect.PrintJob) (connect.Printer, []connect.PrintJob) {
	p := connect.Printer{UUID: "p-uuid", UniqueName: "ultimakersystem-aa", FriendlyName: "Lab", MachineVariant: "Ultimaker S5",
		Status: status, Enabled: true, FirmwareVersion: "8.2.0", LatestAvailableFirmware: "8.2.0", FirmwareUpdateStatus: "up_to_date"}
	if job == nil {
		return p, nil
	}
	return p, []connect.PrintJob{*job}
}

func job(status string, elapsed, total float64) *connect.PrintJob {
	return &connect.PrintJob{UUID: "j1", Name: "bracket", Status: status, PrinterUUID: "p-uuid", TimeElapsed: elapsed,
		TimeTotal: total, TimeRemaining: total - elapsed, Started: true}
}

func observe(online bool, p connect.Printer, jobs []connect.PrintJob, recent []connect.PrintJob, at time.Time) Observation {
	return Observation{
		Cluster: connect.Cluster{ClusterID: "c1", HostName: "ultimakersystem-aa", FriendlyName: "Lab", IsOnline: online},
		Status:  &connect.ClusterStatus{IsOnline: &online, Printers: []connect.Printer{p}, PrintJobs: jobs, RecentlyCompleted: recent},
		Now:     at,
	}
}

func TestBuildPrinter(t *testing.T) {
	p, jobs := s5("printing", job("printing", 3000, 12000))
	vol, orig := 75000.0, 300000.0
	p.Configuration = []connect.PrintCoreConfiguration{{ExtruderIndex: 0, PrintCoreID: "AA 0.4", EstimatedMaterialVolume: &vol, OriginalMaterialVolume: &orig,
		Material: &connect.Material{Material: "PLA", Brand: "Generic", Color: "White"}}}
	v := Build(observe(true, p, jobs, nil, t0), nil)
	if len(v.Printers) != 1 {
		t.Fatal(v.Printers)
	}
	got := v.Printers[0]
	if got.Status != "printing" || !got.Online || !got.Printing || got.Job == nil {
		t.Fatalf("printer = %+v", got)
	}
	j := got.Job
	if j.Progress != 25 || j.TimeElapsed != 3000 || j.TimeRemaining != 9000 || j.TimeTotal != 12000 {
		t.Errorf("job numbers %+v", j)
	}
	if !j.ETA.Equal(t0.Add(9000*time.Second)) || !j.StartedAt.Equal(t0.Add(-3000*time.Second)) {
		t.Errorf("eta %v started %v", j.ETA, j.StartedAt)
	}
	if e := got.Extruders[0]; e.MaterialRemaining == nil || *e.MaterialRemaining != 25 || e.Material != "PLA" {
		t.Errorf("extruder %+v", e)
	}
	// The published JSON carries the contract's fields.
	b, _ := json.Marshal(got)
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"status", "friendly_name", "machine_variant", "online", "updated_at", "job"} {
		if _, ok := m[k]; !ok {
			t.Errorf("state JSON lacks %s: %s", k, b)
		}
	}
	jm := m["job"].(map[string]any)
	for _, k := range []string{"uuid", "name", "status", "progress", "time_elapsed", "time_total", "time_remaining", "eta"} {
		if _, ok := jm[k]; !ok {
			t.Errorf("job JSON lacks %s", k)
		}
	}
	if _, err := time.Parse(time.RFC3339, jm["eta"].(string)); err != nil {
		t.Errorf("eta %v: %v", jm["eta"], err)
	}
}

func TestStatusMerge(t *testing.T) {
	tests := []struct {
		name    string
		online  bool
		printer string
		enabled bool
		job     *connect.PrintJob
		want    string
	}{
		{"Idle", true, "idle", true, nil, "idle"},
		{"JobWins", true, "printing", true, job("paused", 10, 100), "paused"},
		{"ErrorWins", true, "error", true, job("printing", 10, 100), "error"},
		{"Offline", false, "idle", true, nil, "offline"},
		{"Unreachable", true, "unreachable", true, nil, "offline"},
		{"Disabled", true, "idle", false, nil, "disabled"},
		{"UnknownPassesThrough", true, "calibrating_lasers", true, nil, "calibrating_lasers"},
		{"Empty", true, "", true, nil, "unknown"},
		{"QueuedJobIsNotOnPrinter", true, "idle", true, job("queued", 0, 100), "idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, jobs := s5(tt.printer, tt.job)
			p.Enabled = tt.enabled
			v := Build(observe(tt.online, p, jobs, nil, t0), nil)
			if got := v.Printers[0].Status; got != tt.want {
				t.Errorf("status = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHeldValues(t *testing.T) {
	p, jobs := s5("printing", job("printing", 3000, 12000))
	v1 := Build(observe(true, p, jobs, nil, t0), nil)
	// 30 s later the estimate moved by 40 s: ETA holds, start holds.
	jobs[0].TimeElapsed, jobs[0].TimeRemaining = 3030, 9010
	v2 := Build(observe(true, p, jobs, nil, t0.Add(30*time.Second)), &v1)
	if !v2.Printers[0].Job.ETA.Equal(*v1.Printers[0].Job.ETA) {
		t.Errorf("ETA moved on jitter: %v -> %v", v1.Printers[0].Job.ETA, v2.Printers[0].Job.ETA)
	}
	if !v2.Printers[0].Job.StartedAt.Equal(*v1.Printers[0].Job.StartedAt) {
		t.Errorf("start moved")
	}
	// A 10-minute slip is news.
	jobs[0].TimeRemaining = 9600
	v3 := Build(observe(true, p, jobs, nil, t0.Add(60*time.Second)), &v2)
	if v3.Printers[0].Job.ETA.Equal(*v1.Printers[0].Job.ETA) {
		t.Errorf("ETA held across a 10-minute slip")
	}
	// Unchanged content keeps updated_at; changed content moves it.
	v4 := Build(observe(true, p, jobs, nil, t0.Add(90*time.Second)), &v3)
	if !v4.Printers[0].UpdatedAt.Equal(v3.Printers[0].UpdatedAt) || !v4.Cluster.UpdatedAt.Equal(v1.Cluster.UpdatedAt) {
		t.Errorf("updated_at moved without a change: %v %v", v3.Printers[0].UpdatedAt, v4.Printers[0].UpdatedAt)
	}
	if v3.Printers[0].UpdatedAt.Equal(v1.Printers[0].UpdatedAt) {
		t.Errorf("updated_at did not move with the change")
	}
}

func TestMaintenanceCarriesOver(t *testing.T) {
	p, _ := s5("idle", nil)
	obs := observe(true, p, nil, nil, t0)
	obs.Maintenance = []connect.MaintenanceTask{{IsDue: true, TaskRule: connect.TaskRule{Code: "um3_clean_printer"}}, {TaskRule: connect.TaskRule{Code: "lube"}}}
	v1 := Build(obs, nil)
	if !v1.Printers[0].Maintenance.Required || !slices.Equal(v1.Printers[0].Maintenance.TasksDue, []string{"um3_clean_printer"}) || !v1.Cluster.MaintenanceDue {
		t.Fatalf("maintenance %+v %+v", v1.Printers[0].Maintenance, v1.Cluster)
	}
	v2 := Build(observe(true, p, nil, nil, t0.Add(time.Minute)), &v1)
	if len(v2.Cluster.Maintenance) != 2 || !v2.Printers[0].Maintenance.Required {
		t.Errorf("maintenance not carried over: %+v", v2.Cluster.Maintenance)
	}
}

func TestOfflineClusterFromListOnly(t *testing.T) {
	p, _ := s5("unreachable", nil)
	v := Build(Observation{Cluster: connect.Cluster{ClusterID: "c", HostName: "h", IsOnline: false, HostPrinter: &p}, Now: t0}, nil)
	if len(v.Printers) != 1 || v.Printers[0].Online || v.Printers[0].Status != "offline" {
		t.Fatalf("%+v", v.Printers)
	}
}

func TestNonsenseNumbers(t *testing.T) {
	j := job("printing", -50, 0)
	j.TimeRemaining = -1e300
	p, jobs := s5("printing", j)
	v := Build(observe(true, p, jobs, nil, t0), nil)
	got := v.Printers[0].Job
	if got.Progress != 0 || got.TimeElapsed != 0 || got.TimeRemaining != 0 || got.TimeTotal != 0 {
		t.Errorf("%+v", got)
	}
}

// step builds the next view from a new printer status and job.
type step struct {
	online bool
	status string
	job    *connect.PrintJob
	recent []connect.PrintJob
	maint  bool
	fw     string
}

func TestEvents(t *testing.T) {
	printing := step{online: true, status: "printing", job: job("printing", 100, 1000)}
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{"FirstSightIsQuiet", []step{printing}, nil},
		{"Started", []step{{online: true, status: "idle"}, {online: true, status: "pre_print", job: job("pre_print", 0, 1000)}}, []string{PrintStarted}},
		{"PauseResume", []step{printing, {online: true, status: "printing", job: job("pausing", 100, 1000)},
			{online: true, status: "printing", job: job("paused", 100, 1000)}, {online: true, status: "printing", job: job("resuming", 100, 1000)},
			{online: true, status: "printing", job: job("printing", 110, 1000)}},
			[]string{PrintPaused, PrintResumed}},
		{"PausedSeenDirectly", []step{printing, {online: true, status: "printing", job: job("paused", 100, 1000)}, printing},
			[]string{PrintPaused, PrintResumed}},
		{"Finished", []step{printing, {online: true, status: "printing", job: job("post_print", 1000, 1000)},
			{online: true, status: "printing", job: job("wait_cleanup", 1000, 1000)}, {online: true, status: "idle"}}, []string{PrintFinished}},
		{"AbortedViaAborting", []step{printing, {online: true, status: "printing", job: job("aborting", 100, 1000)},
			{online: true, status: "printing", job: job("wait_cleanup", 100, 1000)}}, []string{PrintAborted}},
		{"AbortedSeenAsShortCleanup", []step{printing, {online: true, status: "printing", job: job("wait_cleanup", 400, 1000)}}, []string{PrintAborted}},
		{"FinishedBetweenPolls", []step{printing, {online: true, status: "idle", recent: []connect.PrintJob{*job("finished", 1000, 1000)}}}, []string{PrintFinished}},
		{"AbortedBetweenPolls", []step{printing, {online: true, status: "idle", recent: []connect.PrintJob{*job("aborted", 300, 1000)}}}, []string{PrintAborted}},
		{"Failed", []step{printing, {online: true, status: "printing", job: job("failed", 300, 1000)}}, []string{PrintFailed}},
		{"UserAction", []step{printing, {online: true, status: "printing", job: job("wait_user_action", 300, 1000)}}, []string{UserActionRequired}},
		{"OfflineOnline", []step{{online: true, status: "idle"}, {online: false, status: "idle"}, {online: true, status: "idle"}}, []string{PrinterOffline, PrinterOnline}},
		{"PrinterError", []step{{online: true, status: "idle"}, {online: true, status: "error"}}, []string{PrinterError}},
		{"MaintenanceDue", []step{{online: true, status: "idle"}, {online: true, status: "idle", maint: true}, {online: true, status: "idle", maint: true}}, []string{MaintenanceDue}},
		{"Firmware", []step{{online: true, status: "idle"}, {online: true, status: "idle", fw: "update_available"}}, []string{FirmwareUpdateAvailable}},
		{"SteadyPrintingIsQuiet", []step{printing, printing, printing}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prev *View
			var got []string
			for i, s := range tt.steps {
				p, jobs := s5(s.status, s.job)
				p.MaintenanceRequired = s.maint
				if s.fw != "" {
					p.FirmwareUpdateStatus, p.LatestAvailableFirmware = s.fw, "9.0.0"
				}
				v := Build(observe(s.online, p, jobs, s.recent, t0.Add(time.Duration(i)*time.Minute)), prev)
				if prev != nil {
					for _, e := range Events(*prev, v) {
						got = append(got, e.Type)
						if e.Printer != "ultimakersystem-aa" || e.Cluster != "ultimakersystem-aa" || e.Time.IsZero() {
							t.Errorf("event fields %+v", e)
						}
					}
				}
				prev = &v
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events = %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzBuild feeds whatever a cloud answer can decode to through Build and
// Events: no panic, and the published JSON keeps its contract.
func FuzzBuild(f *testing.F) {
	f.Add([]byte(`{"is_online":true,"printers":[{"uuid":"p","unique_name":"u","status":"printing","enabled":true}],"print_jobs":[{"uuid":"j","status":"printing","printer_uuid":"p","time_total":100,"time_elapsed":50}]}`))
	f.Add([]byte(`{"printers":[{"uuid":"","unique_name":"","configuration":[{"extruder_index":-3,"estimated_material_volume":-1,"original_material_volume":0}]},{}],"recently_completed":[{"status":"wait_cleanup","time_total":1e300}]}`))
	f.Add([]byte(`{"print_jobs":[{"status":"queued"},{"status":"paused","time_elapsed":-5,"time_remaining":1e308}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st connect.ClusterStatus
		if json.Unmarshal(b, &st) != nil {
			return
		}
		obs := Observation{Cluster: connect.Cluster{ClusterID: "c", HostName: "h", IsOnline: true}, Status: &st, Now: t0}
		v1 := Build(obs, nil)
		obs.Now = t0.Add(time.Minute)
		v2 := Build(obs, &v1)
		Events(v1, v2)
		for _, p := range v2.Printers {
			if p.ID == "" {
				t.Fatal("printer without topic id")
			}
			if j := p.Job; j != nil && (j.Progress < 0 || j.Progress > 100 || j.TimeRemaining < 0 || j.TimeTotal < 0) {
				t.Fatalf("job out of range: %+v", j)
			}
			if _, err := json.Marshal(p); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestJSONIsMarshal: the state payload made from Build's single encoding
// is exactly what json.Marshal makes of the printer and the cluster.
func TestJSONIsMarshal(t *testing.T) {
	p, jobs := s5("printing", job("printing", 100, 1000))
	at := time.Date(2026, 3, 1, 9, 0, 7, 0, time.UTC)
	v := Build(observe(true, p, jobs, nil, at), nil)
	for _, pr := range v.Printers {
		want, _ := json.Marshal(pr)
		if got := pr.JSON(); string(got) != string(want) {
			t.Errorf("printer JSON\n got %s\nwant %s", got, want)
		}
	}
	want, _ := json.Marshal(v.Cluster)
	if got := v.Cluster.JSON(); string(got) != string(want) {
		t.Errorf("cluster JSON\n got %s\nwant %s", got, want)
	}
	var bare Printer // not from Build
	bare.ID = "x"
	if want, _ := json.Marshal(bare); string(bare.JSON()) != string(want) {
		t.Errorf("printer not built by Build: %s", bare.JSON())
	}
}

// TestCompactKeepsChangeDetection: a view kept without its encodings
// (Compact) still tells a change from none, and its JSON is unchanged.
func TestCompactKeepsChangeDetection(t *testing.T) {
	p, jobs := s5("printing", job("printing", 100, 1000))
	t0 := time.Date(2026, 3, 1, 9, 0, 7, 0, time.UTC)
	v := Build(observe(true, p, jobs, nil, t0), nil)
	printerJSON, clusterJSON := string(v.Printers[0].JSON()), string(v.Cluster.JSON())
	v.Compact()
	if v.Printers[0].encoded != nil || v.Cluster.encoded != nil {
		t.Fatal("Compact kept the encodings")
	}
	if got := string(v.Printers[0].JSON()); got != printerJSON {
		t.Errorf("compacted printer JSON\n got %s\nwant %s", got, printerJSON)
	}
	if got := string(v.Cluster.JSON()); got != clusterJSON {
		t.Errorf("compacted cluster JSON\n got %s\nwant %s", got, clusterJSON)
	}
	same := Build(observe(true, p, jobs, nil, t0.Add(10*time.Second)), &v)
	if same.PrinterChanged[0] || same.ClusterChanged {
		t.Errorf("nothing changed, yet printer %v cluster %v", same.PrinterChanged[0], same.ClusterChanged)
	}
	same.Compact()
	p2, jobs2 := s5("printing", job("printing", 200, 1000))
	next := Build(observe(true, p2, jobs2, nil, t0.Add(20*time.Second)), &same)
	if !next.PrinterChanged[0] {
		t.Errorf("the job moved on, yet the printer did not change")
	}
	var bare Printer // neither encoding nor sum: summed from its encoding
	bare.ID = "x"
	if bare.contentSum() != maphash.Bytes(contentSeed, bare.contentOf()) {
		t.Errorf("sum of a printer not built by Build")
	}
}

// How long a printer has had its status is kept while the status stays
// (the page said "Paused · < 1 min" for a printer paused for a quarter
// of an hour), and no finish time is given while a job is paused.
func TestStatusSinceAndNoFinishWhilePaused(t *testing.T) {
	p, jobs := s5("printing", job("printing", 3000, 12000))
	v1 := Build(observe(true, p, jobs, nil, t0), nil)
	jobs[0].Status = "paused"
	p.Status = "printing"
	v2 := Build(observe(true, p, jobs, nil, t0.Add(time.Minute)), &v1)
	jobs[0].TimeElapsed += 1 // a temperature, a minute: anything else changes
	v3 := Build(observe(true, p, jobs, nil, t0.Add(15*time.Minute)), &v2)
	got := []time.Time{v1.Printers[0].StatusSince, v2.Printers[0].StatusSince, v3.Printers[0].StatusSince}
	if !got[0].Equal(t0) || !got[1].Equal(t0.Add(time.Minute)) || !got[2].Equal(got[1]) || v3.Printers[0].Status != "paused" {
		t.Errorf("status since %v (status %s)", got, v3.Printers[0].Status)
	}
	if v1.Printers[0].Job.ETA == nil || v3.Printers[0].Job.ETA != nil {
		t.Errorf("ETA printing %v, paused %v: want one, then none", v1.Printers[0].Job.ETA, v3.Printers[0].Job.ETA)
	}
}

// A short job's time left, rounded up to the minute, is never more than
// the whole job (126 s total showed 180 s left).
func TestTimeRemainingWithinTotal(t *testing.T) {
	p, jobs := s5("printing", job("printing", 5, 126))
	jobs[0].TimeRemaining = 121
	v := Build(observe(true, p, jobs, nil, t0), nil)
	if j := v.Printers[0].Job; j.TimeRemaining > j.TimeTotal || j.TimeRemaining != 126 {
		t.Errorf("remaining %d of %d", j.TimeRemaining, j.TimeTotal)
	}
}
