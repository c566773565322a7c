package e2e

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// fastWorld is newWorld with the simulated clock at 20x, so pauses and
// cleanups happen within seconds, and no scripted pause or abort gets in
// the test's way.
func fastWorld(t *testing.T, base string) *world {
	t.Helper()
	return fastWorldWith(t, base, simulator.Options{})
}

// fastWorldWith is fastWorld with the simulator's other options from opts
// (OnAction, say).
func fastWorldWith(t *testing.T, base string, opts simulator.Options) *world {
	t.Helper()
	w := newWorld(t, base)
	opts.Speed, opts.Seed, opts.Calm, opts.Tokens = 20, 11, true, []string{testToken}
	w.sim = simulator.New(opts)
	srv := httptest.NewServer(w.sim)
	t.Cleanup(srv.Close)
	w.api = srv.URL + simulator.BasePath
	for i, kv := range w.env {
		if strings.HasPrefix(kv, "ULTIMAKER_API_URL=") {
			w.env[i] = "ULTIMAKER_API_URL=" + w.api
		}
	}
	w.env = append(w.env, "COMMAND_TIMEOUT=10s", "COMMAND_POLL_INTERVAL=100ms")
	return w
}

type answer struct {
	Status      string          `json:"status"`
	Action      string          `json:"action"`
	Transaction json.RawMessage `json:"transaction"`
	Data        map[string]any  `json:"data"`
	Error       *struct {
		Code, Message string
	} `json:"error"`
}

