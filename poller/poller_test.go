package poller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// fakeSource is an in-memory Connect account. Calls are recorded with the
// (bubble) time they were made.
type fakeSource struct {
	mu       sync.Mutex
	clusters []connect.Cluster
	printing map[string]bool
	errs     map[string]error // by cluster id, or "list", or "reports" (after the first page)
	latency  time.Duration
	calls    []call
	inFlight int
	maxIn    int
}

type call struct {
	what, id string
	at       time.Time
}

var _ Source = (*fakeSource)(nil)

func newFake(n int) *fakeSource {
	f := &fakeSource{printing: map[string]bool{}, errs: map[string]error{}}
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		f.clusters = append(f.clusters, connect.Cluster{ClusterID: id, HostName: "host-" + id, IsOnline: true, FriendlyName: id})
	}
	return f
}

func (f *fakeSource) enter(what, id string) (error, func()) {
	f.mu.Lock()
	f.calls = append(f.calls, call{what, id, time.Now()})
	f.inFlight++
	f.maxIn = max(f.maxIn, f.inFlight)
	key := id
	if what == "list" {
		key = "list"
	}
	err := f.errs[key]
	lat := f.latency
	f.mu.Unlock()
	if lat > 0 {
		time.Sleep(lat)
	}
	return err, func() { f.mu.Lock(); f.inFlight--; f.mu.Unlock() }
}

func (f *fakeSource) Clusters(ctx context.Context) ([]connect.Cluster, error) {
	err, done := f.enter("list", "")
	defer done()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]connect.Cluster(nil), f.clusters...), nil
}

func (f *fakeSource) ClusterStatus(ctx context.Context, id string) (*connect.ClusterStatus, error) {
	err, done := f.enter("status", id)
	defer done()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	online := true
	for _, c := range f.clusters {
		if c.ClusterID == id {
			online = c.IsOnline
		}
	}
	st := &connect.ClusterStatus{IsOnline: &online, Printers: []connect.Printer{{UUID: "p-" + id, UniqueName: "printer-" + id,
		Status: "idle", Enabled: true}}}
	if f.printing[id] {
		st.Printers[0].Status = "printing"
		st.PrintJobs = []connect.PrintJob{{UUID: "j-" + id, Status: "printing", PrinterUUID: "p-" + id, TimeTotal: 100, TimeElapsed: 10}}
	}
	return st, nil
}

func (f *fakeSource) PendingMaintenance(ctx context.Context, id string) ([]connect.MaintenanceTask, error) {
	err, done := f.enter("maintenance", id)
	defer done()
	return nil, err
}

func (f *fakeSource) CompletedMaintenance(ctx context.Context, id string, _ int) ([]connect.CompletedMaintenance, error) {
	err, done := f.enter("completed", id)
	defer done()
	return nil, err
}

func (f *fakeSource) Settings(ctx context.Context) (*connect.Settings, error) {
	err, done := f.enter("settings", "")
	defer done()
	return &connect.Settings{EnablePrintPrep: true}, err
}

func (f *fakeSource) Usage(ctx context.Context) (json.RawMessage, error) {
	err, done := f.enter("usage", "")
	defer done()
	return json.RawMessage(`{"printers":1}`), err
}

// WalkReports hands over two reports, a page each.
func (f *fakeSource) WalkReports(ctx context.Context, start, end time.Time, visit func([]connect.Report)) error {
	err, done := f.enter("reports", "")
	defer done()
	if err != nil {
		return err
	}
	visit([]connect.Report{{UUID: "r1", ClusterID: "c0", Status: "finished", TimeTotal: 100, TimeElapsed: 100, PrinterUUID: "p-c0"}})
	f.mu.Lock()
	err = f.errs["reports"] // the walk breaks off after its first page
	f.mu.Unlock()
	if err != nil {
		return err
	}
	visit([]connect.Report{{UUID: "r2", ClusterID: "c0", Status: "aborted", TimeTotal: 100, TimeElapsed: 20, PrinterUUID: "p-c0"}})
	return nil
}

