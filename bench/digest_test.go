package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testlog"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// BenchmarkStateMessagesPerMinute counts what Home Assistant has to digest:
// the state messages of a steadily printing printer per minute, at a poll
// interval of 10 s and of 1 s, through the bridge and a real mosquitto.
// Ten single-printer clusters, half of them printing, on the simulator's
// clock at real speed; two minutes each.
//
//	go test -run '^$' -bench StateMessagesPerMinute -benchtime 1x ./bench
func BenchmarkStateMessagesPerMinute(b *testing.B) {
	for _, interval := range []string{"10s", "1s"} {
		b.Run("poll-"+interval, func(b *testing.B) {
			for range b.N {
				perMinute := stateMessagesPerMinute(b, interval, 2*time.Minute)
				b.ReportMetric(perMinute, "msgs/printer/min")
			}
		})
	}
}

func stateMessagesPerMinute(b *testing.B, interval string, window time.Duration) float64 {
	broker := mqtttest.Start(b)
	sim := simulator.New(simulator.Options{Speed: 1, Seed: 9, Calm: true, ExtraPrinters: 10, OnlyExtra: true,
		Tokens: []string{"t"}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	env := map[string]string{"MQTT_URL": broker.URL(), "MQTT_BASE_TOPIC": "digest", "ULTIMAKER_API_URL": srv.URL + simulator.BasePath,
		"ULTIMAKER_API_TOKEN": "t", "POLL_INTERVAL": interval, "POLL_IDLE_INTERVAL": "1m", "LOG_LEVEL": "error"}
	cfg, err := config.Load(env, true)
	if err != nil {
		b.Fatal(err)
	}
	br, err := bridge.New(cfg, bridge.Options{Version: "bench", Log: cfg.Logger(&testlog.Buffer{})})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	defer func() { cancel(); <-done }()
	watch := mqtttest.Watch(b, broker.URL(), "digest/printers/+/state")
	// The first states and the first interval's settling are not counted.
	time.Sleep(15 * time.Second)
	start := len(watch.All())
	time.Sleep(window)
	printing := map[string]bool{}
	count := map[string]int{}
	for _, m := range watch.All()[start:] {
		var st struct{ Printing bool }
		json.Unmarshal([]byte(m.Payload), &st)
		id := strings.Split(m.Topic, "/")[2]
		count[id]++
		printing[id] = st.Printing
	}
	msgs, n := 0, 0
	for id, p := range printing {
		if p {
			msgs += count[id]
			n++
		}
	}
	if n == 0 {
		b.Fatal("no printer printed")
	}
	perMinute := float64(msgs) / float64(n) / window.Minutes()
	fmt.Printf("poll %s: %d printing printers, %.1f state messages each per minute\n", interval, n, perMinute)
	return perMinute
}
