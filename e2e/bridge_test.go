package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

func TestEndToEnd(t *testing.T) {
	w := newWorld(t, "e2e")
	watch := mqtttest.Watch(t, w.broker.URL(), "e2e/#")
	stop, logs := startBridge(t, w.env)
	want := expectedTopics("e2e")
	start := time.Now()
	// Two poll intervals (2 s) is the contract; the slack is for a loaded
	// CI machine, and the figure itself is measured in bench/.
	watch.WaitFor(2*time.Second+5*time.Second, "every retained topic", func(m map[string]mqtttest.Message) bool { return hasAll(m, want) })
	t.Logf("all %d retained topics after %s", len(want), time.Since(start).Round(time.Millisecond))

	got := mqtttest.Retained(t, w.broker.URL(), "e2e/#", 300*time.Millisecond)
	for _, tp := range want {
		if _, ok := got[tp]; !ok {
			t.Errorf("%s is not retained", tp)
		}
	}
	if got["e2e/bridge/state"] != "online" {
		t.Errorf("bridge/state = %q", got["e2e/bridge/state"])
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(got["e2e/bridge/info"]), &info); err != nil {
		t.Fatalf("bridge/info: %v", err)
	}
	for _, k := range []string{"version", "started_at", "clusters", "printers", "intervals", "auth", "last_poll", "poll_errors"} {
		if _, ok := info[k]; !ok {
			t.Errorf("bridge/info lacks %s: %v", k, info)
		}
	}

	// Every printer's state has the contract's fields and types.
	for _, tp := range want {
		if !strings.HasSuffix(tp, "/state") || !strings.Contains(tp, "/printers/") {
			continue
		}
		var st struct {
			Source         string          `json:"source"`
			Status         *string         `json:"status"`
			FriendlyName   *string         `json:"friendly_name"`
			MachineVariant *string         `json:"machine_variant"`
			Online         *bool           `json:"online"`
			UpdatedAt      *time.Time      `json:"updated_at"`
			Job            json.RawMessage `json:"job"`
		}
		if err := json.Unmarshal([]byte(got[tp]), &st); err != nil {
			t.Fatalf("%s: %v", tp, err)
		}
		if st.Status == nil || st.FriendlyName == nil || st.MachineVariant == nil || st.Online == nil || st.UpdatedAt == nil || st.Job == nil {
			t.Errorf("%s lacks a contract field: %s", tp, got[tp])
		}
		if st.Source != "cloud" || strings.Contains(got[tp], "hotend_") || strings.Contains(got[tp], `"camera"`) ||
			strings.Contains(got[tp], "local_auth") {
			t.Errorf("%s: a cloud-only printer has source %q or LAN-only fields: %s", tp, st.Source, got[tp])
		}
		if string(st.Job) != "null" {
			var j struct {
				UUID, Name, Status string
				Progress           float64
				TimeElapsed        *int64 `json:"time_elapsed"`
				TimeTotal          *int64 `json:"time_total"`
				TimeRemaining      *int64 `json:"time_remaining"`
				ETA                *time.Time
			}
			if err := json.Unmarshal(st.Job, &j); err != nil {
				t.Fatalf("%s job: %v", tp, err)
			}
			if j.UUID == "" || j.Status == "" || j.Progress < 0 || j.Progress > 100 || j.TimeElapsed == nil || j.TimeTotal == nil || j.TimeRemaining == nil {
				t.Errorf("%s job: %s", tp, st.Job)
			}
		}
	}
	// A printer in an offline cluster is offline.
	if got["e2e/printers/ultimakersystem-0030d6123abc/availability"] != "offline" {
		t.Errorf("printer of the offline cluster is %q", got["e2e/printers/ultimakersystem-0030d6123abc/availability"])
	}
	if got["e2e/printers/ultimakersystem-4b0fc38e95e3/availability"] != "online" {
		t.Errorf("online printer is %q", got["e2e/printers/ultimakersystem-4b0fc38e95e3/availability"])
	}

	// SIGTERM path: offline retained, clean return, quickly.
	err, took := stop()
	if err != nil {
		t.Fatalf("run returned %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("shutdown took %s, want under 2s", took)
	}
	if got := mqtttest.Retained(t, w.broker.URL(), "e2e/bridge/state", 200*time.Millisecond)["e2e/bridge/state"]; got != "offline" {
		t.Errorf("bridge/state after shutdown = %q", got)
	}
	for _, secret := range []string{testToken, "test-secret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain the API token")
		}
	}
}

