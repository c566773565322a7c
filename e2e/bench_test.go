package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// BenchmarkCommandLatency measures command-to-cloud latency: from the
// publish of a command on MQTT to the simulator receiving the action, one
// command at a time, through mosquitto, the bridge and real HTTP.
//
//	go test -run '^$' -bench CommandLatency -benchtime 200x ./e2e
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
	env := []string{"HTTP_LISTEN=", "MQTT_URL=" + broker.URL(), "MQTT_BASE_TOPIC=lat", "ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath,
		"ULTIMAKER_API_TOKEN=" + testToken, "POLL_INTERVAL=10s", "COMMAND_POLL_INTERVAL=10ms", "LOG_LEVEL=error", "LOG_FORMAT=json"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runBridge(ctx, env, &syncBuffer{}) }()
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

// BenchmarkFirstFullPublish measures the bridge's first full publish at
// farm scale: from the start of run to the last of 1,000 printer states
// retained on a stock mosquitto (Nagle's algorithm on, as most users run
// it), with Home Assistant discovery on and off.
//
//	go test -run '^$' -bench FirstFullPublish -benchtime 1x ./e2e
func BenchmarkFirstFullPublish(b *testing.B) {
	for _, ha := range []string{"true", "false"} {
		b.Run("ha_discovery="+ha, func(b *testing.B) {
			for range b.N {
				benchFirstPublish(b, 1000, ha)
			}
		})
	}
}

func benchFirstPublish(b *testing.B, n int, ha string) {
	broker := mqtttest.Start(b)
	sim := simulator.New(simulator.Options{Seed: 5, ExtraPrinters: n, OnlyExtra: true, Tokens: []string{testToken}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	watch := mqtttest.WatchQoS(b, broker.URL(), "farm/printers/+/state", 0)
	env := []string{"HTTP_LISTEN=", "MQTT_URL=" + broker.URL(), "MQTT_BASE_TOPIC=farm", "ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath,
		"ULTIMAKER_API_TOKEN=" + testToken, "LOG_LEVEL=error", "LOG_FORMAT=json", "HA_DISCOVERY=" + ha}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- runBridge(ctx, env, &syncBuffer{}) }()
	defer func() { cancel(); <-done }()
	watch.WaitFor(2*time.Minute, "every printer state", func(m map[string]mqtttest.Message) bool { return len(m) >= n })
	took := time.Since(start)
	b.ReportMetric(took.Seconds(), "s-to-all-states")
	b.ReportMetric(float64(sim.Requests("")), "api-requests")
}

// BenchmarkRetainedCommandsMemory runs the built binary twice: once on a
// clean broker, and once after 30 retained commands of 1 MB each were
// published to set topics (they reach the bridge retained when it
// subscribes). Its resident memory 8 s after start says whether the
// bridge keeps them.
//
//	go test -run '^$' -bench RetainedCommandsMemory -benchtime 1x ./e2e
func BenchmarkRetainedCommandsMemory(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "ultimaker2mqtt")
	if out, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for range b.N {
		broker := mqtttest.Start(b)
		sim := simulator.New(simulator.Options{Seed: 5, Tokens: []string{testToken}})
		srv := httptest.NewServer(sim)
		rss := func() float64 {
			cmd := exec.Command(bin, "run")
			cmd.Env = []string{"HTTP_LISTEN=", "MQTT_URL=" + broker.URL(), "MQTT_BASE_TOPIC=mem", "ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath,
				"ULTIMAKER_API_TOKEN=" + testToken, "LOG_LEVEL=error", "LOG_FORMAT=json"}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(8 * time.Second)
			r := rssMiB(b, cmd.Process.Pid)
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			return r
		}
		before := rss()
		watch := mqtttest.Watch(b, broker.URL(), "mem/none")
		big := strings.Repeat("x", 1<<20)
		for i := range 30 {
			watch.Publish(fmt.Sprintf("mem/printers/p%d/set", i), `{"action":"pause","transaction":"`+big+`"}`, true)
		}
		after := rss()
		srv.Close()
		b.ReportMetric(before, "rss-clean-MiB")
		b.ReportMetric(after, "rss-30MB-retained-MiB")
	}
}

func rssMiB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
