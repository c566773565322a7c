package merge

import (
	"context"
	"testing"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// recorder is the renderer's stand-in: it keeps every update.
type recorder struct{ got []poller.Update }

func (r *recorder) Apply(_ context.Context, u poller.Update) { r.got = append(r.got, u) }

func (r *recorder) last() poller.Update { return r.got[len(r.got)-1] }

func f(v float64) *float64 { return &v }

func printer(source, status string, job string) state.Printer {
	p := state.Printer{ID: "p1", Cluster: "p1", FriendlyName: "Lab", Status: status, PrinterStatus: status, Online: true,
		Source: source, Extruders: []state.Extruder{{Index: 0, Material: "PLA"}}}
	if source == state.SourceLocal {
		p.Extruders = []state.Extruder{{Index: 0, HotendTemperature: f(215), HotendTarget: f(215)}}
		p.Camera = &state.Camera{SnapshotURL: "http://lan/snap"}
	} else {
		p.ClusterID = "cloud-id"
		p.Firmware = state.Firmware{Version: "8.2.0", Latest: "8.3.0"}
	}
	if job != "" {
		p.Job = &state.Job{UUID: "j1", Name: "part", Status: job}
	}
	return p
}

func TestMerger(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		steps func(m *Merger)
		check func(t *testing.T, r *recorder)
	}{
		{"LAN feeds live fields, cloud the rest", func(m *Merger) {
			m.Cloud().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceCloud, "printing", "printing")}})
			m.Local().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceLocal, "paused", "paused")}})
		}, func(t *testing.T, r *recorder) {
			p := r.last().Printers[0]
			if p.Source != state.SourceBoth || p.Status != "paused" || p.Job.Status != "paused" || p.Firmware.Latest != "8.3.0" ||
				p.Extruders[0].Material != "PLA" || *p.Extruders[0].HotendTemperature != 215 || p.Camera == nil || p.ClusterID != "cloud-id" {
				t.Errorf("merged %+v", p)
			}
			if ev := r.last().Events; len(ev) != 1 || ev[0].Type != state.PrintPaused {
				t.Errorf("events %+v; want one print_paused", ev)
			}
		}},
		{"a later cloud poll does not undo the LAN's live fields", func(m *Merger) {
			m.Local().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceLocal, "paused", "paused")}})
			m.Cloud().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceCloud, "printing", "printing")}})
			m.Cloud().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceCloud, "printing", "printing")}})
		}, func(t *testing.T, r *recorder) {
			if len(r.got) != 2 {
				t.Fatalf("%d updates; want 2 (the repeated cloud poll changes nothing)", len(r.got))
			}
			if p := r.last().Printers[0]; p.Status != "paused" {
				t.Errorf("status %q after a cloud poll", p.Status)
			}
			if ev := r.last().Events; len(ev) != 0 {
				t.Errorf("events %+v from the cloud's stale status", ev)
			}
		}},
		{"a printer released to another member of the group is passed on when neither side keeps it", func(m *Merger) {
			cloud := printer(state.SourceCloud, "printing", "printing")
			m.Cloud().Apply(ctx, poller.Update{Printers: []state.Printer{cloud}})
			m.Local().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceLocal, "printing", "printing")}})
			m.Cloud().Apply(ctx, poller.Update{Released: []state.Printer{cloud}})
			m.Local().Apply(ctx, poller.Update{Released: []state.Printer{printer(state.SourceLocal, "printing", "")},
				ReleasedClusters: []state.Cluster{{ID: "p1"}}})
		}, func(t *testing.T, r *recorder) {
			if n := len(r.got); n != 4 {
				t.Fatalf("%d updates, want 4", n)
			}
			if u := r.got[2]; len(u.Released) != 0 || len(u.Printers) != 1 || u.Printers[0].Source != state.SourceLocal {
				t.Errorf("cloud side released, LAN still reads it: %+v; want the LAN's state alone", u)
			}
			if u := r.last(); len(u.Released) != 1 || u.Released[0].ID != "p1" || len(u.ReleasedClusters) != 1 {
				t.Errorf("both sides released: %+v; want the printer and its cluster passed on", u)
			}
		}},
		{"an offline LAN printer leaves the cloud's view", func(m *Merger) {
			m.Cloud().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceCloud, "printing", "printing")}})
			off := printer(state.SourceLocal, "offline", "")
			off.Online = false
			m.Local().Apply(ctx, poller.Update{Printers: []state.Printer{off}})
		}, func(t *testing.T, r *recorder) {
			if len(r.got) != 1 {
				t.Fatalf("%d updates; the offline LAN reading changed the state", len(r.got))
			}
		}},
		{"leaving the cloud keeps the LAN's state", func(m *Merger) {
			c := printer(state.SourceCloud, "printing", "printing")
			m.Cloud().Apply(ctx, poller.Update{Printers: []state.Printer{c}})
			m.Local().Apply(ctx, poller.Update{Printers: []state.Printer{printer(state.SourceLocal, "printing", "printing")}})
			m.Cloud().Apply(ctx, poller.Update{RemovedPrinters: []state.Printer{c}})
		}, func(t *testing.T, r *recorder) {
			u := r.last()
			if len(u.RemovedPrinters) != 0 || len(u.Printers) != 1 || u.Printers[0].Source != state.SourceLocal {
				t.Errorf("update %+v; want the LAN's state, nothing removed", u)
			}
		}},
		{"clusters leaving the cloud keep the LAN's state, each of them", func(m *Merger) {
			for _, id := range []string{"a", "b"} {
				m.Cloud().Apply(ctx, poller.Update{Cluster: &state.Cluster{ID: id, ClusterID: "cloud-" + id}})
				m.Local().Apply(ctx, poller.Update{Cluster: &state.Cluster{ID: id, FriendlyName: "lan-" + id}})
			}
			m.Cloud().Apply(ctx, poller.Update{RemovedClusters: []state.Cluster{{ID: "a"}, {ID: "b"}}})
		}, func(t *testing.T, r *recorder) {
			shown := map[string]string{}
			for _, u := range r.got[2:] {
				if u.Cluster != nil {
					shown[u.Cluster.ID] = u.Cluster.FriendlyName
				}
				if len(u.RemovedClusters) > 0 {
					t.Errorf("removed %+v; the LAN still sees them", u.RemovedClusters)
				}
			}
			if shown["a"] != "lan-a" || shown["b"] != "lan-b" {
				t.Errorf("shown %v; want both LAN clusters", shown)
			}
		}},
		{"the cloud's cluster wins", func(m *Merger) {
			m.Cloud().Apply(ctx, poller.Update{Cluster: &state.Cluster{ID: "p1", ClusterID: "cloud-id", Note: "cloud"}})
			m.Local().Apply(ctx, poller.Update{Cluster: &state.Cluster{ID: "p1", FriendlyName: "lan"}})
		}, func(t *testing.T, r *recorder) {
			if len(r.got) != 1 || r.got[0].Cluster.Note != "cloud" {
				t.Errorf("updates %+v", r.got)
			}
		}},
		{"stats wait for both sources", func(m *Merger) {
			m.Cloud().Apply(ctx, poller.Update{Stats: &poller.Stats{Ready: true, CloudReachable: true}})
			m.Local().Apply(ctx, poller.Update{Stats: &poller.Stats{Ready: false, LocalPrinters: 2}})
			m.Local().Apply(ctx, poller.Update{Stats: &poller.Stats{Ready: true, LocalPrinters: 2, LocalAnswering: 1}})
		}, func(t *testing.T, r *recorder) {
			if r.got[0].Stats.Ready || r.got[1].Stats.Ready || !r.got[2].Stats.Ready || !r.got[2].Stats.CloudReachable ||
				r.got[2].Stats.LocalAnswering != 1 {
				t.Errorf("stats %+v %+v %+v", r.got[0].Stats, r.got[1].Stats, r.got[2].Stats)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			m := New(r)
			tc.steps(m)
			tc.check(t, r)
		})
	}
}
