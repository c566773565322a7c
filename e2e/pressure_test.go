package e2e

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"

	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// blast publishes payloads to topics without waiting for each
// acknowledgement, from a client of its own: a misfiring flow.
func blast(t *testing.T, url string, msgs [][2]string, retain bool) {
	t.Helper()
	cli := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("blast-%d", time.Now().UnixNano())))
	if tok := cli.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer cli.Disconnect(100)
	toks := make([]mqtt.Token, 0, len(msgs))
	for _, m := range msgs {
		toks = append(toks, cli.Publish(m[0], 1, retain, m[1]))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

// finalAnswers counts the final (not pending) answers per transaction.
func finalAnswers(watch *mqtttest.Watcher) map[string]int {
	out := map[string]int{}
	for _, m := range watch.All() {
		if !strings.HasSuffix(m.Topic, "/response") {
			continue
		}
		var a answer
		if json.Unmarshal([]byte(m.Payload), &a) != nil || a.Status == "pending" {
			continue
		}
		var tx string
		json.Unmarshal(a.Transaction, &tx)
		out[tx]++
	}
	return out
}

// TestFloodEveryCommandAnswered: 2,000 mixed commands published at once
// against a stock mosquitto each get exactly one final answer (busy when
// the bridge cannot take them), and the flood costs a bounded number of
// log lines (issue 9.2).
func TestFloodEveryCommandAnswered(t *testing.T) {
	w := newWorld(t, "flood")
	watch := mqtttest.WatchQoS(t, w.broker.URL(), "flood/printers/+/response", 0)
	_, logs := startBridge(t, append(w.env, "LOG_LEVEL=info"))
	waitForPrinters(t, w, "flood")
	printers := []string{"ultimakersystem-4b0fc38e95e3", "ultimakersystem-ccbdd30044ec", "ultimakersystem-ccbdd3005a11",
		"ultimakersystem-ccbdd3007c42", "makerbot-method-x-23a9", "ultimakersystem-0030d6123abc"}
	kinds := []string{`{"action":"pause","transaction":%q}`, `{"action":"resume","transaction":%q}`,
		`{"action":"abort","transaction":%q}`, `{"action":"snapshot","transaction":%q}`,
		`{"action":"explode","transaction":%q}`, `{"action":"pause","transaction":%q,"job":"x"}`}
	const n = 2000
	msgs := make([][2]string, n)
	for i := range n {
		msgs[i] = [2]string{"flood/printers/" + printers[i%len(printers)] + "/set", fmt.Sprintf(kinds[i%len(kinds)], fmt.Sprintf("f-%d", i))}
	}
	before := strings.Count(logs.String(), "\n")
	start := time.Now()
	blast(t, w.broker.URL(), msgs, false)
	var got map[string]int
	deadline := time.Now().Add(90 * time.Second)
	for {
		got = finalAnswers(watch)
		if len(got) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	twice := 0
	for _, c := range got {
		if c > 1 {
			twice++
		}
	}
	busy := 0
	for _, m := range watch.All() {
		busy += strings.Count(m.Payload, `"code":"busy"`)
	}
	lines := strings.Count(logs.String(), "\n") - before
	t.Logf("%d commands: %d answered (%d busy, %d twice) in %s; %d log lines", n, len(got), busy, twice,
		time.Since(start).Round(time.Millisecond), lines)
	if len(got) != n || twice != 0 {
		t.Errorf("%d of %d commands answered, %d more than once; want each exactly once", len(got), n, twice)
	}
	if lines > 40 {
		t.Errorf("the flood wrote %d log lines, want a bounded few", lines)
	}
}

// TestPauseFloodReachesCloudOnce: 500 pauses of one printing printer in a
// burst send one pause to the cloud (issue 9.3).
func TestPauseFloodReachesCloudOnce(t *testing.T) {
	w := newWorld(t, "pauses")
	startBridge(t, w.env)
	waitForPrinters(t, w, "pauses")
	topic := "pauses/printers/ultimakersystem-4b0fc38e95e3/set"
	msgs := make([][2]string, 500)
	for i := range msgs {
		msgs[i] = [2]string{topic, "pause"}
	}
	blast(t, w.broker.URL(), msgs, false)
	time.Sleep(3 * time.Second) // the first pause settles; the rest are answered
	calls := w.sim.Requests("/action/pause")
	t.Logf("500 pauses in a burst: %d pause requests reached the cloud", calls)
	if calls != 1 {
		t.Errorf("%d pause requests reached the cloud, want 1", calls)
	}
}

// TestRetainedCommandWhileConnected: a command published retained while
// the bridge is connected arrives without the retain flag (MQTT 3.1.1),
// yet is answered retained, never carried out, and cleared (issue 9.1).
func TestRetainedCommandWhileConnected(t *testing.T) {
	w := newWorld(t, "ret")
	watch := mqtttest.Watch(t, w.broker.URL(), "ret/printers/+/response")
	startBridge(t, w.env)
	waitForPrinters(t, w, "ret")
	topic := "ret/printers/ultimakersystem-4b0fc38e95e3/set"
	watch.Publish(topic, `{"action":"pause","transaction":"r1"}`, true)
	as := command(t, watch, topic, "ret/printers/ultimakersystem-4b0fc38e95e3/response", ``, `"r1"`)
	if len(as) != 1 || as[0].Error == nil || as[0].Error.Code != "retained" {
		t.Fatalf("answers %+v, want one retained", as)
	}
	if n := w.sim.Requests("/action/pause"); n != 0 {
		t.Errorf("%d pause requests reached the cloud", n)
	}
	if left := mqtttest.Retained(t, w.broker.URL(), topic, 300*time.Millisecond); len(left) != 0 {
		t.Errorf("the retained command is still on the broker: %v", left)
	}
	// A live command afterwards is carried out.
	as = command(t, watch, topic, "ret/printers/ultimakersystem-4b0fc38e95e3/response", `{"action":"pause","transaction":"r2"}`, `"r2"`)
	if statuses(as) != "pending,ok" {
		t.Errorf("live pause after the retained one: %s", statuses(as))
	}
}

// waitForPrinters waits until every printer of the simulated world has a
// retained state below base.
func waitForPrinters(t *testing.T, w *world, base string) {
	t.Helper()
	watch := mqtttest.Watch(t, w.broker.URL(), base+"/#")
	watch.WaitFor(15*time.Second, "printer states", func(m map[string]mqtttest.Message) bool {
		return hasAll(m, expectedTopics(base))
	})
}

// TestCloudReachableSteadyWithOneFailingCluster: with one of fifteen
// clusters answering 500 on every poll, cloud_reachable in bridge/info
// never flips (issue 9.11). 20 s at 1-s polls: twenty polls of each.
func TestCloudReachableSteadyWithOneFailingCluster(t *testing.T) {
	flips, seen := cloudReachableFlips(t, 20*time.Second)
	t.Logf("cloud_reachable: %d flips in 20 s with one of 15 clusters failing (%d info messages)", flips, seen)
	if flips != 0 {
		t.Errorf("cloud_reachable flipped %d times", flips)
	}
}

func cloudReachableFlips(t *testing.T, d time.Duration) (flips, seen int) {
	b := mqtttest.Start(t)
	sim := simulator.New(simulator.Options{Seed: 3, ExtraPrinters: 15, OnlyExtra: true, Tokens: []string{testToken}})
	sim.AddFault(simulator.Fault{Kind: simulator.FaultServerError, PathContains: sim.ClusterIDs()[3] + "/status"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	watch := mqtttest.Watch(t, b.URL(), "reach/bridge/info")
	startBridge(t, []string{"HTTP_LISTEN=", "MQTT_URL=" + b.URL(), "MQTT_BASE_TOPIC=reach", "ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath,
		"ULTIMAKER_API_TOKEN=" + testToken, "POLL_INTERVAL=1s", "POLL_IDLE_INTERVAL=1s", "POLL_CLUSTERS_INTERVAL=5s",
		"POLL_BACKOFF_MAX=2s", "LOG_FORMAT=json"})
	time.Sleep(d)
	var last *bool
	for _, m := range watch.All() {
		var info struct {
			Reachable *bool `json:"cloud_reachable"`
			Ready     bool  `json:"ready"`
		}
		if json.Unmarshal([]byte(m.Payload), &info) != nil || info.Reachable == nil || !info.Ready {
			continue
		}
		seen++
		if last != nil && *last != *info.Reachable {
			flips++
		}
		last = info.Reachable
	}
	if seen == 0 {
		t.Fatal("no bridge/info with cloud_reachable")
	}
	return flips, seen
}