// command publishes payload on topic and waits for the final answer with
// transaction tx on the response topic.
func command(t *testing.T, watch *mqtttest.Watcher, topic, response, payload, tx string) []answer {
	t.Helper()
	start := len(watch.All())
	watch.Publish(topic, payload, false)
	var got []answer
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got = got[:0]
		for _, m := range watch.All()[start:] {
			if m.Topic != response {
				continue
			}
			var a answer
			if err := json.Unmarshal([]byte(m.Payload), &a); err != nil {
				t.Fatalf("answer is not JSON: %s", m.Payload)
			}
			if string(a.Transaction) == tx {
				got = append(got, a)
			}
		}
		if len(got) > 0 && got[len(got)-1].Status != "pending" {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(payload) > 200 {
		payload = payload[:200] + "…"
	}
	t.Fatalf("no final answer to %s on %s: %+v", payload, response, got)
	return nil
}

func statuses(as []answer) string {
	var s []string
	for _, a := range as {
		s = append(s, a.Status)
	}
	return strings.Join(s, ",")
}

func printerStatus(watch *mqtttest.Watcher, topic string) string {
	m, _ := watch.Last(topic)
	var st struct {
		Status string `json:"status"`
	}
	json.Unmarshal([]byte(m.Payload), &st)
	return st.Status
}

func TestCommandsEndToEnd(t *testing.T) {
	w := fastWorld(t, "cmd")
	watch := mqtttest.Watch(t, w.broker.URL(), "#")
	// A retained abort waiting on the broker from some earlier mistake.
	lab := "cmd/printers/ultimakersystem-4b0fc38e95e3"
	watch.Publish(lab+"/set", "abort", true)
	startBridge(t, w.env)
	watch.WaitFor(10*time.Second, "states", func(m map[string]mqtttest.Message) bool { return hasAll(m, expectedTopics("cmd")) })

	// The retained abort is answered once, and never reaches the cloud.
	watch.WaitFor(5*time.Second, "retained answer", func(m map[string]mqtttest.Message) bool {
		return strings.Contains(m[lab+"/response"].Payload, `"retained"`)
	})
	if n := w.sim.Requests("/action/abort"); n != 0 {
		t.Fatalf("a retained abort reached the cloud %d times", n)
	}
	watch.Publish(lab+"/set", "", true) // clear it

	// Pause, wait for paused, resume, abort: each pending then ok.
	watch.WaitFor(10*time.Second, "lab printing", func(map[string]mqtttest.Message) bool { return printerStatus(watch, lab+"/state") == "printing" })
	if got := command(t, watch, lab+"/set", lab+"/response", `{"action":"pause","transaction":"p1"}`, `"p1"`); statuses(got) != "pending,ok" {
		t.Fatalf("pause: %+v", got)
	}
	watch.WaitFor(10*time.Second, "paused", func(map[string]mqtttest.Message) bool { return printerStatus(watch, lab+"/state") == "paused" })
	if got := command(t, watch, lab+"/set", lab+"/response", `{"action":"resume","transaction":"r1"}`, `"r1"`); statuses(got) != "pending,ok" {
		t.Fatalf("resume: %+v", got)
	}
	watch.WaitFor(10*time.Second, "printing again", func(map[string]mqtttest.Message) bool { return printerStatus(watch, lab+"/state") == "printing" })

	// A state that does not allow it: conflict, without a cloud call.
	before := w.sim.Requests("/action/")
	if got := command(t, watch, lab+"/set", lab+"/response", `{"action":"resume","transaction":"r2"}`, `"r2"`); got[0].Error == nil || got[0].Error.Code != "conflict" {
		t.Fatalf("resume while printing: %+v", got)
	}
	if w.sim.Requests("/action/") != before {
		t.Error("a gated command reached the cloud")
	}

	// Snapshot: pending, then ok with the image URL, also published for
	// the image entity.
	got := command(t, watch, lab+"/set", lab+"/response", `{"action":"snapshot","transaction":7}`, `7`)
	if statuses(got) != "pending,ok" || !strings.HasPrefix(got[1].Data["image_url"].(string), "http") {
		t.Fatalf("snapshot: %+v", got)
	}
	watch.WaitFor(5*time.Second, "snapshot topic", func(m map[string]mqtttest.Message) bool {
		return strings.Contains(m[lab+"/snapshot"].Payload, got[1].Data["image_url"].(string)) && m[lab+"/snapshot"].Payload != ""
	})

	// The same transaction delivered twice reaches the cloud once.
	before = w.sim.Requests("/action/abort")
	first := command(t, watch, lab+"/set", lab+"/response", `{"action":"abort","transaction":"a1"}`, `"a1"`)
	again := command(t, watch, lab+"/set", lab+"/response", `{"action":"abort","transaction":"a1"}`, `"a1"`)
	if statuses(first) != "pending,ok" || again[len(again)-1].Error == nil {
		t.Fatalf("abort: %+v then %+v", first, again)
	}
	dup := again[len(again)-1]
	if dup.Error.Code != "duplicate" {
		t.Errorf("second delivery: %+v", dup)
	}
	if n := w.sim.Requests("/action/abort") - before; n != 1 {
		t.Errorf("abort reached the cloud %d times", n)
	}

	// Cluster commands on the farm's queue.
	farm := "cmd/clusters/ultimakersystem-ccbdd30044ec"
	var queue []struct{ UUID string }
	watch.WaitFor(5*time.Second, "farm queue", func(m map[string]mqtttest.Message) bool {
		var c struct{ Queue []struct{ UUID string } }
		json.Unmarshal([]byte(m[farm+"/state"].Payload), &c)
		queue = c.Queue
		return len(queue) >= 2
	})
	last := queue[len(queue)-1].UUID
	if got := command(t, watch, farm+"/set", farm+"/response", `{"action":"move_to_top","job":"`+last+`","transaction":"m"}`, `"m"`); statuses(got) != "pending,ok" {
		t.Fatalf("move_to_top: %+v", got)
	}
	watch.WaitFor(10*time.Second, "moved", func(m map[string]mqtttest.Message) bool {
		var c struct{ Queue []struct{ UUID string } }
		json.Unmarshal([]byte(m[farm+"/state"].Payload), &c)
		return len(c.Queue) > 0 && c.Queue[0].UUID == last
	})
	if got := command(t, watch, farm+"/set", farm+"/response", `{"action":"force","job":"`+last+`","transaction":"f"}`, `"f"`); statuses(got) != "pending,ok" {
		t.Fatalf("force: %+v", got)
	}
	if got := command(t, watch, farm+"/set", farm+"/response", `{"action":"remove","job":"`+last+`","transaction":"x"}`, `"x"`); statuses(got) != "pending,ok" {
		t.Fatalf("remove: %+v", got)
	}

	// Bridge requests: print a library job, log maintenance done, refresh.
	farmID := w.sim.ClusterIDs()[1]
	got = command(t, watch, "cmd/bridge/request/print", "cmd/bridge/response/print",
		`{"cluster":"ultimakersystem-ccbdd30044ec","job_id":"TGlicmFyeUpvYkV4YW1wbGUwMDAwMDAwMDAwMDAwMDE=","transaction":"pr"}`, `"pr"`)
	if statuses(got) != "ok" || got[0].Data["job"] == "" {
		t.Fatalf("print: %+v", got)
	}
	got = command(t, watch, "cmd/bridge/request/maintenance_done", "cmd/bridge/response/maintenance_done",
		`{"cluster":"`+farmID+`","transaction":"md"}`, `"md"`)
	if statuses(got) != "ok" || w.sim.Requests("/maintenance") == 0 {
		t.Fatalf("maintenance_done: %+v", got)
	}
	// The pending maintenance is read again at once (not at the next hourly
	// poll), so a second maintenance_done finds nothing due (issue 9.9).
	watch.WaitFor(3*time.Second, "the task no longer due", func(m map[string]mqtttest.Message) bool {
		var c struct {
			Maintenance []struct {
				Code string
				Due  bool
			} `json:"maintenance"`
		}
		json.Unmarshal([]byte(m["cmd/clusters/ultimakersystem-ccbdd30044ec/state"].Payload), &c)
		for _, t := range c.Maintenance {
			if t.Code == "s5_clean_printer" {
				return !t.Due
			}
		}
		return false
	})
	got = command(t, watch, "cmd/bridge/request/maintenance_done", "cmd/bridge/response/maintenance_done",
		`{"cluster":"`+farmID+`","transaction":"md2"}`, `"md2"`)
	if len(got) != 1 || got[0].Error == nil || got[0].Error.Code != "conflict" {
		t.Fatalf("second maintenance_done: %+v", got)
	}
	if got := command(t, watch, "cmd/bridge/request/refresh", "cmd/bridge/response/refresh", `{"transaction":"rf"}`, `"rf"`); statuses(got) != "ok" {
		t.Fatalf("refresh: %+v", got)
	}

	// Reprint a job once the lab's aborted one is in its history.
	var recent string
	watch.WaitFor(40*time.Second, "a completed job", func(m map[string]mqtttest.Message) bool {
		var c struct {
			RecentlyCompleted []struct{ UUID string } `json:"recently_completed"`
		}
		json.Unmarshal([]byte(m["cmd/clusters/ultimakersystem-4b0fc38e95e3/state"].Payload), &c)
		if len(c.RecentlyCompleted) > 0 {
			recent = c.RecentlyCompleted[0].UUID
		}
		return recent != ""
	})
	labCluster := "cmd/clusters/ultimakersystem-4b0fc38e95e3"
	if got := command(t, watch, labCluster+"/set", labCluster+"/response", `{"action":"reprint","job":"`+recent+`","transaction":"rp"}`, `"rp"`); statuses(got) != "ok" {
		t.Fatalf("reprint: %+v", got)
	}
}

func TestReadOnlyCallsNothing(t *testing.T) {
	w := newWorld(t, "ro")
	watch := mqtttest.Watch(t, w.broker.URL(), "#")
	startBridge(t, append(slices.Clone(w.env), "READ_ONLY=true"))
	watch.WaitFor(10*time.Second, "states", func(m map[string]mqtttest.Message) bool { return hasAll(m, expectedTopics("ro")) })
	lab := "ro/printers/ultimakersystem-4b0fc38e95e3"
	for i, p := range []string{"pause", "abort", "snapshot", "resume"} {
		tx := `"ro` + string(rune('0'+i)) + `"`
		got := command(t, watch, lab+"/set", lab+"/response", `{"action":"`+p+`","transaction":`+tx+`}`, tx)
		if got[0].Error == nil || got[0].Error.Code != "read_only" {
			t.Errorf("%s: %+v", p, got)
		}
	}
	if n := w.sim.Requests("/action/"); n != 0 {
		t.Errorf("read-only mode sent %d actions", n)
	}
	// No buttons are offered in read-only mode.
	cfg := mqtttest.Retained(t, w.broker.URL(), "homeassistant/device/ultimaker2mqtt_ro_printer_ultimakersystem-4b0fc38e95e3/config", 300*time.Millisecond)
	for _, p := range cfg {
		if strings.Contains(p, `"button"`) {
			t.Error("read-only bridge offers buttons")
		}
	}
}

// TestPauseResumePairs: five pause/resume pairs, each command sent as soon
// as the state shows the one before took effect, are all carried out in
// order, and each is answered once (issue 19.1: a resume right after a
// pause was refused).
func TestPauseResumePairs(t *testing.T) {
	var mu sync.Mutex
	var actions []string
	w := fastWorldWith(t, "pairs", simulator.Options{OnAction: func(path string) {
		mu.Lock()
		actions = append(actions, path[strings.LastIndex(path, "/")+1:])
		mu.Unlock()
	}})
	watch := mqtttest.Watch(t, w.broker.URL(), "pairs/printers/#")
	// The cloud's action status moves a step per look, once a second: the
	// state shows a pause before its action settles, as it does in use.
	startBridge(t, append(w.env, "COMMAND_POLL_INTERVAL=1s"))
	lab := "pairs/printers/ultimakersystem-4b0fc38e95e3"
	jobStatus := func(m map[string]mqtttest.Message) string {
		var st struct{ Job *struct{ Status string } }
		if json.Unmarshal([]byte(m[lab+"/state"].Payload), &st) != nil || st.Job == nil {
			return ""
		}
		return st.Job.Status
	}
	var want []string
	for i := range 5 {
		for _, step := range []struct{ action, cloud, before string }{{"pause", "pause", "printing"}, {"resume", "print", "paused"}} {
			watch.WaitFor(20*time.Second, lab+" "+step.before, func(m map[string]mqtttest.Message) bool {
				return jobStatus(m) == step.before
			})
			watch.Publish(lab+"/set", fmt.Sprintf(`{"action":%q,"transaction":"%s-%d"}`, step.action, step.action, i), false)
			want = append(want, step.cloud)
		}
	}
	watch.WaitFor(20*time.Second, "printing again", func(m map[string]mqtttest.Message) bool { return jobStatus(m) == "printing" })
	finals := map[string][]string{}
	watch.WaitFor(20*time.Second, "ten final answers", func(map[string]mqtttest.Message) bool {
		clear(finals)
		for _, m := range watch.All() {
			var a answer
			if m.Topic != lab+"/response" || json.Unmarshal([]byte(m.Payload), &a) != nil || a.Status == "pending" {
				continue
			}
			code := ""
			if a.Error != nil {
				code = " " + a.Error.Code
			}
			finals[string(a.Transaction)] = append(finals[string(a.Transaction)], a.Status+code)
		}
		return len(finals) >= 10
	})
	for tx, got := range finals {
		if len(got) != 1 || got[0] != "ok" {
			t.Errorf("%s answered %v, want one ok", tx, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(actions, want) {
		t.Errorf("the cloud received %v, want %v", actions, want)
	}
}
