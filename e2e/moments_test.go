package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/activity"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// postPrint is how long the fast simulator's printer cools down after a
// print (a minute at 20×), and a little more.
const postPrint = 3500 * time.Millisecond

// eventMsg is an event as the bridge publishes it.
type eventMsg struct {
	state.Event
	Job *state.EventJob `json:"job"`
}

// eventsOf are the events of type typ of job seen on topic, in order.
func eventsOf(watch *mqtttest.Watcher, topic, typ, job string) []eventMsg {
	var out []eventMsg
	for _, m := range watch.All() {
		var e eventMsg
		if m.Topic == topic && json.Unmarshal([]byte(m.Payload), &e) == nil && e.Type == typ &&
			(job == "" || e.Job != nil && e.Job.UUID == job) {
			out = append(out, e)
		}
	}
	return out
}

// ready waits for the bridge started at or after since to say it is
// ready (every cluster polled).
func waitReady(t *testing.T, watch *mqtttest.Watcher, base string, since time.Time) {
	t.Helper()
	watch.WaitFor(20*time.Second, "the bridge ready", func(m map[string]mqtttest.Message) bool {
		var info struct {
			Ready     bool      `json:"ready"`
			StartedAt time.Time `json:"started_at"`
		}
		json.Unmarshal([]byte(m[base+"/bridge/info"].Payload), &info)
		return info.Ready && !info.StartedAt.Before(since.Truncate(time.Second))
	})
}

