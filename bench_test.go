package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// BenchmarkCommandLatency measures command-to-cloud latency: from the
// publish of a command on MQTT to the simulator receiving the action, one
// command at a time, through mosquitto, the bridge and real HTTP.
//
//	go test -run '^$' -bench CommandLatency -benchtime 200x .
//
// Two brokers: mosquitto as installed (Nagle's algorithm on: its
// set_tcp_nodelay defaults to false) and with set_tcp_nodelay true.
func BenchmarkCommandLatency(b *testing.B) {
	b.Run("mosquitto-default", func(b *testing.B) { benchCommandLatency(b, mqtttest.Start(b)) })
	b.Run("mosquitto-nodelay", func(b *testing.B) { benchCommandLatency(b, mqtttest.StartWith(b, "set_tcp_nodelay true\n", false)) })
}

func benchCommandLatency(b *testing.B, broker *mqtttest.Broker) {
	arrived := make(chan time.Time, 16)
	sim := simulator.New(simulator.Options{Seed: 11, Tokens: []string{testToken},
		OnAction: func(string) { arrived <- time.Now() }})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	env := []string{"MQTT_URL=" + broker.URL(), "MQTT_BASE_TOPIC=lat", "ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath,
		"ULTIMAKER_API_TOKEN=" + testToken, "POLL_INTERVAL=10s", "COMMAND_POLL_INTERVAL=10ms", "LOG_LEVEL=error", "LOG_FORMAT=json"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"ultimaker2mqtt", "run"}, env, &syncBuffer{}, &syncBuffer{}) }()
	defer func() { cancel(); <-done }()
	watch := mqtttest.Watch(b, broker.URL(), "lat/printers/+/response")
	lab := "lat/printers/ultimakersystem-4b0fc38e95e3"
	deadline := time.Now().Add(10 * time.Second)
	for len(mqtttest.Retained(b, broker.URL(), lab+"/state", 100*time.Millisecond)) == 0 {
		if time.Now().After(deadline) {
			b.Fatal("bridge not ready")
		}
	}

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		tx := fmt.Sprintf(`"b%d"`, i)
		start := time.Now()
		watch.Publish(lab+"/set", `{"action":"snapshot","transaction":`+tx+`}`, false)
		select {
		case at := <-arrived:
			lat = append(lat, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatalf("command %d never reached the cloud", i)
		}
		// Wait for the final answer, so commands do not pile up.
		watch.WaitFor(10*time.Second, "answer", func(m map[string]mqtttest.Message) bool {
			msg := m[lab+"/response"].Payload
			return strings.Contains(msg, tx) && !strings.Contains(msg, `"pending"`)
		})
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
