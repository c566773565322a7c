//go:build !race

package main

// The demo's embedded broker (mochi-mqtt v2.7.9) reads and writes its
// retained-message index without a lock when a client subscribes while
// another publishes retained messages (mochi-mqtt/server#200), which the
// race detector reports as a race in mochi, not in us. test.sh runs these
// tests in a second pass without -race.

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
)

func TestDemo(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	var stdout syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"ultimaker2mqtt", "demo"}, []string{"DEMO_MQTT_LISTEN=" + addr, "POLL_INTERVAL=1s"}, &stdout, &syncBuffer{})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo returned %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("demo broker never listened")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		got := mqtttest.Retained(t, "tcp://"+addr, "ultimaker/#", 300*time.Millisecond)
		if hasAllStrings(got, demoTopics) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo broker holds %d topics: %v", len(got), got)
		}
	}
	out := stdout.String()
	if !strings.Contains(out, "mosquitto_sub -h 127.0.0.1") || !strings.Contains(out, "Lab-S5-1") {
		t.Errorf("demo output:\n%s", out)
	}
	// The Lab S5 and the farm's host answer on the demo's LAN: one merged
	// state each, and the Lab S5 pairs with the command the demo prints
	// (its screen says ALLOW after 5 s).
	watch := mqtttest.Watch(t, "tcp://"+addr, "ultimaker/#")
	for _, p := range demoLANPrinters {
		watch.WaitFor(15*time.Second, p+" merged", func(m map[string]mqtttest.Message) bool {
			var st struct{ Source string }
			return json.Unmarshal([]byte(m["ultimaker/printers/"+p+"/state"].Payload), &st) == nil && st.Source == "cloud+local"
		})
	}
	labS5 := demoLANPrinters[0]
	if !strings.Contains(out, `/bridge/request/pair' -m '{"printer": "`+labS5+`"}'`) {
		t.Errorf("the demo does not say how to pair:\n%s", out)
	}
	watch.Publish("ultimaker/bridge/request/pair", `{"printer":"`+labS5+`","transaction":"demo"}`, false)
	var answers []string
	watch.WaitFor(20*time.Second, "pairing answered", func(map[string]mqtttest.Message) bool {
		answers = answers[:0]
		for _, m := range watch.All() {
			var a struct{ Status, Transaction string }
			if m.Topic == "ultimaker/bridge/response/pair" && json.Unmarshal([]byte(m.Payload), &a) == nil && a.Transaction == "demo" {
				answers = append(answers, a.Status)
			}
		}
		return len(answers) > 0 && answers[len(answers)-1] != "pending"
	})
	if got := strings.Join(answers, ","); got != "pending,ok" {
		t.Errorf("pairing in the demo answered %s", got)
	}
}

// demoTopics are retained topics the demo's world must produce.
var demoTopics = []string{"ultimaker/bridge/state", "ultimaker/bridge/info",
	"ultimaker/printers/ultimakersystem-4b0fc38e95e3/state", "ultimaker/printers/ultimakersystem-ccbdd3005a11/state",
	"ultimaker/printers/makerbot-method-x-23a9/state", "ultimaker/printers/ultimakersystem-0030d6123abc/availability",
	"ultimaker/clusters/ultimakersystem-ccbdd30044ec/state"}

func hasAllStrings(m map[string]string, topics []string) bool {
	for _, tp := range topics {
		if m[tp] == "" {
			return false
		}
	}
	return true
}

func TestDemoPortBusy(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"ultimaker2mqtt", "demo"}, []string{"DEMO_MQTT_LISTEN=" + ln.Addr().String()}, &bytes.Buffer{}, &stderr)
	if code := exitCode(err, &stderr); code != 2 || !strings.Contains(stderr.String(), "DEMO_MQTT_LISTEN") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}
