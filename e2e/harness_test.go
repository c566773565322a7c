package e2e

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testlog"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// syncBuffer is where a test reads what the bridge logs while it runs.
type syncBuffer = testlog.Buffer

const testToken = "umapi-test-secret-token|main"

type world struct {
	broker *mqtttest.Broker
	sim    *simulator.Server
	api    string
	env    []string
}

// newWorld starts mosquitto and the simulator and returns the environment
// that points the bridge at them.
func newWorld(t *testing.T, base string) *world {
	t.Helper()
	b := mqtttest.Start(t)
	sim := simulator.New(simulator.Options{Speed: 1, Seed: 11, Tokens: []string{testToken}})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	w := &world{broker: b, sim: sim, api: srv.URL + simulator.BasePath}
	w.env = []string{
		"MQTT_URL=" + b.URL(), "MQTT_BASE_TOPIC=" + base, "HTTP_LISTEN=", // the page: off unless a test needs it
		"MQTT_CLIENT_ID=test-" + base,
		"ULTIMAKER_API_URL=" + w.api, "ULTIMAKER_API_TOKEN=" + testToken,
		"POLL_INTERVAL=1s", "POLL_IDLE_INTERVAL=1s", "POLL_OFFLINE_INTERVAL=1s", "POLL_CLUSTERS_INTERVAL=1s",
		"LOG_FORMAT=json", "LOG_LEVEL=debug",
	}
	return w
}

// startBridge runs the bridge in process until the test ends.
func startBridge(t *testing.T, env []string) (stop func() (error, time.Duration), logs *syncBuffer) {
	t.Helper()
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runBridge(ctx, env, logs) }()
	var once sync.Once
	var err error
	var took time.Duration
	stop = func() (error, time.Duration) {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("bridge did not stop within 10s")
			}
			took = time.Since(start)
		})
		return err, took
	}
	t.Cleanup(func() { stop() })
	return stop, logs
}

// expectedTopics lists the retained topics the simulator's world must
// produce below base.
func expectedTopics(base string) []string {
	printers := []string{"ultimakersystem-4b0fc38e95e3", "ultimakersystem-ccbdd30044ec", "ultimakersystem-ccbdd3005a11",
		"ultimakersystem-ccbdd3007c42", "makerbot-method-x-23a9", "ultimakersystem-0030d6123abc"}
	clusters := []string{"ultimakersystem-4b0fc38e95e3", "ultimakersystem-ccbdd30044ec", "makerbot-method-x-23a9", "ultimakersystem-0030d6123abc"}
	out := []string{base + "/bridge/state", base + "/bridge/info"}
	for _, p := range printers {
		out = append(out, base+"/printers/"+p+"/state", base+"/printers/"+p+"/availability")
	}
	for _, c := range clusters {
		out = append(out, base+"/clusters/"+c+"/state", base+"/clusters/"+c+"/availability")
	}
	return out
}

func hasAll(m map[string]mqtttest.Message, topics []string) bool {
	for _, tp := range topics {
		if msg, ok := m[tp]; !ok || msg.Payload == "" {
			return false
		}
	}
	return true
}

// runBridge is what `ultimaker2mqtt run` does with env: load the
// configuration, build the bridge, run it until ctx ends.
func runBridge(ctx context.Context, env []string, logs io.Writer) error {
	cfg, err := config.Load(envMap(env), true)
	if err != nil {
		return err
	}
	br, err := bridge.New(cfg, bridge.Options{Version: "test", Log: cfg.Logger(logs)})
	if err != nil {
		return err
	}
	return br.Run(ctx)
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