func TestBrokerRestartRestoresRetained(t *testing.T) {
	w := newWorld(t, "restart")
	watch := mqtttest.Watch(t, w.broker.URL(), "restart/#")
	startBridge(t, w.env)
	want := expectedTopics("restart")
	watch.WaitFor(10*time.Second, "every retained topic", func(m map[string]mqtttest.Message) bool { return hasAll(m, want) })

	// A marker of the test's own, which the bridge never republishes,
	// proves the broker came back empty (the bridge may be back before any
	// look at the broker could be).
	watch.Publish("restart/test-marker", "x", true)
	w.broker.Restart()
	if got := mqtttest.Retained(t, w.broker.URL(), "restart/test-marker", 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("broker kept retained messages across the restart; the test needs it empty")
	}
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for {
		got := mqtttest.Retained(t, w.broker.URL(), "restart/#", 200*time.Millisecond)
		missing := 0
		for _, tp := range want {
			if got[tp] == "" {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("all retained topics back %s after the restart", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d retained topics still missing after the broker restart", missing, len(want))
		}
	}
}

func TestBrokerDownAtStart(t *testing.T) {
	b := mqtttest.Prepare(t)
	sim := simulator.New(simulator.Options{Tokens: []string{testToken}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	_, logs := startBridge(t, []string{"HTTP_LISTEN=", "MQTT_URL=" + b.URL(), "MQTT_BASE_TOPIC=late", "ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath,
		"ULTIMAKER_API_TOKEN=" + testToken, "POLL_INTERVAL=1s", "POLL_IDLE_INTERVAL=1s", "LOG_FORMAT=json"})
	time.Sleep(1500 * time.Millisecond) // a few failed attempts
	b.Begin()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := mqtttest.Retained(t, b.URL(), "late/#", 200*time.Millisecond)
		if got["late/bridge/state"] == "online" && got["late/printers/ultimakersystem-4b0fc38e95e3/state"] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge never caught up with a late broker: %v\n%s", got, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "broker unreachable"); n != 1 {
		t.Errorf("'broker unreachable' logged %d times, want once", n)
	}
}

func TestOneFailingClusterDoesNotStopOthers(t *testing.T) {
	w := newWorld(t, "faults")
	ids := w.sim.ClusterIDs()
	w.sim.AddFault(simulator.Fault{Kind: simulator.FaultMalformed, PathContains: ids[0]})
	watch := mqtttest.Watch(t, w.broker.URL(), "faults/#")
	_, logs := startBridge(t, w.env)
	farm := "faults/printers/ultimakersystem-ccbdd30044ec/state"
	watch.WaitFor(10*time.Second, "the healthy clusters", func(m map[string]mqtttest.Message) bool { return m[farm].Payload != "" })
	watch.WaitFor(10*time.Second, "poll errors in bridge/info", func(m map[string]mqtttest.Message) bool {
		var info struct {
			PollErrors int64 `json:"poll_errors"`
		}
		json.Unmarshal([]byte(m["faults/bridge/info"].Payload), &info)
		return info.PollErrors >= 2
	})
	if _, ok := watch.Last("faults/printers/ultimakersystem-4b0fc38e95e3/state"); ok {
		t.Errorf("the failing cluster's printer was published from a malformed body")
	}
	if n := strings.Count(logs.String(), "cluster poll failed"); n != 1 {
		t.Errorf("failure logged %d times, want once per streak", n)
	}
	// Each fault kind, then recovery.
	for _, k := range []simulator.FaultKind{simulator.FaultNonJSON, simulator.FaultServerError, simulator.FaultWrongShape, simulator.FaultUnavailable} {
		w.sim.AddFault(simulator.Fault{Kind: k, PathContains: ids[1], Count: 1})
	}
	w.sim.ClearFaults()
	watch.WaitFor(15*time.Second, "recovered cluster", func(m map[string]mqtttest.Message) bool {
		return m["faults/printers/ultimakersystem-4b0fc38e95e3/state"].Payload != ""
	})
}

func TestClusterLeavingClearsItsTopics(t *testing.T) {
	w := newWorld(t, "leave")
	watch := mqtttest.Watch(t, w.broker.URL(), "leave/#")
	startBridge(t, w.env)
	mb := "leave/printers/makerbot-method-x-23a9/state"
	watch.WaitFor(10*time.Second, "makerbot", func(m map[string]mqtttest.Message) bool { return m[mb].Payload != "" })
	w.sim.RemoveCluster(w.sim.ClusterIDs()[2])
	gone := []string{mb, "leave/printers/makerbot-method-x-23a9/availability",
		"leave/clusters/makerbot-method-x-23a9/state", "leave/clusters/makerbot-method-x-23a9/availability"}
	watch.WaitFor(10*time.Second, "makerbot cleared", func(m map[string]mqtttest.Message) bool {
		for _, tp := range gone {
			if msg, ok := m[tp]; !ok || msg.Payload != "" {
				return false
			}
		}
		return true
	})
	got := mqtttest.Retained(t, w.broker.URL(), "leave/#", 300*time.Millisecond)
	for tp := range got {
		if strings.Contains(tp, "makerbot") {
			t.Errorf("%s still retained after the cluster left", tp)
		}
	}
}

// The real binary, stopped with a real SIGTERM: offline retained, exit 0,
// within two seconds.
func TestBinarySIGTERM(t *testing.T) {
	bin := binary
	w := newWorld(t, "sig")
	watch := mqtttest.Watch(t, w.broker.URL(), "sig/#")
	cmd := exec.Command(bin, "run")
	cmd.Env = append(w.env, "PATH="+os.Getenv("PATH"))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go bufio.NewReader(stderr).WriteTo(&syncBuffer{})
	watch.WaitFor(10*time.Second, "printers", func(m map[string]mqtttest.Message) bool { return hasAll(m, expectedTopics("sig")) })
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("SIGTERM to exit took %s, want under 2s", took)
	}
	if got := mqtttest.Retained(t, w.broker.URL(), "sig/bridge/state", 200*time.Millisecond)["sig/bridge/state"]; got != "offline" {
		t.Errorf("bridge/state = %q after SIGTERM", got)
	}
	// Exit code 2 for a configuration error, from the real binary too.
	cmd = exec.Command(bin, "run")
	cmd.Env = []string{"POLL_INTERVAL=soon", "ULTIMAKER_API_TOKEN=x"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "POLL_INTERVAL") {
		t.Errorf("bad config: %v %s", err, out)
	}
}
