package render

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	msgs      []bus.Message
	forgotten []string
}

func (r *recorder) Publish(_ context.Context, msgs ...bus.Message) error {
	r.msgs = append(r.msgs, msgs...)
	return nil
}

func (r *recorder) Republish(context.Context, ...string) error { return nil }
func (r *recorder) Forget(prefixes ...string)                  { r.forgotten = append(r.forgotten, prefixes...) }

var _ Publisher = (*recorder)(nil)

func TestApply(t *testing.T) {
	rec := &recorder{}
	b := New(topics.Tree{Base: "u"}, rec, Info{Version: "1.2.3", Auth: "api_token"}, nil, Options{}, zerolog.Nop())
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	last := now
	// Events are of printers published before: a printer's first state
	// is not news.
	b.Apply(context.Background(), poller.Update{Printers: []state.Printer{{ID: "p1", Online: true, Status: "printing"}}})
	rec.msgs = nil
	b.Apply(context.Background(), poller.Update{
		Printers:        []state.Printer{{ID: "p1", Online: true, Status: "idle"}, {ID: "p2", Online: false, Status: "offline"}},
		Cluster:         &state.Cluster{ID: "c1", Online: true},
		RemovedPrinters: []state.Printer{{ID: "gone"}},
		RemovedClusters: []state.Cluster{{ID: "gonec"}},
		Events:          []state.Event{{Type: state.PrintFinished, Printer: "p1", Time: now}},
		Stats:           &poller.Stats{Clusters: 1, Printers: 2, LastPoll: &last},
	})
	got := map[string]bus.Message{}
	var order []string
	for _, m := range rec.msgs {
		got[m.Topic+map[bool]string{true: "", false: "#"}[m.Retain]] = m
		order = append(order, m.Topic)
	}
	want := map[string]string{
		"u/printers/p1/availability": "online", "u/printers/p2/availability": "offline", "u/clusters/c1/availability": "online",
		"u/printers/gone/state": "", "u/printers/gone/availability": "", "u/clusters/gonec/state": "", "u/clusters/gonec/availability": "",
	}
	for topic, payload := range want {
		m, ok := got[topic]
		if !ok || string(m.Payload) != payload || !m.Retain {
			t.Errorf("%s = %q retained=%v (present %v), want %q retained", topic, m.Payload, m.Retain, ok, payload)
		}
	}
	var p1 state.Printer
	if err := json.Unmarshal(got["u/printers/p1/state"].Payload, &p1); err != nil || p1.ID != "p1" {
		t.Errorf("printer state %s: %v", got["u/printers/p1/state"].Payload, err)
	}
	for _, topic := range []string{"u/printers/p1/event#", "u/bridge/event#"} {
		var e state.Event
		if m, ok := got[topic]; !ok || json.Unmarshal(m.Payload, &e) != nil || e.Type != "print_finished" {
			t.Errorf("%s missing or wrong (events are not retained): %+v", topic, m)
		}
	}
	var info map[string]any
	if err := json.Unmarshal(got["u/bridge/info"].Payload, &info); err != nil {
		t.Fatal(err)
	}
	if info["version"] != "1.2.3" || info["printers"] != 2.0 || info["last_poll"] != "2026-01-02T03:04:05Z" || info["auth"] != "api_token" {
		t.Errorf("info = %v", info)
	}
	// Removals go first, so a printer that moved clusters is not cleared
	// after its new state.
	if slices.Index(order, "u/printers/gone/state") > slices.Index(order, "u/printers/p1/state") {
		t.Errorf("removals after states: %v", order)
	}
}

func TestPrinterChanges(t *testing.T) {
	var lines []string
	pc := &PrinterChanges{Next: New(topics.Tree{Base: "u"}, &recorder{}, Info{}, nil, Options{}, zerolog.Nop()),
		OnChange: func(p state.Printer, prev string) { lines = append(lines, prev+">"+p.Status) }}
	for _, s := range []string{"idle", "idle", "printing", "printing", "paused"} {
		pc.Apply(context.Background(), poller.Update{Printers: []state.Printer{{ID: "p", Status: s}}})
	}
	if want := []string{">idle", "idle>printing", "printing>paused"}; !slices.Equal(lines, want) {
		t.Errorf("changes %v, want %v", lines, want)
	}
}

func TestDiscoveryRenderedOnlyWhenItChanges(t *testing.T) {
	rec := &recorder{}
	tree := topics.Tree{Base: "u"}
	b := New(tree, rec, Info{}, &discovery.Config{Prefix: "ha", Tree: tree}, Options{}, zerolog.Nop())
	p := state.Printer{ID: "p1", FriendlyName: "Lab", Job: &state.Job{Progress: 10}}
	configs := func() int {
		n := 0
		for _, m := range rec.msgs {
			if m.Topic == "ha/device/ultimaker2mqtt_u_printer_p1/config" {
				n++
			}
		}
		return n
	}
	b.Apply(context.Background(), poller.Update{Printers: []state.Printer{p}})
	p.Job = &state.Job{Progress: 20} // a poll later: progress only
	b.Apply(context.Background(), poller.Update{Printers: []state.Printer{p}})
	if n := configs(); n != 1 {
		t.Errorf("config published %d times for one config, want 1", n)
	}
	p.FriendlyName = "Lab 2" // a rename changes the device name
	b.Apply(context.Background(), poller.Update{Printers: []state.Printer{p}})
	if n := configs(); n != 2 {
		t.Errorf("rename: config published %d times, want 2", n)
	}
}

