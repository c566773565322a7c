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