func (f *fakeSource) count(what, id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.what == what && (id == "" || c.id == id) {
			n++
		}
	}
	return n
}

func (f *fakeSource) times(what, id string) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	var first time.Time
	for _, c := range f.calls {
		if c.what == what && c.id == id {
			if first.IsZero() {
				first = c.at
			}
			out = append(out, c.at.Sub(first).Round(time.Second))
		}
	}
	return out
}

// recorder is a Sink that keeps every update.
type recorder struct {
	mu      sync.Mutex
	updates []Update
}

func (r *recorder) Apply(_ context.Context, u Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, u)
}

func (r *recorder) all() []Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Update(nil), r.updates...)
}

var exact = Config{Interval: 10 * time.Second, IdleInterval: time.Minute, OfflineInterval: 5 * time.Minute,
	ClustersInterval: 5 * time.Minute, MaintenanceInterval: time.Hour, BackoffMax: 2 * time.Minute, Jitter: -1}

// runFor runs a poller in the bubble, calls during (which may sleep), then
// waits d more of fake time and stops the poller.
func runFor(t *testing.T, cfg Config, src Source, sink Sink, log zerolog.Logger, d time.Duration, during func(p *Poller)) {
	t.Helper()
	p := New(cfg, src, sink, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	if during != nil {
		during(p)
	}
	time.Sleep(d)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(3)
		src.printing["c1"] = true
		src.clusters[2].IsOnline = false
		runFor(t, exact, src, &recorder{}, zerolog.Nop(), 10*time.Minute+time.Second, nil)
		tests := []struct {
			what, id string
			want     int
		}{
			{"status", "c0", 11},     // idle: 0, 1m … 10m
			{"status", "c1", 61},     // printing: every 10 s
			{"status", "c2", 3},      // offline: 0, 5m, 10m
			{"list", "", 3},          // 0, 5m, 10m
			{"maintenance", "c0", 1}, // hourly
			{"maintenance", "c1", 1},
		}
		for _, tt := range tests {
			if got := src.count(tt.what, tt.id); got != tt.want {
				t.Errorf("%s %s: %d calls, want %d", tt.what, tt.id, got, tt.want)
			}
		}
	})
}

// TestPhaseSpreadsPolls: clusters found together are polled at once, then
// each in a rhythm of its own, offset once by up to half an interval and
// exact after (issue 13: a change shows within one interval).
func TestPhaseSpreadsPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(8)
		cfg := exact
		cfg.Jitter = 0.1
		runFor(t, cfg, src, &recorder{}, zerolog.Nop(), 30*time.Minute, nil)
		offsets := map[time.Duration]bool{}
		for i := range 8 {
			ts := src.times("status", fmt.Sprintf("c%d", i))
			if len(ts) < 3 {
				t.Fatalf("c%d polled %d times", i, len(ts))
			}
			if ts[1] < 30*time.Second || ts[1] > 60*time.Second {
				t.Errorf("c%d: second poll after %s, want within 30-60s", i, ts[1])
			}
			for k := 2; k < len(ts); k++ {
				if gap := ts[k] - ts[k-1]; gap != time.Minute {
					t.Errorf("c%d: gap %s, want exactly 1m", i, gap)
				}
			}
			offsets[ts[1]] = true
		}
		if len(offsets) < 3 {
			t.Errorf("second polls at %v: the clusters stay in step", offsets)
		}
	})
}

