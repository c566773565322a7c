package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
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
	// Actions made up by whoever may send commands share one label: they
	// cannot create series without bound.
	for i := range 3 {
		tx := fmt.Sprintf(`"made-up-%d"`, i)
		command(t, watch, lab+"/set", lab+"/response", fmt.Sprintf(`{"action":"made_up_%d","transaction":%s}`, i, tx), tx)
	}
	var text string
	deadline := time.Now().Add(10 * time.Second)
	want := []string{
		`ultimaker2mqtt_polls_total{target="clusters"}`,
		`ultimaker2mqtt_polls_total{target="status"}`,
		`ultimaker2mqtt_api_request_duration_seconds_bucket{code="200",method="GET",route="/clusters/{id}/status"`,
		`ultimaker2mqtt_commands_total{action="resume",result="conflict"} 1`,
		`ultimaker2mqtt_commands_total{action="other",result=`,
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
			var got []string
			for _, l := range strings.Split(text, "\n") {
				if strings.HasPrefix(l, "ultimaker2mqtt_commands_total") {
					got = append(got, l)
				}
			}
			t.Fatalf("metrics lack %v (commands: %v)", missing, got)
		}
		if slices.Contains(missing, `ultimaker2mqtt_poll_errors_total`) {
			w.sim.AddFault(simulatorFault("server_error", 1))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(text, "made_up") {
		t.Error("a made-up action became a metric label")
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

// TestHostsTheEndpointAnswers: a request whose Host is a name the bridge
// does not know (a web page that points its own name at the bridge: DNS
// rebinding) gets 421 on every path, the page, its API, /healthz and
// /metrics alike; addresses, localhost, the machine's name and
// WEB_ALLOWED_HOSTS are answered (issue 28).
func TestHostsTheEndpointAnswers(t *testing.T) {
	w := newWorld(t, "hosts")
	addr := freeAddr(t)
	startBridge(t, append(slices.Clone(w.env), "HTTP_LISTEN="+addr, "WEB_ALLOWED_HOSTS=printers.lab.example",
		"WEB_TOKEN=a-token-of-24-characters"))
	waitHealth(t, addr, http.StatusOK)
	_, port, _ := net.SplitHostPort(addr)
	machine, _ := os.Hostname()
	ask := func(method, path, host string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(`{"action":"pause"}`))
		req.Host = host
		req.Header.Set("Authorization", "Bearer a-token-of-24-characters")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	paths := []struct{ method, path string }{{"GET", "/"}, {"GET", "/assets/app.js"}, {"GET", "/api/printers"},
		{"GET", "/api/feed"}, {"GET", "/api/snapshot"}, {"GET", "/api/stream"}, {"GET", "/api/bridge"}, {"GET", "/healthz"},
		{"GET", "/metrics"}, {"GET", "/api/auth"}, {"POST", "/api/printers/" + labS5 + "/actions"}, {"GET", "/nothing"}}
	for _, host := range []string{"evil.example:" + port, "printers.lab.example.evil.example", "localhost.evil.example:" + port} {
		for _, p := range paths {
			if code := ask(p.method, p.path, host); code != http.StatusMisdirectedRequest {
				t.Errorf("%s %s with Host %s: %d, want 421", p.method, p.path, host, code)
			}
		}
	}
	for _, host := range []string{addr, "localhost:" + port, "printers.lab.example:" + port, machine + ":" + port} {
		if code := ask("GET", "/healthz", host); code != http.StatusOK {
			t.Errorf("/healthz with Host %s: %d, want 200", host, code)
		}
	}
}
