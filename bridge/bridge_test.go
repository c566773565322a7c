package bridge

import (
	"context"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// TestShutdownOrder runs the bridge against mosquitto and the simulator,
// stops it, and checks the order its parts stop in: whatever publishes
// stops before the broker connection, and "offline" is the last message.
func TestShutdownOrder(t *testing.T) {
	b := mqtttest.Start(t)
	sim := simulator.New(simulator.Options{Seed: 2, Tokens: []string{"tok"}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	cfg, err := config.Load(map[string]string{"MQTT_URL": b.URL(), "MQTT_BASE_TOPIC": "order", "MQTT_CLIENT_ID": "order",
		"ULTIMAKER_API_URL": srv.URL + simulator.BasePath, "ULTIMAKER_API_TOKEN": "tok", "POLL_INTERVAL": "200ms",
		"POLL_IDLE_INTERVAL": "200ms", "HTTP_LISTEN": "127.0.0.1:0"}, true)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	br, err := New(cfg, Options{Version: "test", Log: zerolog.Nop(), OnStop: func(p string) {
		mu.Lock()
		order = append(order, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	watch := mqtttest.Watch(t, b.URL(), "order/#")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	watch.WaitFor(10*time.Second, "printer states", func(m map[string]mqtttest.Message) bool {
		return m["order/printers/ultimakersystem-4b0fc38e95e3/state"].Payload != ""
	})
	time.Sleep(500 * time.Millisecond) // polls in flight when the stop comes
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := []string{"poller", "helpers", "sweep", "commands", "mqtt"}; !slices.Equal(order, want) {
		t.Errorf("stopped in order %v, want %v", order, want)
	}
	watch.WaitFor(5*time.Second, "offline", func(m map[string]mqtttest.Message) bool {
		return m["order/bridge/state"].Payload == "offline"
	})
	all := watch.All()
	if last := all[len(all)-1]; last.Topic != "order/bridge/state" || last.Payload != "offline" {
		t.Errorf("last message %s %q, want order/bridge/state offline", last.Topic, last.Payload)
	}
}
