package render

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// TestFarmView: in a group, the renderer keeps the states the other
// members publish for the whole farm's view, skips its own coming back,
// hands what it released to that view (forgetting what it published
// there), and publishes the bridge's own topics only as the leader.
func TestFarmView(t *testing.T) {
	rec := &recorder{}
	leads := false
	tree := topics.Tree{Base: "u"}
	b := New(tree, rec, Info{Version: "t"}, nil, Options{Leads: func() bool { return leads },
		Group: func() any { return map[string]string{"name": "farm"} }}, zerolog.Nop())
	var seen []string
	b.WatchFarm(func(u poller.Update) {
		for _, p := range u.Printers {
			seen = append(seen, p.ID+"="+p.Status)
		}
		for _, p := range u.RemovedPrinters {
			seen = append(seen, p.ID+" gone")
		}
	})
	ctx := context.Background()
	b.Start(ctx)
	b.Apply(ctx, poller.Update{Printers: []state.Printer{{ID: "mine", Status: "idle"}},
		Stats: &poller.Stats{Clusters: 1, Printers: 1}})
	for _, m := range rec.msgs {
		if m.Topic == tree.BridgeInfo() {
			t.Error("a member that does not lead published bridge/info")
		}
	}

	for _, in := range []bus.Inbound{
		{Topic: tree.PrinterState("theirs"), Payload: []byte(`{"id":"theirs","status":"printing","uuid":"AB-12",` +
			`"cluster_id":"c9"}`)},
		{Topic: tree.PrinterState("mine"), Payload: []byte(`{"id":"mine","status":"stale"}`)}, // our own, back
		{Topic: tree.PrinterState("liar"), Payload: []byte(`{"id":"other"}`)},
		{Topic: tree.PrinterState("junk"), Payload: []byte(`{"id":`)},
		{Topic: tree.PrinterState("big"), Payload: []byte(`{"id":"big"}`), Truncated: true},
		{Topic: tree.ClusterState("farm"), Payload: []byte(`{"id":"farm","printers":["theirs"]}`)},
	} {
		b.Foreign(ctx, in)
	}
	if p, _ := b.Printer("mine"); p.Status != "idle" {
		t.Errorf("own printer %q, want idle (its own state coming back is skipped)", p.Status)
	}
	if p, ok := b.Printer("theirs"); !ok || p.Status != "printing" {
		t.Errorf("the other member's printer: %v %q", ok, p.Status)
	}
	if _, ok := b.Printer("liar"); ok {
		t.Error("a state whose id is not its topic's was kept")
	}
	if c, ok := b.CloudClusterOf("ab-12"); !ok || c != "c9" {
		t.Errorf("cloud cluster of the other member's printer: %q %v, want c9", c, ok)
	}
	if _, ok := b.CloudClusterOf("mine"); ok {
		t.Error("a printer the cloud does not know has a cloud cluster")
	}
	if len(b.Printers()) != 2 || len(b.Clusters()) != 1 {
		t.Errorf("farm view: %d printers, %d clusters; want 2 and 1", len(b.Printers()), len(b.Clusters()))
	}
	if !slices.Equal(seen, []string{"mine=idle", "theirs=printing"}) {
		t.Errorf("farm watchers saw %v", seen)
	}

	// Released: kept in the farm's view, nothing cleared, forgotten.
	rec.msgs = nil
	b.Apply(ctx, poller.Update{Released: []state.Printer{{ID: "mine"}}})
	if _, ok := b.Printer("mine"); !ok {
		t.Error("a released printer left the farm's view")
	}
	for _, m := range rec.msgs {
		t.Errorf("releasing published %s %q", m.Topic, m.Payload)
	}
	if !slices.Contains(rec.forgotten, "u/printers/mine/") {
		t.Errorf("forgotten %v, want the printer's topics", rec.forgotten)
	}
	// Its new owner publishes it now: taken.
	b.Foreign(ctx, bus.Inbound{Topic: tree.PrinterState("mine"), Payload: []byte(`{"id":"mine","status":"printing"}`)})
	if p, _ := b.Printer("mine"); p.Status != "printing" {
		t.Errorf("released printer %q after its new owner published, want printing", p.Status)
	}
	// Gone: cleared by its owner.
	b.Foreign(ctx, bus.Inbound{Topic: tree.PrinterState("theirs")})
	if _, ok := b.Printer("theirs"); ok {
		t.Error("a printer its owner cleared stayed")
	}

	// Leading: the bridge's info, with the group and the farm's counts.
	leads = true
	b.Lead(ctx)
	var info string
	for _, m := range rec.msgs {
		if m.Topic == tree.BridgeInfo() {
			info = string(m.Payload)
		}
	}
	if info == "" || !strings.Contains(info, `"group":{"name":"farm"}`) || !strings.Contains(info, `"printers":1`) {
		t.Errorf("bridge/info %s", info)
	}
}
