package e2e

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
)

func discoveryTopics(t *testing.T, url string) map[string]string {
	t.Helper()
	got := mqtttest.Retained(t, url, "homeassistant/#", 300*time.Millisecond)
	delete(got, "homeassistant/device/other_vendor_thing/config")
	return got
}

func TestHomeAssistantLifecycle(t *testing.T) {
	w := newWorld(t, "ha")
	seed := mqtttest.Watch(t, w.broker.URL(), "seed/none")
	// Left over from an earlier run: a printer that is gone. And another
	// integration's device that must never be touched.
	seed.Publish("homeassistant/device/ultimaker2mqtt_ha_printer_ghost/config", `{"device":{}}`, true)
	seed.Publish("ha/printers/ghost/state", `{"status":"idle"}`, true)
	seed.Publish("ha/printers/ghost/availability", `online`, true)
	seed.Publish("homeassistant/device/other_vendor_thing/config", `{"device":{}}`, true)

	env := append(slices.Clone(w.env), "HA_BIRTH_DELAY=300ms")
	stop, _ := startBridge(t, env)
	watch := mqtttest.Watch(t, w.broker.URL(), "#")
	devices := []string{"ultimakersystem-4b0fc38e95e3", "ultimakersystem-ccbdd30044ec", "ultimakersystem-ccbdd3005a11",
		"ultimakersystem-ccbdd3007c42", "makerbot-method-x-23a9", "ultimakersystem-0030d6123abc"}
	var want []string
	for _, d := range devices {
		want = append(want, "homeassistant/device/ultimaker2mqtt_ha_printer_"+d+"/config")
	}
	want = append(want, "homeassistant/device/ultimaker2mqtt_ha_cluster_ultimakersystem-ccbdd30044ec/config",
		"homeassistant/device/ultimaker2mqtt_ha_bridge/config")
	watch.WaitFor(10*time.Second, "every device config", func(m map[string]mqtttest.Message) bool { return hasAll(m, want) })

	// The stale sweep clears the ghost and leaves the other vendor alone.
	watch.WaitFor(10*time.Second, "ghost cleared", func(m map[string]mqtttest.Message) bool {
		for _, tp := range []string{"homeassistant/device/ultimaker2mqtt_ha_printer_ghost/config", "ha/printers/ghost/state", "ha/printers/ghost/availability"} {
			if msg, ok := m[tp]; !ok || msg.Payload != "" {
				return false
			}
		}
		return true
	})
	all := mqtttest.Retained(t, w.broker.URL(), "#", 300*time.Millisecond)
	if _, ok := all["homeassistant/device/other_vendor_thing/config"]; !ok {
		t.Fatal("the sweep removed another integration's device")
	}
	for tp := range all {
		if strings.Contains(tp, "ghost") {
			t.Errorf("%s survived the sweep", tp)
		}
	}

	// Home Assistant restarts: after its birth message, every config and
	// every state comes again (configs first: see mqttpub's
	// TestRepublishOrder).
	time.Sleep(500 * time.Millisecond)
	watch.Reset()
	watch.Publish("homeassistant/status", "online", false)
	states := []string{}
	for _, d := range devices {
		states = append(states, "ha/printers/"+d+"/state")
	}
	watch.WaitFor(10*time.Second, "republish after birth", func(m map[string]mqtttest.Message) bool {
		return hasAll(m, want) && hasAll(m, states)
	})
	// A restart of the bridge republishes the same topics with the same
	// payloads: no duplicates, nothing new.
	before := discoveryTopics(t, w.broker.URL())
	if err, _ := stop(); err != nil {
		t.Fatal(err)
	}
	startBridge(t, env)
	time.Sleep(3 * time.Second) // two poll rounds and the sweep
	after := discoveryTopics(t, w.broker.URL())
	if !slices.Equal(slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after))) {
		t.Errorf("discovery topics changed across a restart:\nbefore %v\nafter  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	for tp, p := range before {
		if after[tp] != p {
			t.Errorf("%s payload changed across a restart", tp)
		}
	}

	// A printer leaves the account: its device and its topics go.
	watch.Reset()
	w.sim.RemoveCluster(w.sim.ClusterIDs()[2]) // the MakerBot
	gone := []string{"homeassistant/device/ultimaker2mqtt_ha_printer_makerbot-method-x-23a9/config",
		"ha/printers/makerbot-method-x-23a9/state", "ha/printers/makerbot-method-x-23a9/availability",
		"ha/clusters/makerbot-method-x-23a9/state"}
	watch.WaitFor(10*time.Second, "makerbot removed", func(m map[string]mqtttest.Message) bool {
		for _, tp := range gone {
			if msg, ok := m[tp]; !ok || msg.Payload != "" {
				return false
			}
		}
		return true
	})
}

func TestHADiscoveryOff(t *testing.T) {
	w := newWorld(t, "nodisc")
	startBridge(t, append(slices.Clone(w.env), "HA_DISCOVERY=false"))
	watch := mqtttest.Watch(t, w.broker.URL(), "nodisc/#")
	watch.WaitFor(10*time.Second, "states", func(m map[string]mqtttest.Message) bool { return hasAll(m, expectedTopics("nodisc")) })
	if got := mqtttest.Retained(t, w.broker.URL(), "homeassistant/#", 300*time.Millisecond); len(got) != 0 {
		t.Errorf("HA_DISCOVERY=false still published %d configs", len(got))
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	w := newWorld(t, "bye")
	stop, _ := startBridge(t, w.env)
	watch := mqtttest.Watch(t, w.broker.URL(), "#")
	watch.Publish("homeassistant/device/other_vendor_thing/config", `{"device":{}}`, true)
	watch.WaitFor(10*time.Second, "bridge running", func(m map[string]mqtttest.Message) bool {
		return hasAll(m, expectedTopics("bye")) && m["homeassistant/device/ultimaker2mqtt_bye_bridge/config"].Payload != ""
	})
	// While the bridge is online cleanup refuses (issue 9.18).
	err := cli(context.Background(), w.env, nil, nil, "cleanup")
	if err == nil || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("cleanup while the bridge runs: %v", err)
	}
	if got := mqtttest.Retained(t, w.broker.URL(), "bye/bridge/info", 200*time.Millisecond); len(got) != 1 {
		t.Fatalf("a refused cleanup cleared topics")
	}
	if err := cli(context.Background(), w.env, nil, nil, "cleanup", "-force"); err != nil {
		t.Fatalf("cleanup -force: %v", err)
	}
	if err, _ := stop(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cli(context.Background(), w.env, nil, &out, "cleanup"); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	left := mqtttest.Retained(t, w.broker.URL(), "#", 300*time.Millisecond)
	if len(left) != 1 || left["homeassistant/device/other_vendor_thing/config"] == "" {
		t.Errorf("after cleanup the broker holds %v; want only the other vendor's device", slices.Sorted(maps.Keys(left)))
	}
	if !strings.Contains(out.String(), "cleared") {
		t.Errorf("cleanup said %q", out.String())
	}
}