// TestGatherBatchesPolls: with Gather, polls due within one step go out
// together at its end: never before they are due, never more than a step
// late, and the loop wakes once per step rather than once per cluster.
func TestGatherBatchesPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(40)
		for i := range 40 {
			src.printing[fmt.Sprintf("c%d", i)] = true
		}
		cfg := exact
		cfg.Jitter, cfg.Gather = 0.1, time.Second
		start := time.Now()
		runFor(t, cfg, src, &recorder{}, zerolog.Nop(), 5*time.Minute, nil)
		src.mu.Lock()
		defer src.mu.Unlock()
		wakes := map[time.Time]bool{}
		last := map[string]time.Time{}
		polls := 0
		for _, c := range src.calls {
			if c.what != "status" {
				continue
			}
			polls++
			wakes[c.at] = true
			if off := c.at.Sub(start) % time.Second; off != 0 {
				t.Errorf("%s polled %s after a step", c.id, off)
			}
			if prev, ok := last[c.id]; ok {
				gap := c.at.Sub(prev)
				// The second poll is phased (half to one interval); every
				// later one comes exactly an interval after the last.
				if gap < 5*time.Second || gap > 10*time.Second+time.Second {
					t.Errorf("%s: gap %s", c.id, gap)
				}
			}
			last[c.id] = c.at
		}
		if polls < 40*25 || len(wakes) > polls/3 {
			t.Errorf("%d polls at %d moments: not gathered", polls, len(wakes))
		}
	})
}

func TestBackoffIsPerClusterAndCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(2)
		src.printing["c0"], src.printing["c1"] = true, true
		src.errs["c1"] = &connect.APIError{Kind: connect.KindServer, HTTPStatus: 500}
		var logs bytes.Buffer
		runFor(t, exact, src, &recorder{}, zerolog.New(&logs), 10*time.Minute, nil)
		want := []time.Duration{0, 10 * time.Second, 30 * time.Second, 70 * time.Second, 150 * time.Second, 270 * time.Second, 390 * time.Second, 510 * time.Second}
		if got := src.times("status", "c1"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("failing cluster polled at %v, want %v", got, want)
		}
		if got := src.count("status", "c0"); got != 61 {
			t.Errorf("healthy cluster polled %d times, want 61 (0 s to 600 s, not held up)", got)
		}
		if n := strings.Count(logs.String(), "cluster poll failed"); n != 1 {
			t.Errorf("failure logged %d times, want once per streak:\n%s", n, logs.String())
		}
	})
}

func TestRecoveryResetsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(1)
		src.printing["c0"] = true
		src.errs["c0"] = &connect.APIError{Kind: connect.KindNetwork}
		var logs bytes.Buffer
		runFor(t, exact, src, &recorder{}, zerolog.New(&logs), 5*time.Minute, func(p *Poller) {
			time.Sleep(75 * time.Second) // failures at 0, 10, 30, 70 s
			src.mu.Lock()
			delete(src.errs, "c0")
			src.mu.Unlock()
		})
		ts := src.times("status", "c0")
		if len(ts) < 5 || ts[4] != 150*time.Second || ts[5] != 160*time.Second {
			t.Errorf("after recovery at 150s polls should be 10s apart again: %v", ts)
		}
		if !strings.Contains(logs.String(), "cluster poll recovered") {
			t.Errorf("recovery not logged")
		}
	})
}

func TestRateLimitPausesAccount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(3)
		for _, c := range []string{"c0", "c1", "c2"} {
			src.printing[c] = true
		}
		rec := &recorder{}
		runFor(t, exact, src, rec, zerolog.Nop(), 5*time.Minute, func(p *Poller) {
			time.Sleep(25 * time.Second)
			src.mu.Lock()
			src.errs["c1"] = &connect.APIError{Kind: connect.KindRateLimited, HTTPStatus: 429, RetryAfter: 90 * time.Second}
			src.mu.Unlock()
			time.Sleep(10 * time.Second) // c1 is limited at 30 s
			src.mu.Lock()
			delete(src.errs, "c1")
			src.mu.Unlock()
		})
		src.mu.Lock()
		defer src.mu.Unlock()
		var limitedAt time.Time
		start := src.calls[0].at
		for _, c := range src.calls {
			if c.id == "c1" && c.at.Sub(start) == 30*time.Second {
				limitedAt = c.at
			}
		}
		if limitedAt.IsZero() {
			t.Fatalf("c1 not polled at 30s")
		}
		for _, c := range src.calls {
			if d := c.at.Sub(limitedAt); d > 0 && d < 90*time.Second {
				t.Errorf("%s %s polled %s into a 90s rate limit", c.what, c.id, d)
			}
		}
		var sawLimited bool
		for _, u := range rec.all() {
			if u.Stats != nil && u.Stats.RateLimitedUntil != nil {
				sawLimited = true
			}
		}
		if !sawLimited {
			t.Errorf("stats never showed the rate limit")
		}
	})
}

func TestMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(20)
		src.latency = 3 * time.Second
		cfg := exact
		cfg.MaxInFlight = 3
		runFor(t, cfg, src, &recorder{}, zerolog.Nop(), 2*time.Minute, nil)
		if src.maxIn != 3 {
			t.Errorf("at most %d requests in flight, want 3", src.maxIn)
		}
		for i := range 20 {
			if src.count("status", fmt.Sprintf("c%d", i)) == 0 {
				t.Errorf("c%d never polled", i)
			}
		}
	})
}

func TestClusterRemovedAndFiltered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(3)
		cfg := exact
		cfg.ClusterIDs = []string{"c0", "c1"}
		rec := &recorder{}
		runFor(t, cfg, src, rec, zerolog.Nop(), 6*time.Minute, func(p *Poller) {
			time.Sleep(time.Minute)
			src.mu.Lock()
			src.clusters = src.clusters[1:] // c0 leaves the account
			src.mu.Unlock()
		})
		if n := src.count("status", "c2"); n != 0 {
			t.Errorf("c2 is not in CLUSTER_IDS but was polled %d times", n)
		}
		var removed []string
		for _, u := range rec.all() {
			for _, c := range u.RemovedClusters {
				removed = append(removed, c.ClusterID)
			}
			for _, p := range u.RemovedPrinters {
				removed = append(removed, p.ID)
			}
		}
		if fmt.Sprint(removed) != "[c0 printer-c0]" {
			t.Errorf("removed %v, want c0 and its printer", removed)
		}
		last := src.times("status", "c0")
		if len(last) == 0 || last[len(last)-1] > 5*time.Minute {
			t.Errorf("c0 polled after it left: %v", last)
		}
	})
}

func TestRefreshBoosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(1)
		cfg := exact
		cfg.BoostFor = time.Minute
		runFor(t, cfg, src, &recorder{}, zerolog.Nop(), 150*time.Second, func(p *Poller) {
			time.Sleep(90 * time.Second)
			p.Refresh("c0")
		})
		// Idle: 0, 60 s; refresh at 90 s, then every 10 s until 150 s;
		// then back to idle.
		got := src.times("status", "c0")
		want := "[0s 1m0s 1m30s 1m40s 1m50s 2m0s 2m10s 2m20s 2m30s 3m30s]"
		if fmt.Sprint(got) != want {
			t.Errorf("polls at %v, want %s", got, want)
		}
	})
}

func TestUpdatesOnlyOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(1)
		rec := &recorder{}
		runFor(t, exact, src, rec, zerolog.Nop(), 100*time.Second, func(p *Poller) {
			time.Sleep(150 * time.Second)
			src.mu.Lock()
			src.printing["c0"] = true
			src.mu.Unlock()
		})
		var printerUpdates, events int
		for _, u := range rec.all() {
			printerUpdates += len(u.Printers)
			for _, e := range u.Events {
				if e.Type == "print_started" {
					events++
				}
			}
		}
		// First sight, then the start; the idle polls before it and the
		// identical printing polls after it change nothing.
		if printerUpdates != 2 || events != 1 {
			t.Errorf("%d printer updates and %d print_started events, want 2 and 1", printerUpdates, events)
		}
	})
}

func TestShutdownWaitsForRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(2)
		src.latency = time.Hour // requests that never finish on their own...
		p := New(exact, ctxSource{src}, &recorder{}, zerolog.Nop())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(time.Second)
		start := time.Now()
		cancel()
		<-done
		if d := time.Since(start); d > time.Second {
			t.Errorf("shutdown took %s", d)
		}
	})
}

// ctxSource makes the fake's latency end with the context, like an HTTP
// request does.
type ctxSource struct{ f *fakeSource }

