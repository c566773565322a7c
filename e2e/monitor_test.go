package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func getHealth(t *testing.T, addr string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

func waitHealth(t *testing.T, addr string, want int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := getHealth(t, addr)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz stayed %d (%v), want %d", code, body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHealthFollowsBroker(t *testing.T) {
	w := newWorld(t, "hz")
	addr := freeAddr(t)
	env := append(slices.Clone(w.env), "HTTP_LISTEN="+addr)
	startBridge(t, env)
	waitHealth(t, addr, http.StatusOK)
	var out bytes.Buffer
	if err := cli(context.Background(), env, nil, &out, "healthcheck"); err != nil {
		t.Fatalf("healthcheck while healthy: %v", err)
	}

	w.broker.Stop()
	body := waitHealth(t, addr, http.StatusServiceUnavailable)
	checks, _ := body["checks"].([]any)
	var brokerDown bool
	for _, c := range checks {
		m := c.(map[string]any)
		brokerDown = brokerDown || (m["name"] == "broker" && m["ok"] == false && strings.Contains(m["detail"].(string), "not connected"))
	}
	if !brokerDown || body["healthy"] != false {
		t.Errorf("503 body does not say the broker is down: %v", body)
	}
	if err := cli(context.Background(), env, nil, nil, "healthcheck"); exitCodeOf(err) != 1 {
		t.Errorf("healthcheck while unhealthy: %v", err)
	}
	w.broker.Restart()
	waitHealth(t, addr, http.StatusOK)
}

func TestMetricsAfterPollAndCommand(t *testing.T) {
	w := newWorld(t, "mx")
	addr := freeAddr(t)
	startBridge(t, append(slices.Clone(w.env), "HTTP_LISTEN="+addr))
	watch := mqtttest.Watch(t, w.broker.URL(), "mx/#")
	watch.WaitFor(10*time.Second, "states", func(m map[string]mqtttest.Message) bool { return hasAll(m, expectedTopics("mx")) })
	lab := "mx/printers/ultimakersystem-4b0fc38e95e3"
	command(t, watch, lab+"/set", lab+"/response", `{"action":"resume","transaction":"m1"}`, `"m1"`) // conflict: it prints
	var text string
	deadline := time.Now().Add(10 * time.Second)
	want := []string{
		`ultimaker2mqtt_polls_total{target="clusters"}`,
		`ultimaker2mqtt_polls_total{target="status"}`,
		`ultimaker2mqtt_api_request_duration_seconds_bucket{code="200",method="GET",route="/clusters/{id}/status"`,
		`ultimaker2mqtt_commands_total{action="resume",result="conflict"} 1`,
		`ultimaker2mqtt_clusters 4`,
		`ultimaker2mqtt_printers 6`,
		`ultimaker2mqtt_mqtt_connected 1`,
		`ultimaker2mqtt_mqtt_publishes_total`,
		`ultimaker2mqtt_token_refreshes_total 0`,
		`ultimaker2mqtt_last_successful_poll_timestamp_seconds`,
		`ultimaker2mqtt_poll_errors_total`,
	}
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			text = string(b)
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return strings.Contains(text, s) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			// poll_errors appears once an error happened: cause one.
			t.Fatalf("metrics lack %v", missing)
		}
		if slices.Contains(missing, `ultimaker2mqtt_poll_errors_total`) {
			w.sim.AddFault(simulatorFault("server_error", 1))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "ultimaker2mqtt_last_successful_poll_timestamp_seconds ") {
			var v float64
			json.Unmarshal([]byte(strings.Fields(line)[1]), &v)
			if time.Since(time.Unix(int64(v), 0)) > time.Minute {
				t.Errorf("last poll metric %s", line)
			}
		}
	}
}

func simulatorFault(kind string, count int) simulator.Fault {
	return simulator.Fault{Kind: simulator.FaultKind(kind), Count: count}
}
