package e2e

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
)

// TestPerAttributeTopics: with MQTT_OUTPUT=attribute_and_json every value
// of a state is also retained on its own topic below it, as text or JSON;
// only values that changed are sent; a value that disappears is cleared,
// and so are all of a printer's when it leaves the account; a bridge
// started with MQTT_OUTPUT=json sweeps them away (issue 20).
func TestPerAttributeTopics(t *testing.T) {
	w := fastWorld(t, "attr")
	watch := mqtttest.Watch(t, w.broker.URL(), "attr/#")
	stop, _ := startBridge(t, append(slices.Clone(w.env), "MQTT_OUTPUT=attribute_and_json"))
	lab := "attr/printers/" + labS5 + "/state"
	watch.WaitFor(15*time.Second, "the Lab S5's values", func(m map[string]mqtttest.Message) bool {
		return m[lab+"/extruders/0/brand"].Payload != "" && m[lab+"/job/progress"].Payload != ""
	})
	got := mqtttest.Retained(t, w.broker.URL(), lab+"/#", 300*time.Millisecond)
	var st map[string]any
	json.Unmarshal([]byte(got[lab]), &st)
	if got[lab+"/status"] != st["status"] || got[lab+"/extruders/0/brand"] != "Generic" ||
		got[lab+"/online"] != "true" || got[lab+"/last_job"] != "null" {
		t.Errorf("values: status %q (state %v), brand %q, online %q, last_job %q", got[lab+"/status"], st["status"],
			got[lab+"/extruders/0/brand"], got[lab+"/online"], got[lab+"/last_job"])
	}
	if _, err := strconv.ParseFloat(got[lab+"/job/progress"], 64); err != nil {
		t.Errorf("job/progress %q is not a number", got[lab+"/job/progress"])
	}
	for tp, v := range got {
		if v == "" {
			t.Errorf("%s is retained empty", tp)
		}
	}

	// Changed values only: the brand is sent once however often the
	// state changes meanwhile.
	time.Sleep(3 * time.Second)
	brand, states := 0, 0
	for _, m := range watch.All() {
		switch m.Topic {
		case lab + "/extruders/0/brand":
			brand++
		case lab:
			states++
		}
	}
	if brand != 1 {
		t.Errorf("the unchanged brand was sent %d times (with %d states)", brand, states)
	}

	// A value that disappears: a queued job removed from the farm's queue.
	farm := "attr/clusters/ultimakersystem-ccbdd30044ec/state"
	var queue []struct{ UUID string }
	watch.WaitFor(10*time.Second, "the farm's queue", func(m map[string]mqtttest.Message) bool {
		var c struct{ Queue []struct{ UUID string } }
		json.Unmarshal([]byte(m[farm].Payload), &c)
		queue = c.Queue
		return len(queue) > 0
	})
	last := strconv.Itoa(len(queue) - 1)
	if as := command(t, watch, "attr/clusters/ultimakersystem-ccbdd30044ec/set", "attr/clusters/ultimakersystem-ccbdd30044ec/response",
		`{"action":"remove","job":"`+queue[len(queue)-1].UUID+`","transaction":"r"}`, `"r"`); statuses(as) != "pending,ok" {
		t.Fatalf("remove answered %s", statuses(as))
	}
	watch.WaitFor(15*time.Second, "the removed job's values cleared", func(m map[string]mqtttest.Message) bool {
		msg, ok := m[farm+"/queue/"+last+"/uuid"]
		return ok && msg.Payload == ""
	})

	// A printer that leaves takes all its values along.
	mb := "attr/printers/makerbot-method-x-23a9/state"
	w.sim.RemoveCluster(w.sim.ClusterIDs()[2])
	watch.WaitFor(15*time.Second, "the MakerBot's values cleared", func(m map[string]mqtttest.Message) bool {
		return m[mb+"/status"].Payload == "" && m[mb+"/updated_at"].Payload == "" && m[mb].Payload == ""
	})
	time.Sleep(300 * time.Millisecond)
	for tp := range mqtttest.Retained(t, w.broker.URL(), "attr/#", 300*time.Millisecond) {
		if strings.HasPrefix(tp, mb) {
			t.Errorf("%s is retained after the printer left", tp)
		}
	}

	// Back to MQTT_OUTPUT=json: the stale sweep clears every value topic.
	stop()
	startBridge(t, w.env)
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := 0
		for tp := range mqtttest.Retained(t, w.broker.URL(), "attr/+/+/state/#", 300*time.Millisecond) {
			if strings.Count(tp, "/") > 3 {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d value topics still retained after a restart with MQTT_OUTPUT=json", left)
		}
	}
}