func (c ctxSource) Clusters(ctx context.Context) ([]connect.Cluster, error) {
	select {
	case <-time.After(c.f.latency):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c.f.clusters, nil
}

func (c ctxSource) ClusterStatus(ctx context.Context, id string) (*connect.ClusterStatus, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (c ctxSource) CompletedMaintenance(ctx context.Context, id string, n int) ([]connect.CompletedMaintenance, error) {
	return c.f.CompletedMaintenance(ctx, id, n)
}
func (c ctxSource) Settings(ctx context.Context) (*connect.Settings, error) { return c.f.Settings(ctx) }
func (c ctxSource) Usage(ctx context.Context) (json.RawMessage, error)      { return c.f.Usage(ctx) }
func (c ctxSource) WalkReports(ctx context.Context, a, b time.Time, visit func([]connect.Report)) error {
	return c.f.WalkReports(ctx, a, b, visit)
}
func (c ctxSource) PendingMaintenance(ctx context.Context, id string) ([]connect.MaintenanceTask, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// movingSource reports printer "shared" in cluster c0 first, then in c1.
type movingSource struct {
	*fakeSource
	moved bool
}

func (m *movingSource) ClusterStatus(ctx context.Context, id string) (*connect.ClusterStatus, error) {
	st, err := m.fakeSource.ClusterStatus(ctx, id)
	if err != nil {
		return nil, err
	}
	m.fakeSource.mu.Lock()
	moved := m.moved
	m.fakeSource.mu.Unlock()
	if (id == "c0" && !moved) || (id == "c1" && moved) {
		st.Printers = append(st.Printers, connect.Printer{UUID: "shared-uuid", UniqueName: "shared", Status: "idle", Enabled: true})
	}
	return st, nil
}

// A printer that moves to another cluster keeps its topics: the old
// cluster's poll must not clear what the new one published.
func TestPrinterMovingClustersIsNotRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &movingSource{fakeSource: newFake(2)}
		rec := &recorder{}
		runFor(t, exact, src, rec, zerolog.Nop(), 3*time.Minute, func(p *Poller) {
			time.Sleep(90 * time.Second)
			src.mu.Lock()
			src.moved = true
			src.mu.Unlock()
		})
		for _, u := range rec.all() {
			for _, p := range u.RemovedPrinters {
				if p.ID == "shared" {
					t.Errorf("the moved printer was removed")
				}
			}
		}
	})
}

// A printer that really leaves a cluster is removed at the next cluster
// list, within one list interval.
func TestPrinterLeavingClusterRemovedAtNextList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &movingSource{fakeSource: newFake(1)} // "shared" is in c0 until moved to c1, which does not exist
		rec := &recorder{}
		var removedAt time.Duration
		start := time.Now()
		runFor(t, exact, src, rec, zerolog.Nop(), 12*time.Minute, func(p *Poller) {
			time.Sleep(90 * time.Second)
			src.mu.Lock()
			src.moved = true
			src.mu.Unlock()
			for removedAt == 0 && time.Since(start) < 11*time.Minute {
				time.Sleep(time.Second)
				for _, u := range rec.all() {
					for _, p := range u.RemovedPrinters {
						if p.ID == "shared" {
							removedAt = time.Since(start)
						}
					}
				}
			}
		})
		// Gone from c0's poll at 120 s; the next list is at 300 s.
		if removedAt < 120*time.Second || removedAt > 301*time.Second {
			t.Errorf("removed at %s, want at the list poll after it vanished", removedAt)
		}
	})
}

