package topics

import (
	"regexp"
	"strings"
	"testing"
)

func TestSegment(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"UniqueName", "ultimakersystem-ccbdd30044ec", "ultimakersystem-ccbdd30044ec"},
		{"Upper", "UltimakerSystem-CCBDD", "ultimakersystem-ccbdd"},
		{"Wildcards", "a+b#c/d", "a_b_c_d"},
		{"Spaces", " Lab S5 ", "lab_s5"},
		{"Unicode", "Drucker-Ü", "drucker-_"},
		{"Base64", "Qm9v+dGlm/dWw=", "qm9v_dglm_dww_"},
		{"Empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Segment(tt.in); got != tt.want {
				t.Errorf("Segment(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidBase(t *testing.T) {
	for base, want := range map[string]bool{
		"ultimaker": true, "site/ultimaker": true, "": false, "a/#": false, "a/+/b": false,
		"/a": false, "a/": false, "a//b": false, "$SYS": false,
	} {
		if got := ValidBase(base); got != want {
			t.Errorf("ValidBase(%q) = %v, want %v", base, got, want)
		}
	}
}

func TestTree(t *testing.T) {
	tr := Tree{Base: "u"}
	for got, want := range map[string]string{
		tr.BridgeState(): "u/bridge/state", tr.BridgeInfo(): "u/bridge/info", tr.BridgeEvent(): "u/bridge/event",
		tr.BridgeRequest("refresh"): "u/bridge/request/refresh", tr.BridgeResponse("refresh"): "u/bridge/response/refresh",
		tr.PrinterState("p"): "u/printers/p/state", tr.PrinterAvailability("p"): "u/printers/p/availability",
		tr.PrinterEvent("p"): "u/printers/p/event", tr.PrinterSet("p"): "u/printers/p/set", tr.PrinterResponse("p"): "u/printers/p/response",
		tr.ClusterState("c"): "u/clusters/c/state", tr.ClusterAvailability("c"): "u/clusters/c/availability",
		tr.ClusterSet("c"): "u/clusters/c/set", tr.ClusterResponse("c"): "u/clusters/c/response",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

var safe = regexp.MustCompile(`^[a-z0-9_-]*$`)

func FuzzSegment(f *testing.F) {
	for _, s := range []string{"ultimakersystem-1", "A+B#/", "\x00\xff", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := Segment(s); !safe.MatchString(got) {
			t.Fatalf("Segment(%q) = %q has unsafe characters", s, got)
		}
	})
}

// TestWalkTheTree builds every topic of the tree and parses it back: the
// grammar is one, in both directions.
func TestWalkTheTree(t *testing.T) {
	tr := Tree{Base: "site/u"}
	var all []Address
	for _, v := range printerVerbs {
		all = append(all, Address{Kind: Printer, ID: "ultimakersystem-ccbdd30044ec", Verb: v})
	}
	for _, v := range clusterVerbs {
		all = append(all, Address{Kind: Cluster, ID: "farm", Verb: v})
	}
	for _, v := range bridgeVerbs {
		all = append(all, Address{Kind: Bridge, Verb: v})
	}
	for _, v := range workspaceVerb {
		all = append(all, Address{Kind: Workspace, Verb: v})
	}
	for _, v := range bridgeIDVerb {
		all = append(all, Address{Kind: Bridge, ID: "refresh", Verb: v})
	}
	for _, a := range all {
		topic := tr.Topic(a)
		got, ok := tr.Parse(topic)
		if !ok || got != a {
			t.Errorf("%+v -> %s -> %+v, %v", a, topic, got, ok)
		}
	}
	for _, bad := range []string{"other/printers/p/state", "site/u/printers/p", "site/u/printers//state", "site/u/printers/p/nope",
		"site/u/bridge/request", "site/u/clusters/c/event", "site/u/bridge/x", "site/u/printers/p/event/x"} {
		if a, ok := tr.Parse(bad); ok {
			t.Errorf("Parse(%q) = %+v, want no", bad, a)
		}
	}
	for _, f := range append(tr.CommandFilters(), tr.DeviceFilters()...) {
		if !strings.HasPrefix(f, "site/u/") {
			t.Errorf("filter %s outside the base", f)
		}
	}
	if got := tr.Retained(Printer, "p"); strings.Join(got, " ") != "site/u/printers/p/state site/u/printers/p/availability site/u/printers/p/preview site/u/printers/p/snapshot site/u/printers/p/picture site/u/printers/p/camera site/u/printers/p/statistics" {
		t.Errorf("printer retained topics %v", got)
	}
	a, _ := tr.Parse(tr.PrinterSet("p"))
	if tr.ResponseTo(a) != tr.PrinterResponse("p") || !IsRetained(Address{Kind: Cluster, Verb: State}) || IsRetained(a) {
		t.Errorf("ResponseTo or IsRetained wrong")
	}
}

// TestStateLeaves: a value below a state topic parses to the state's
// address and its path, and is built back the same.
func TestStateLeaves(t *testing.T) {
	tr := Tree{Base: "site/u"}
	tests := []struct {
		topic string
		want  Address
	}{
		{"site/u/printers/p/state/job/progress", Address{Kind: Printer, ID: "p", Verb: State, Leaf: "job/progress"}},
		{"site/u/printers/p/state/extruders/0/material/brand", Address{Kind: Printer, ID: "p", Verb: State, Leaf: "extruders/0/material/brand"}},
		{"site/u/clusters/c/state/queue/1/name", Address{Kind: Cluster, ID: "c", Verb: State, Leaf: "queue/1/name"}},
		{"site/u/workspace/state/settings/enable_print_prep", Address{Kind: Workspace, Verb: State, Leaf: "settings/enable_print_prep"}},
	}
	for _, tt := range tests {
		got, ok := tr.Parse(tt.topic)
		if !ok || got != tt.want {
			t.Errorf("Parse(%s) = %+v, %v; want %+v", tt.topic, got, ok, tt.want)
		}
		if back := tr.Topic(got); back != tt.topic {
			t.Errorf("Topic(%+v) = %s", got, back)
		}
		if got.Kind != Workspace && !IsRetained(got) {
			t.Errorf("%s is not retained", tt.topic)
		}
	}
	for _, bad := range []string{"site/u/printers/p/set/x", "site/u/printers/p/state//x", "site/u/bridge/state/x"} {
		if a, ok := tr.Parse(bad); ok {
			t.Errorf("Parse(%s) = %+v, want no match", bad, a)
		}
	}
}