// TestEventsAcrossARestart: a print that ends while the bridge is stopped
// gives its print_finished once after the restart, late and saying since
// when, with a picture of the part still on the plate; a second restart
// gives nothing; the page's activity feed is the same after each restart
// (issue 27).
func TestEventsAcrossARestart(t *testing.T) {
	w := fastWorld(t, "moment")
	addr := freeAddr(t)
	env := append(slices.Clone(w.env), "HTTP_LISTEN="+addr, "CAMERA_INTERVAL=0")
	watch := mqtttest.Watch(t, w.broker.URL(), "moment/#")
	stop, _ := startBridge(t, env)
	waitReady(t, watch, "moment", time.Now().Add(-time.Minute))
	base := "moment/printers/" + farmHost
	job := jobOf(t, watch, base+"/state")
	before := feedOf(t, addr)
	if len(before) == 0 {
		// Something to carry over: an answer.
		watch.Publish("moment/printers/"+farmHost+"/set", `{"action":"refresh","transaction":"feed"}`, false)
		for deadline := time.Now().Add(10 * time.Second); len(before) == 0 && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			before = feedOf(t, addr)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the feed's copy is saved a second after its newest item
	if err, _ := stop(); err != nil {
		t.Fatal(err)
	}
	lastState := watch.Snapshot()[base+"/state"].Payload
	if err := w.sim.FinishJob(farmHost); err != nil {
		t.Fatal(err)
	}
	// Past its cool-down (3 s at the simulator's speed): the part waits
	// on the plate (12 s) when the bridge comes back.
	time.Sleep(postPrint)
	webcam := w.sim.Requests("get_webcam_snapshot")

	restarted := time.Now()
	stop, _ = startBridge(t, env)
	watch.WaitFor(20*time.Second, "the late print_finished", func(map[string]mqtttest.Message) bool {
		return len(eventsOf(watch, base+"/event", state.PrintFinished, job)) > 0
	})
	waitReady(t, watch, "moment", restarted)
	time.Sleep(500 * time.Millisecond) // the bridge's event topic has its copy just after
	e := eventsOf(watch, base+"/event", state.PrintFinished, job)[0]
	var was state.Printer
	json.Unmarshal([]byte(lastState), &was)
	if !e.Late || e.Since == nil || !e.Since.Equal(was.UpdatedAt) {
		t.Errorf("event %+v: want late, since %s (the state before the stop)", e.Event, was.UpdatedAt)
	}
	if n := len(eventsOf(watch, "moment/bridge/event", state.PrintFinished, job)); n != 1 {
		t.Errorf("%d print_finished on the bridge's event topic, want 1", n)
	}
	// The part was still on the plate: pictured, for this end.
	watch.WaitFor(20*time.Second, "the picture of the late end", func(map[string]mqtttest.Message) bool {
		return slices.ContainsFunc(snapshots(watch, base+"/snapshot"), func(s snapshotMsg) bool {
			return s.Job == job && s.Event == state.PrintFinished
		})
	})
	if n := w.sim.Requests("get_webcam_snapshot") - webcam; n != 1 {
		t.Errorf("%d webcam actions, want 1", n)
	}
	// The feed came back, with the late end in it.
	after := feedOf(t, addr)
	for _, it := range before {
		if !slices.ContainsFunc(after, func(a activity.Item) bool { return a.ID == it.ID }) {
			t.Errorf("the feed lost %+v at the restart", it)
		}
	}
	if !slices.ContainsFunc(after, func(a activity.Item) bool { return a.Event == state.PrintFinished && a.Late }) {
		t.Errorf("the feed has no late print_finished: %+v", after)
	}
	time.Sleep(1500 * time.Millisecond)
	if err, _ := stop(); err != nil {
		t.Fatal(err)
	}

	// Once more, with nothing new: nothing.
	restarted = time.Now()
	stop, _ = startBridge(t, env)
	waitReady(t, watch, "moment", restarted)
	time.Sleep(3 * time.Second) // a few polls
	if n := len(eventsOf(watch, base+"/event", state.PrintFinished, job)); n != 1 {
		t.Errorf("%d print_finished after the second restart, want still 1", n)
	}
	for _, m := range watch.All() {
		var e eventMsg
		if strings.HasSuffix(m.Topic, "/event") && !m.At.Before(restarted) && json.Unmarshal([]byte(m.Payload), &e) == nil && e.Late {
			t.Errorf("a late event after a restart with no change: %s %s", m.Topic, m.Payload)
		}
	}
	if again := feedOf(t, addr); len(again) < len(after) {
		t.Errorf("the feed has %d items after the second restart, %d before", len(again), len(after))
	}
	stop()
}

// TestEventsAcrossARestartWithTheLAN: with the cloud and the LAN both
// reading a printer, restarts with no change yield no event (the cloud's
// fields arriving after the LAN's first reading are not news), and a
// print that ended meanwhile yields one (issue 27).
func TestEventsAcrossARestartWithTheLAN(t *testing.T) {
	w := fastWorld(t, "both")
	_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	env := append(slices.Clone(w.env), "LOCAL_PRINTERS="+addr, "LOCAL_POLL_INTERVAL=300ms", "CAMERA_INTERVAL=0",
		"LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "both/#")
	base := "both/printers/" + labS5
	for i := range 3 {
		started := time.Now()
		stop, _ := startBridge(t, env)
		waitReady(t, watch, "both", started)
		time.Sleep(2 * time.Second)
		if err, _ := stop(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue
		}
		// The simulator's printers go on printing meanwhile; what must not
		// come is what a restart makes up: a late event of the printer
		// nothing happened to, or news of what the cloud adds to the
		// LAN's first reading.
		for _, m := range watch.All() {
			var e eventMsg
			if !strings.HasSuffix(m.Topic, "/event") || m.At.Before(started) || json.Unmarshal([]byte(m.Payload), &e) != nil {
				continue
			}
			made := e.Late && e.Printer == labS5
			switch e.Type {
			case state.MaintenanceDue, state.FirmwareUpdateAvailable, state.PrinterOnline, state.PrinterOffline:
				made = true
			}
			if made {
				t.Errorf("restart %d with no change: %s %s", i, m.Topic, m.Payload)
			}
		}
	}
	job := jobOf(t, watch, base+"/state")
	if err := w.sim.FinishJob(labS5); err != nil {
		t.Fatal(err)
	}
	time.Sleep(postPrint)
	stop, _ := startBridge(t, env)
	watch.WaitFor(20*time.Second, "the late print_finished", func(map[string]mqtttest.Message) bool {
		return len(eventsOf(watch, base+"/event", state.PrintFinished, job)) > 0
	})
	time.Sleep(2 * time.Second)
	if got := eventsOf(watch, base+"/event", state.PrintFinished, job); len(got) != 1 || !got[0].Late {
		t.Errorf("print_finished events %+v, want one, late", got)
	}
	stop()
}

// TestEventsAcrossABrokerOutage: a print that ends while the broker is
// down gives its print_finished when the broker is back, late, with its
// original time, once (issue 27).
func TestEventsAcrossABrokerOutage(t *testing.T) {
	w := fastWorld(t, "blink")
	w.broker = mqtttest.StartPersistent(t)
	for i, kv := range w.env {
		if strings.HasPrefix(kv, "MQTT_URL=") {
			w.env[i] = "MQTT_URL=" + w.broker.URL()
		}
	}
	addr := freeAddr(t)
	env := append(slices.Clone(w.env), "HTTP_LISTEN="+addr, "CAMERA_INTERVAL=0")
	// A session of its own: what the bridge sends while this watcher is
	// reconnecting after the outage is kept for it.
	watch := mqtttest.WatchSession(t, w.broker.URL(), "blink/#", "blink-watcher")
	startBridge(t, env)
	waitReady(t, watch, "blink", time.Now().Add(-time.Minute))
	base := "blink/printers/" + farmHost
	job := jobOf(t, watch, base+"/state")

	w.broker.Stop()
	if err := w.sim.FinishJob(farmHost); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	// The bridge sees the end and holds the event.
	for deadline := time.Now().Add(15 * time.Second); metric(t, addr, "ultimaker2mqtt_mqtt_held_messages") < 2; {
		if time.Now().After(deadline) {
			t.Fatal("no event held while the broker was down")
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.broker.Restart()
	watch.WaitFor(20*time.Second, "the held print_finished", func(map[string]mqtttest.Message) bool {
		return len(eventsOf(watch, base+"/event", state.PrintFinished, job)) > 0
	})
	time.Sleep(2 * time.Second)
	got := eventsOf(watch, base+"/event", state.PrintFinished, job)
	if len(got) != 1 || !got[0].Late || got[0].Time.After(time.Now()) || got[0].Time.Before(ended.Add(-5*time.Second)) {
		t.Errorf("print_finished events %+v, want one, late, of the moment it ended (%s)", got, ended)
	}
	if n := len(eventsOf(watch, "blink/bridge/event", state.PrintFinished, job)); n != 1 {
		t.Errorf("%d print_finished on the bridge's event topic, want 1", n)
	}
	if n := metric(t, addr, "ultimaker2mqtt_mqtt_held_messages"); n != 0 {
		t.Errorf("%v messages still held", n)
	}
	// The picture taken at the end, while the broker was down, is there.
	watch.WaitFor(15*time.Second, "the picture of the end", func(m map[string]mqtttest.Message) bool {
		var s snapshotMsg
		json.Unmarshal([]byte(m[base+"/snapshot"].Payload), &s)
		return s.Job == job && s.Event == state.PrintFinished && s.Size > 0
	})
}

// feedOf is the page's activity feed.
func feedOf(t *testing.T, addr string) []activity.Item {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/feed")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var items []activity.Item
	if err := json.NewDecoder(resp.Body).Decode(&items); err != nil {
		t.Fatal(err)
	}
	return items
}

// metric is the value of a series on /metrics, 0 when absent.
func metric(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			json.Unmarshal([]byte(v), &f)
			return f
		}
	}
	return 0
}

// TestGroupTakeoverEventsOnce: a member of a group freezes and dies while
// a print on one of its printers ends; the member that takes the printer
// over gives its print_finished once, late (issue 27).
func TestGroupTakeoverEventsOnce(t *testing.T) {
	const base = "gev"
	sim, broker, env := groupWorldOf(t, base, simulator.Options{Speed: 20, ExtraPrinters: 6})
	env = append(env, "CAMERA_INTERVAL=0")
	clusters := len(sim.ClusterIDs())
	watch := mqtttest.Watch(t, broker.URL(), base+"/#")
	members := map[string]*member{}
	for _, id := range []string{"m1", "m2"} {
		// A keepalive long enough for the frozen member to stay in the
		// group until it is killed.
		members[id] = startMember(t, env, id, "MQTT_KEEPALIVE=10s")
	}
	watch.WaitFor(45*time.Second, "two members dealing the clusters", func(last msgs) bool {
		return dealt(last, base, clusters, "m1", "m2")
	})
	var victim, target, job string
	for _, id := range []string{"m1", "m2"} {
		owned := ownedPrinters(farmPrinters(watch.Snapshot(), base), id, "m1", "m2")
		for _, p := range farmPrinters(watch.Snapshot(), base) {
			if slices.Contains(owned, p.ID) && p.Status == "printing" && p.Job != nil {
				victim, target, job = id, p.ID, p.Job.UUID
			}
		}
	}
	if target == "" {
		t.Fatal("no member owns a printing printer")
	}
	// One feed for the whole group: what one member shows, the other shows
	// a moment later (each adds its own events and answers, and shares
	// them). An answer from each, to be sure both have added something.
	for _, id := range []string{"m1", "m2"} {
		if owned := ownedPrinters(farmPrinters(watch.Snapshot(), base), id, "m1", "m2"); len(owned) > 0 {
			watch.Publish(base+"/printers/"+owned[0]+"/set", `{"action":"no_such_action"}`, false)
		}
	}
	time.Sleep(3 * time.Second)
	feeds := map[string][]activity.Item{}
	for id, mb := range members {
		var items []activity.Item
		getJSON(t, mb.http+"/api/feed", &items)
		feeds[id] = items
	}
	time.Sleep(1500 * time.Millisecond)
	for id, mb := range members {
		var later []activity.Item
		getJSON(t, mb.http+"/api/feed", &later)
		for other, items := range feeds {
			for _, it := range items {
				if !slices.ContainsFunc(later, func(l activity.Item) bool { return l.ID == it.ID }) {
					t.Errorf("member %s's feed lacks %s's item %+v", id, other, it)
				}
			}
		}
	}
	origins := map[string]bool{}
	for _, it := range feeds["m1"] {
		origins[strings.SplitN(it.ID, ".", 2)[0]] = true
	}
	if !origins["m1"] || !origins["m2"] {
		t.Errorf("m1's feed has items of %v, want both members'", origins)
	}

	m := members[victim]
	m.cmd.Process.Signal(syscall.SIGSTOP)
	if err := sim.FinishJob(target); err != nil {
		t.Fatal(err)
	}
	time.Sleep(postPrint) // the part waits on the plate now
	m.cmd.Process.Signal(syscall.SIGKILL)
	topic := base + "/printers/" + target + "/event"
	watch.WaitFor(30*time.Second, "the print_finished from the group", func(msgs) bool {
		return len(eventsOf(watch, topic, state.PrintFinished, job)) > 0
	})
	time.Sleep(4 * time.Second) // a second one would be here by now
	got := eventsOf(watch, topic, state.PrintFinished, job)
	if len(got) != 1 || !got[0].Late || got[0].Since == nil {
		t.Errorf("print_finished events %+v, want one, late, since the dead member's last state", got)
	}
	t.Logf("member %s frozen and killed as %s finished: %d print_finished, late %v", victim, target, len(got),
		len(got) > 0 && got[0].Late)
}