// TestTwoChangesWithinOneSecond: a refresh poll that lands in the same
// second as the poll before it still publishes what changed (issue 9.0:
// updated_at has one-second resolution, so it cannot decide).
func TestTwoChangesWithinOneSecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(1)
		rec := &recorder{}
		runFor(t, exact, src, rec, zerolog.Nop(), time.Second, func(p *Poller) {
			time.Sleep(100 * time.Millisecond) // first poll: idle
			src.mu.Lock()
			src.printing["c0"] = true
			src.mu.Unlock()
			p.Refresh("c0")
			time.Sleep(200 * time.Millisecond) // printing, same second
			src.mu.Lock()
			src.printing["c0"] = false
			src.mu.Unlock()
			p.Refresh("c0")
			time.Sleep(200 * time.Millisecond) // idle again, same second
		})
		var statuses []string
		for _, u := range rec.all() {
			for _, p := range u.Printers {
				statuses = append(statuses, p.Status)
			}
		}
		if got, want := strings.Join(statuses, " "), "idle printing idle"; got != want {
			t.Errorf("printer updates %q, want %q", got, want)
		}
	})
}

// TestCloudReachableHoldsWithOneFailingCluster: one cluster of fifteen
// failing with 5xx never flips cloud_reachable; every target failing
// turns it off, and one answer turns it on again (issue 9.11).
func TestCloudReachableHoldsWithOneFailingCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(15)
		src.errs["c3"] = &connect.APIError{Kind: connect.KindServer, HTTPStatus: 500}
		rec := &recorder{}
		var reach []bool
		runFor(t, exact, src, rec, zerolog.Nop(), time.Minute, func(p *Poller) {
			time.Sleep(time.Minute)
			for _, u := range rec.all() {
				if u.Stats != nil {
					reach = append(reach, u.Stats.CloudReachable)
				}
			}
			src.mu.Lock()
			src.errs["list"] = &connect.APIError{Kind: connect.KindNetwork}
			for i := range 15 {
				src.errs[fmt.Sprintf("c%d", i)] = &connect.APIError{Kind: connect.KindNetwork}
			}
			src.mu.Unlock()
			p.Refresh("")
		})
		flips := 0
		for i := 1; i < len(reach); i++ {
			if reach[i] != reach[i-1] {
				flips++
			}
		}
		if len(reach) == 0 || !reach[len(reach)-1] || flips > 1 {
			t.Errorf("with one failing cluster: %d flips of cloud_reachable in a minute, %v", flips, reach)
		}
		all := rec.all()
		last := all[len(all)-1].Stats
		if last == nil || last.CloudReachable {
			t.Errorf("with every request failing, last stats %+v, want unreachable", last)
		}
	})
}

// TestRefreshMaintenanceReadsItNow: after tasks are logged as done the
// pending maintenance is read again at once, not at the next hourly poll
// (issue 9.9).
func TestRefreshMaintenanceReadsItNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(1)
		runFor(t, exact, src, &recorder{}, zerolog.Nop(), time.Second, func(p *Poller) {
			// Between two polls: a refresh at the very moment of the one
			// minute poll, the first with maintenance, is rightly that read.
			time.Sleep(90 * time.Second)
			p.RefreshMaintenance("c0")
		})
		if got := src.count("maintenance", "c0"); got != 2 {
			t.Errorf("%d maintenance reads, want 2 (start and the refresh)", got)
		}
	})
}

// TestIdleWorkspaceRequestsPerHour counts what an idle workspace of four
// clusters costs in an hour: the cluster list and the settings every 5
// minutes, each status every minute, pending and completed maintenance
// once, usage and the reports walk once (issue 11).
func TestIdleWorkspaceRequestsPerHour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(4)
		runFor(t, exact, src, &recorder{}, zerolog.Nop(), time.Hour-time.Second, nil)
		counts := map[string]int{}
		total := 0
		for _, what := range []string{"list", "settings", "status", "maintenance", "completed", "usage", "reports"} {
			counts[what] = src.count(what, "")
			total += counts[what]
		}
		want := map[string]int{"list": 12, "settings": 12, "status": 240, "maintenance": 4, "completed": 4, "usage": 1, "reports": 1}
		for k, v := range want {
			if counts[k] != v {
				t.Errorf("%s: %d requests in an hour, want %d", k, counts[k], v)
			}
		}
		t.Logf("idle workspace of 4 clusters: %d requests per hour (%v); %d before issue 11's routes",
			total, counts, counts["list"]+counts["status"]+counts["maintenance"])
	})
}