// safeRecorder is a recorder for a Renderer whose Run publishes too.
type safeRecorder struct {
	mu sync.Mutex
	recorder
}

func (r *safeRecorder) Publish(ctx context.Context, msgs ...bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recorder.Publish(ctx, msgs...)
}

func (r *safeRecorder) configs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, m := range r.msgs {
		if strings.HasPrefix(m.Topic, "ha/device/") && len(m.Payload) > 0 {
			out[m.Topic]++
		}
	}
	return out
}

// TestConfigsArePaced: with ConfigsPerSecond the device configs go out at
// that pace from Run, states at once; a config replaced before it went out
// goes out once, and a device removed meanwhile not at all (issue 13).
func TestConfigsArePaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &safeRecorder{}
		tree := topics.Tree{Base: "u"}
		b := New(tree, rec, Info{}, &discovery.Config{Prefix: "ha", Tree: tree}, Options{ConfigsPerSecond: 20}, zerolog.Nop())
		var ps []state.Printer
		for i := range 10 {
			ps = append(ps, state.Printer{ID: fmt.Sprintf("p%d", i), FriendlyName: "P"})
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.Apply(ctx, poller.Update{Printers: ps})
		if n := len(rec.configs()); n != 0 {
			t.Fatalf("%d configs published with the update, want them paced", n)
		}
		ps[9].FriendlyName = "renamed"
		b.Apply(ctx, poller.Update{Printers: ps[9:], RemovedPrinters: ps[8:9]})
		go b.Run(ctx)
		time.Sleep(250 * time.Millisecond)
		if n := len(rec.configs()); n != 4 {
			t.Errorf("%d configs after 250 ms at 20/s, want 4", n)
		}
		time.Sleep(time.Second)
		got := rec.configs()
		if len(got) != 9 || got["ha/device/ultimaker2mqtt_u_printer_p8/config"] != 0 || got["ha/device/ultimaker2mqtt_u_printer_p9/config"] != 1 {
			t.Errorf("configs %v: want 9, p8 (removed) none, p9 once", got)
		}
	})
}

// TestRetainedRenewsWhatWasPublished: for every message published as
// Renewable, Retained gives the same payload again (the publisher keeps
// only its sum and republishes from it), and nothing once the device is
// gone.
func TestRetainedRenewsWhatWasPublished(t *testing.T) {
	rec := &recorder{}
	tree := topics.Tree{Base: "u"}
	disc := &discovery.Config{Prefix: "ha", Tree: tree, Buttons: []string{"pause"}, Controls: []string{"note"}}
	b := New(tree, rec, Info{}, disc, Options{}, zerolog.Nop())
	ctx := context.Background()
	b.Start(ctx)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	group := state.Cluster{ID: "g", ClusterID: "cg", Online: true, Printers: []string{"p1", "p2"}, UpdatedAt: now}
	b.Apply(ctx, poller.Update{Cluster: &group, Printers: []state.Printer{
		{ID: "p1", Cluster: "g", Online: true, Status: "printing", UpdatedAt: now,
			Job: &state.Job{UUID: "j", Name: "benchy", Status: "printing"}},
		{ID: "p2", Cluster: "g", Online: true, Status: "idle", UpdatedAt: now}}})
	single := state.Cluster{ID: "s", ClusterID: "cs", Online: true, Printers: []string{"p3"}, UpdatedAt: now}
	b.Apply(ctx, poller.Update{Cluster: &single, Printers: []state.Printer{{ID: "p3", Cluster: "s", UpdatedAt: now}}})
	last := map[string]bus.Message{}
	for _, m := range rec.msgs {
		last[m.Topic] = m
	}
	renewable := 0
	for topic, m := range last {
		if !m.Renewable {
			if strings.HasSuffix(topic, "/state") && !strings.HasPrefix(topic, "u/bridge") || strings.HasPrefix(topic, "ha/") {
				t.Errorf("%s published without Renewable", topic)
			}
			continue
		}
		renewable++
		got, ok := b.Retained(topic)
		if !ok || string(got) != string(m.Payload) {
			t.Errorf("Retained(%s) = %v\n%s\nwant what was published\n%s", topic, ok, got, m.Payload)
		}
	}
	// Bridge, workspace, a group and three printers: configs and states.
	if renewable != 2+1+3+2+3 {
		t.Errorf("%d renewable topics, want 11", renewable)
	}
	b.Apply(ctx, poller.Update{RemovedPrinters: []state.Printer{{ID: "p3"}}, RemovedClusters: []state.Cluster{single}})
	for _, topic := range []string{"u/printers/p3/state", "u/clusters/s/state", disc.DeviceTopic(disc.PrinterObjectID("p3"))} {
		if got, ok := b.Retained(topic); ok {
			t.Errorf("Retained(%s) after removal = %s", topic, got)
		}
	}
	if _, ok := b.Retained("u/printers/p1/availability"); ok {
		t.Errorf("Retained answers for a topic it does not renew")
	}
}
