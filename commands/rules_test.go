package commands

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// oneJob is a State with one online printer whose job has a status.
type oneJob struct{ status string }

func (o oneJob) Printer(id string) (state.Printer, bool) {
	return state.Printer{ID: id, UUID: "u", ClusterID: "cid", Online: true, Job: &state.Job{UUID: "j", Status: o.status}}, true
}
func (oneJob) Cluster(string) (state.Cluster, bool) { return state.Cluster{}, false }

// TestButtonsMatchTheHandler: in every job status, Home Assistant offers
// a pause, resume or abort button exactly when the command handler
// accepts that command (issue 10: one place for each rule).
func TestButtonsMatchTheHandler(t *testing.T) {
	tree := topics.Tree{Base: "u"}
	disc := discovery.Config{Prefix: "homeassistant", Tree: tree, Buttons: []string{"pause", "resume", "abort"}}
	var cfg struct {
		Components map[string]struct {
			Availability []struct {
				ValueTemplate string `json:"value_template"`
			} `json:"availability"`
		} `json:"components"`
	}
	full, err := discovery.Expand(disc.Printer(state.Printer{ID: "p", UUID: "u"}, false).Payload)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(full)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	list := regexp.MustCompile(`value_json\.job\.status in \[([^\]]*)\]`)
	statuses := append(slices.Clone(discovery.JobStatuses), "wait_approval", "sending", "some_future_status")
	for _, action := range []string{"pause", "resume", "abort"} {
		var shown []string
		for _, av := range cfg.Components["button_"+action].Availability {
			if m := list.FindStringSubmatch(av.ValueTemplate); m != nil {
				for _, q := range strings.Split(m[1], ",") {
					shown = append(shown, strings.Trim(strings.TrimSpace(q), "'"))
				}
			}
		}
		if len(shown) == 0 {
			t.Fatalf("button %s has no job status condition", action)
		}
		for _, st := range statuses {
			out := &answers{note: make(chan struct{}, 1)}
			// The state never shows the action's effect: a short timeout
			// ends the wait for it.
			h := New(Config{Tree: tree, PollEvery: time.Millisecond, Timeout: 50 * time.Millisecond}, &fakeCloud{}, oneJob{st}, out,
				&refreshes{}, zerolog.Nop())
			h.Handle(context.Background(), bus.Inbound{Topic: tree.PrinterSet("p"), Payload: []byte(action)})
			h.Wait()
			accepted := !strings.Contains(string(out.msgs[0].Payload), `"conflict"`)
			if accepted != slices.Contains(shown, st) {
				t.Errorf("%s while %s: the handler accepts it: %v; HA shows the button: %v", action, st, accepted, slices.Contains(shown, st))
			}
		}
	}
}