// TestStatistics: the reports walk gives the workspace and each printer
// their 30-day totals (issue 11).
func TestStatistics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(2)
		rec := &recorder{}
		runFor(t, exact, src, rec, zerolog.Nop(), time.Second, nil)
		var ws *state.Workspace
		per := map[string]state.Statistics{}
		for _, u := range rec.all() {
			if u.Workspace != nil {
				ws = u.Workspace
			}
			maps.Copy(per, u.Statistics)
		}
		if ws == nil || ws.Settings == nil || !ws.Settings.EnablePrintPrep || ws.Statistics == nil || string(ws.Usage) != `{"printers":1}` {
			t.Fatalf("workspace %+v", ws)
		}
		if s := ws.Statistics; s.JobsFinished != 1 || s.JobsAborted != 1 || s.PrintSeconds != 120 || s.SuccessRate == nil || *s.SuccessRate != 50 {
			t.Errorf("workspace statistics %+v", s)
		}
		if s := per["printer-c0"]; s.JobsFinished != 1 || s.JobsAborted != 1 {
			t.Errorf("printer-c0 statistics %+v", s)
		}
		if s, ok := per["printer-c1"]; !ok || s.JobsFinished != 0 || s.SuccessRate != nil {
			t.Errorf("printer-c1 statistics %+v, %v: want zeros", s, ok)
		}
	})
}

// TestStatisticsAfterBrokenWalk: a reports walk that fails after a page
// publishes nothing; the next walk counts from zero, not on top.
func TestStatisticsAfterBrokenWalk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(2)
		src.errs["reports"] = &connect.APIError{Kind: connect.KindServer, HTTPStatus: 500}
		rec := &recorder{}
		runFor(t, exact, src, rec, zerolog.Nop(), 5*time.Minute, func(*Poller) {
			time.Sleep(30 * time.Second)
			for _, u := range rec.all() {
				if u.Statistics != nil || (u.Workspace != nil && u.Workspace.Statistics != nil) {
					t.Errorf("statistics from a broken walk: %+v", u)
				}
			}
			src.mu.Lock()
			delete(src.errs, "reports")
			src.mu.Unlock()
		})
		if n := src.count("reports", ""); n < 2 {
			t.Fatalf("%d walks, want a retry after the broken one", n)
		}
		var ws *state.Workspace
		for _, u := range rec.all() {
			if u.Workspace != nil {
				ws = u.Workspace
			}
		}
		if ws == nil || ws.Statistics == nil || ws.Statistics.JobsFinished != 1 || ws.Statistics.JobsAborted != 1 {
			t.Fatalf("workspace after the retried walk %+v", ws)
		}
	})
}

// TestListedKeepsWhatBuildReads: the trimmed list entry the poller keeps
// builds the same state as the full one.
func TestListedKeepsWhatBuildReads(t *testing.T) {
	online := true
	host := connect.Printer{UUID: "p1", UniqueName: "ultimakersystem-aa", FriendlyName: "Lab", Status: "idle", Enabled: true}
	full := connect.Cluster{ClusterID: "c1", HostGUID: "g", HostName: "ultimakersystem-aa", FriendlyName: "Lab", PrinterCount: 1,
		Status: "active", IsOnline: true, HostVersion: "8.2.0", HostInternalIP: "10.0.0.2", PrinterType: "ultimaker_s5",
		Capabilities: []string{"queue"}, OrganizationID: "o", OrganizationShared: true, TeamIDs: []string{"t"},
		Note: &connect.ClusterNote{Note: "nozzle swapped"}, UserID: "u", MaintenanceDue: true, DisplayStatus: "idle",
		HostPrinter: &host, HostPrintJobCount: 2, HostRemainingPrintTime: 60}
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	st := &connect.ClusterStatus{IsOnline: &online, Printers: []connect.Printer{host}}
	for _, tt := range []struct {
		name   string
		status *connect.ClusterStatus
		polled bool
	}{{"with status", st, true}, {"list only, not polled yet", nil, false}} {
		t.Run(tt.name, func(t *testing.T) {
			want := state.Build(state.Observation{Cluster: full, Status: tt.status, Now: at}, nil)
			got := state.Build(state.Observation{Cluster: listed(full, tt.polled), Status: tt.status, Now: at}, nil)
			if string(got.Cluster.JSON()) != string(want.Cluster.JSON()) || len(got.Printers) != len(want.Printers) {
				t.Fatalf("cluster from the kept entry\n got %s\nwant %s", got.Cluster.JSON(), want.Cluster.JSON())
			}
			for i := range want.Printers {
				if string(got.Printers[i].JSON()) != string(want.Printers[i].JSON()) {
					t.Errorf("printer from the kept entry\n got %s\nwant %s", got.Printers[i].JSON(), want.Printers[i].JSON())
				}
			}
		})
	}
}

