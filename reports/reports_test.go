package reports

import (
	"bytes"
	"context"
	"encoding/csv"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

const (
	lab  = "ultimakersystem-4b0fc38e95e3" // Lab-S5-1, a printer alone in its cluster
	farm = "ultimakersystem-ccbdd30044ec" // Farm-S5-A, host of a group of three
)

// farmOf is the farm as the bridge would have it after one poll of every
// cluster: the Farm the log names printers from.
type farmOf struct {
	printers []state.Printer
	clusters []state.Cluster
}

func (f farmOf) Printers() []state.Printer { return f.printers }
func (f farmOf) Clusters() []state.Cluster { return f.clusters }

// world is the simulator over real HTTP, at a fixed time, with jobs the
// tests know added to its history.
type world struct {
	sim  *simulator.Server
	api  *connect.Client
	farm farmOf
	now  time.Time
}

func newWorld(t *testing.T) *world {
	t.Helper()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	w := &world{now: now}
	w.sim = simulator.New(simulator.Options{Seed: 3, Calm: true, Tokens: []string{"t"}, Now: func() time.Time { return now }})
	srv := httptest.NewServer(w.sim)
	t.Cleanup(srv.Close)
	var err error
	w.api, err = connect.New(connect.Options{BaseURL: srv.URL + simulator.BasePath,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	clusters, err := w.api.Clusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clusters {
		st, err := w.api.ClusterStatus(ctx, c.ClusterID)
		if err != nil {
			t.Fatal(err)
		}
		v := state.Build(state.Observation{Cluster: c, Status: st, Now: now}, nil)
		w.farm.printers = append(w.farm.printers, v.Printers...)
		w.farm.clusters = append(w.farm.clusters, v.Cluster)
	}
	day := 24 * time.Hour
	for _, j := range []struct {
		printer, name, owner, result string
		created                      time.Duration // before now
		elapsed, total               time.Duration
	}{
		{lab, "Bracket, v2 \"final\"\nsecond line", "alice", "finished", 2 * day, 2 * time.Hour, 2 * time.Hour},
		{lab, "Hinge", "bob", "aborted", 3 * day, 30 * time.Minute, 2 * time.Hour},
		{lab, "Spool holder", "alice", "failed", 1 * day, time.Hour, 3 * time.Hour},
		{lab, "Edge", "alice", "finished", 3*day + 13*time.Hour, 3 * time.Hour, 3 * time.Hour}, // created before the period, ended in it
		{farm, "Clip", "carol", "finished", 1 * day, 90 * time.Minute, 90 * time.Minute},
	} {
		if err := w.sim.AddHistory(j.printer, j.name, j.owner, j.result, now.Add(-j.created), j.elapsed, j.total); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *world) log(lan LAN, clears *Clears) *Log {
	l := New(Config{}, w.api, lan, w.farm, clears)
	l.now = func() time.Time { return w.now }
	return l
}

// query reads a job-log query as the API gets it, for the period the
// tests' jobs are in: three days and a half to half a day ago, before any
// of the simulator's running jobs was created and after its seeded ones.
func (w *world) query(t *testing.T, extra string) Query {
	t.Helper()
	v, err := url.ParseQuery("from=" + w.now.Add(-84*time.Hour).Format(time.RFC3339) + "&to=" +
		w.now.Add(-12*time.Hour).Format(time.RFC3339) + extra)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParseQuery(v, w.now)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func names(jobs []Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = strings.SplitN(j.Name, ",", 2)[0]
	}
	return out
}

func TestJobLog(t *testing.T) {
	w := newWorld(t)
	l := w.log(nil, nil)
	ctx := context.Background()
	tests := []struct {
		name, query string
		want        []string
	}{
		{"a printer's jobs, newest first, by the period they were created in", "&printer=" + lab, []string{"Spool holder", "Bracket", "Hinge"}},
		{"a printer by its name", "&printer=Lab-S5-1", []string{"Spool holder", "Bracket", "Hinge"}},
		{"an owner", "&owner=alice", []string{"Spool holder", "Bracket"}},
		{"owners", "&owner=alice,carol", []string{"Clip", "Spool holder", "Bracket"}},
		{"a status", "&status=aborted", []string{"Hinge"}},
		{"a cluster", "&cluster=" + farm, []string{"Clip"}},
		{"name contains", "&q=HOLDER", []string{"Spool holder"}},
		{"every filter", "&printer=" + lab + "&owner=alice&status=finished&q=bracket", []string{"Bracket"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := l.Jobs(ctx, w.query(t, tt.query), false)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(r.Jobs); !slices.Equal(got, tt.want) || r.Total != len(tt.want) {
				t.Errorf("jobs %q (total %d), want %q", got, r.Total, tt.want)
			}
		})
	}
	r, _ := l.Jobs(ctx, w.query(t, "&printer="+lab+"&status=finished"), false)
	j := r.Jobs[0]
	if j.Printer != lab || j.PrinterName != "Lab-S5-1" || j.Cluster != lab || j.Owner != "alice" || j.TimeElapsed != 7200 ||
		j.TimeTotal != 7200 || j.Ended == nil || len(j.Materials) == 0 || j.Source != "cloud" {
		t.Errorf("row %+v", j)
	}
	// Pages.
	r, _ = l.Jobs(ctx, w.query(t, "&page=2&per_page=2"), false)
	if r.Total != 4 || len(r.Jobs) != 2 || r.Jobs[1].Name != "Hinge" {
		t.Errorf("page 2 of 2: %q of %d", names(r.Jobs), r.Total)
	}
}

// The job log's CSV parses back: a header, a row per job, a name with a
// comma, a quote and a line break whole.
func TestJobLogCSV(t *testing.T) {
	w := newWorld(t)
	r, err := w.log(nil, nil).Jobs(context.Background(), w.query(t, "&printer="+lab), true)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteJobsCSV(&b, r.Jobs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatalf("the CSV does not parse: %v\n%s", err, b.String())
	}
	if !slices.Equal(rows[0], JobsHeader) || len(rows) != 4 {
		t.Fatalf("%d rows, header %q", len(rows), rows[0])
	}
	bracket := rows[2]
	if bracket[1] != "Bracket, v2 \"final\"\nsecond line" || bracket[2] != lab || bracket[5] != "alice" ||
		bracket[6] != "finished" || bracket[9] != "7200" {
		t.Errorf("row %q", bracket)
	}
	created, err := time.Parse(time.RFC3339, bracket[7])
	if err != nil || !created.Equal(w.now.Add(-48*time.Hour)) || !strings.HasSuffix(bracket[7], "Z") {
		t.Errorf("created %q (%v): want ISO 8601 in UTC", bracket[7], err)
	}
}

func TestUtilisationFromKnownJobs(t *testing.T) {
	w := newWorld(t)
	clears := NewClears()
	l := w.log(nil, clears)
	q := w.query(t, "")
	// The Bracket waited on the plate for 40 minutes, as the bridge saw.
	r, _ := l.Jobs(context.Background(), w.query(t, "&q=bracket"), true)
	clears.now = func() time.Time { return w.now.Add(-47 * time.Hour) }
	waitingLab := state.Printer{ID: lab, Online: true, Job: &state.Job{UUID: r.Jobs[0].UUID, Status: "wait_cleanup"}}
	clears.Observe(poller.Update{Printers: []state.Printer{waitingLab}})
	clears.now = func() time.Time { return w.now.Add(-47*time.Hour + 40*time.Minute) }
	clears.Observe(poller.Update{Printers: []state.Printer{{ID: lab, Online: true}}})
	l.kept = map[period]kept{} // read again, with the wait

	u, err := l.Utilisation(context.Background(), q.From, q.To, ByPrinter)
	if err != nil {
		t.Fatal(err)
	}
	if u.PeriodHours != 72 || len(u.Rows) != len(w.farm.printers) {
		t.Fatalf("period %v h, %d rows", u.PeriodHours, len(u.Rows))
	}
	i := slices.IndexFunc(u.Rows, func(r Row) bool { return r.Key == lab })
	row := u.Rows[i]
	// 2 h + 30 min + 1 h of 72 h: 4.9 %.
	if row.HoursPrinted != 3.5 || row.Utilisation != 4.9 || row.Finished != 1 || row.Aborted != 1 || row.Failed != 1 ||
		row.SuccessRate == nil || *row.SuccessRate != 33.3 || row.ClearsSeen != 1 || *row.ClearWaitMean != 2400 ||
		*row.ClearWaitMax != 2400 {
		t.Errorf("Lab-S5-1 %+v", row)
	}
	idle := u.Rows[slices.IndexFunc(u.Rows, func(r Row) bool { return r.Key != lab && r.Key != farm && r.Jobs == 0 })]
	if idle.Utilisation != 0 || idle.SuccessRate != nil {
		t.Errorf("a printer without jobs %+v", idle)
	}
	if u.Total.Jobs != 4 || u.Total.HoursPrinted != 5 || u.Total.Printers != len(w.farm.printers) {
		t.Errorf("total %+v", u.Total)
	}
	// By cluster: the farm's cluster has three printers' hours.
	u, _ = l.Utilisation(context.Background(), q.From, q.To, ByCluster)
	c := u.Rows[slices.IndexFunc(u.Rows, func(r Row) bool { return r.Key == farm })]
	if c.Printers != 3 || c.HoursPrinted != 1.5 || c.Utilisation != round(1.5/216*100, 10) || c.Name != "Print Farm" {
		t.Errorf("the farm's cluster %+v", c)
	}
	// By owner: alice's share of the farm.
	u, _ = l.Utilisation(context.Background(), q.From, q.To, ByOwner)
	a := u.Rows[slices.IndexFunc(u.Rows, func(r Row) bool { return r.Key == "alice" })]
	if a.Jobs != 2 || a.HoursPrinted != 3 {
		t.Errorf("alice %+v", a)
	}
	var b bytes.Buffer
	if err := WriteUtilisationCSV(&b, u); err != nil {
		t.Fatal(err)
	}
	if rows, err := csv.NewReader(&b).ReadAll(); err != nil || len(rows) != len(u.Rows)+2 {
		t.Errorf("utilisation CSV: %d rows, %v", len(rows), err)
	}
}

// A period's jobs are read once and kept a minute: the page's questions
// about it do not each go to the cloud.
func TestJobLogKeptBriefly(t *testing.T) {
	w := newWorld(t)
	l := w.log(nil, nil)
	ctx := context.Background()
	before := w.sim.Requests("/print_jobs/reports")
	for _, extra := range []string{"", "&owner=alice", "&page=2&per_page=1"} {
		if _, err := l.Jobs(ctx, w.query(t, extra), false); err != nil {
			t.Fatal(err)
		}
	}
	l.Utilisation(ctx, w.query(t, "").From, w.query(t, "").To, ByPrinter)
	if n := w.sim.Requests("/print_jobs/reports") - before; n != 1 {
		t.Errorf("%d reads of the reports for four questions about one period, want 1", n)
	}
	w.now = w.now.Add(2 * time.Minute)
	l.Jobs(ctx, w.query(t, ""), false)
	if n := w.sim.Requests("/print_jobs/reports") - before; n != 2 {
		t.Errorf("%d reads after the keep ran out, want 2", n)
	}
}

// lanOf is a LAN whose printers' histories are given.
type lanOf []local.PrinterHistory

func (l lanOf) History(context.Context, time.Time) []local.PrinterHistory { return l }

// A LAN printer's own history adds the jobs the cloud does not know (one
// printed from USB), and the cloud's row wins for a job both know.
func TestJobLogWithTheLAN(t *testing.T) {
	w := newWorld(t)
	cloud, _ := w.log(nil, nil).Jobs(context.Background(), w.query(t, "&printer="+lab), true)
	stamp := func(d time.Duration) string { return w.now.Add(-d).Format("2006-01-02T15:04:05") }
	lan := lanOf{{Printer: lab, Jobs: []local.HistoryJob{
		{UUID: "usb-1", Name: "From USB", Result: "Finished", CreatedAt: stamp(20 * time.Hour),
			DatetimeFinished: stamp(18 * time.Hour), TimeElapsed: 7200, TimeTotal: 7200, Material0GUID: "unknown-guid"},
		{UUID: cloud.Jobs[0].UUID, Name: "the LAN's copy", Result: "Failed", CreatedAt: stamp(24 * time.Hour)},
		{UUID: "old", Name: "Too old", Result: "Finished", CreatedAt: stamp(200 * time.Hour)},
	}}}
	r, err := w.log(lan, nil).Jobs(context.Background(), w.query(t, "&printer="+lab), true)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(r.Jobs); !slices.Equal(got, []string{"From USB", "Spool holder", "Bracket", "Hinge"}) {
		t.Errorf("jobs %q", got)
	}
	usb := r.Jobs[0]
	if usb.Source != "local" || usb.Status != "finished" || usb.PrinterName != "Lab-S5-1" || usb.Ended == nil ||
		!slices.Equal(usb.Materials, []string{"unknown-guid"}) {
		t.Errorf("the LAN's row %+v", usb)
	}
}

func TestParseQuery(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		query string
		ok    bool
	}{
		{"", true},
		{"from=2026-12-01&to=2026-12-06", true},
		{"from=2026-12-06&to=2026-12-01", false},
		{"from=2026-01-01&to=2026-12-01", false}, // over MaxPeriod
		{"from=yesterday", false},
		{"page=0", false},
		{"per_page=x", false},
		{"per_page=100000", true}, // capped
	} {
		v, _ := url.ParseQuery(tt.query)
		q, err := ParseQuery(v, now)
		if (err == nil) != tt.ok {
			t.Errorf("%q: %v", tt.query, err)
		}
		if err == nil && (q.PerPage > MaxPerPage || !q.From.Before(q.To)) {
			t.Errorf("%q: %+v", tt.query, q)
		}
	}
	q, _ := ParseQuery(url.Values{}, now)
	if !q.To.Equal(now) || q.To.Sub(q.From) != DefaultDays*24*time.Hour {
		t.Errorf("default period %s to %s", q.From, q.To)
	}
}

func FuzzParseQuery(f *testing.F) {
	f.Add("from=2026-12-01&to=2026-12-06&printer=a,b&status=finished&q=x&page=2&per_page=10")
	f.Add("from=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
		if err != nil {
			return
		}
		if !q.From.Before(q.To) || q.To.Sub(q.From) > MaxPeriod || q.Page < 1 || q.PerPage < 1 || q.PerPage > MaxPerPage {
			t.Fatalf("accepted %q as %+v", raw, q)
		}
	})
}

// slowCloud counts the walks of the history under way at once.
type slowCloud struct {
	mu        sync.Mutex
	now, most int
	walks     int
}

func (c *slowCloud) WalkReports(ctx context.Context, start, end time.Time, visit func([]connect.Report)) error {
	c.mu.Lock()
	c.now++
	c.walks++
	c.most = max(c.most, c.now)
	c.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	c.mu.Lock()
	c.now--
	c.mu.Unlock()
	return nil
}

func (c *slowCloud) PrintJobs(context.Context, connect.PrintJobQuery) ([]connect.PrintJob, connect.Page, error) {
	return nil, connect.Page{}, nil
}

// However many ask about however many periods, the history is walked one
// period at a time, and one period once.
func TestOneWalkAtATime(t *testing.T) {
	cloud := &slowCloud{}
	l := New(Config{}, cloud, nil, farmOf{}, nil)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			from := now.Add(-time.Duration(i%5+1) * 24 * time.Hour)
			if _, err := l.Jobs(context.Background(), Query{From: from, To: now, Page: 1, PerPage: 10}, false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if cloud.most != 1 || cloud.walks != 5 {
		t.Errorf("%d walks, %d at once at most: want 5, one at a time", cloud.walks, cloud.most)
	}
}
