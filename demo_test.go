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
		if hasAllStrings(got, expectedTopics("ultimaker")) {
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
	for _, p := range []string{labS5, farmHost} {
		watch.WaitFor(15*time.Second, p+" merged", func(m map[string]mqtttest.Message) bool {
			st, ok := stateOf(t, m, "ultimaker/printers/"+p+"/state")
			return ok && st.Source == "cloud+local"
		})
	}
	if !strings.Contains(out, `/bridge/request/pair' -m '{"printer": "`+labS5+`"}'`) {
		t.Errorf("the demo does not say how to pair:\n%s", out)
	}
	as := command(t, watch, "ultimaker/bridge/request/pair", "ultimaker/bridge/response/pair",
		`{"printer":"`+labS5+`","transaction":"demo"}`, `"demo"`)
	if statuses(as) != "pending,ok" {
		t.Errorf("pairing in the demo answered %s: %+v", statuses(as), as[len(as)-1].Error)
	}
}

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