// TestGroupMembersPollTheirShare: two members of a group share one
// account. Only the leader reads the cluster list and hands it over; each
// polls only the clusters it owns; when a member goes, the other polls
// its share at once; a cluster that moves away is released, not removed
// (issue 22).
func TestGroupMembersPollTheirShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFake(6)
		var mu sync.Mutex
		owner := map[string]string{"c0": "a", "c1": "b", "c2": "a", "c3": "b", "c4": "a", "c5": "b"}
		bAlive := true
		ownerOf := func(id string) string {
			mu.Lock()
			defer mu.Unlock()
			if o := owner[id]; o == "b" && !bAlive {
				return "a"
			}
			return owner[id]
		}
		var pb *Poller
		member := func(id string, sink Sink) *Poller {
			return New(Config{Interval: 10 * time.Second, IdleInterval: 10 * time.Second, OfflineInterval: time.Minute,
				ClustersInterval: 5 * time.Minute, MaintenanceInterval: time.Hour, Jitter: -1,
				Owns:  func(c string) bool { return ownerOf(c) == id },
				Leads: func() bool { return id == "a" },
				OnList: func(list []connect.Cluster) {
					if pb != nil {
						pb.SetClusters(list)
					}
				}}, src, sink, zerolog.Nop())
		}
		ra, rb := &recorder{}, &recorder{}
		pa := member("a", ra)
		pb = member("b", rb)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { pa.Run(ctx) })
		ctxB, cancelB := context.WithCancel(ctx)
		wg.Go(func() { pb.Run(ctxB) })
		time.Sleep(25 * time.Second)
		for i := range 6 {
			id := fmt.Sprintf("c%d", i)
			if n := src.count("status", id); n != 3 {
				t.Errorf("%s polled %d times in 25 s, want 3 (by one member)", id, n)
			}
		}
		if n := src.count("list", ""); n != 1 {
			t.Errorf("the list was read %d times, want once (by the leader)", n)
		}

		// b dies: a polls b's share at once.
		cancelB()
		mu.Lock()
		bAlive = false
		mu.Unlock()
		before := src.count("status", "c1")
		pa.Reshare()
		time.Sleep(time.Second)
		if n := src.count("status", "c1"); n != before+1 {
			t.Errorf("c1 polled %d times within a second of the takeover, want 1", n-before)
		}

		// c0 moves to another member: released, not removed.
		mu.Lock()
		owner["c0"] = "c"
		mu.Unlock()
		pa.Reshare()
		time.Sleep(25 * time.Second)
		cancel()
		wg.Wait()
		var released []string
		for _, u := range ra.all() {
			for _, p := range u.Released {
				released = append(released, p.ClusterID)
			}
			if len(u.RemovedPrinters) > 0 || len(u.RemovedClusters) > 0 {
				t.Errorf("a removed %v %v, want nothing removed", u.RemovedPrinters, u.RemovedClusters)
			}
		}
		if fmt.Sprint(released) != "[c0]" {
			t.Errorf("released %v, want [c0]", released)
		}
		for _, c := range src.calls {
			if c.what == "status" && c.id == "c0" && c.at.After(time.Now().Add(-24*time.Second)) {
				t.Errorf("c0 polled at %v after it moved away", c.at)
			}
		}
	})
}
