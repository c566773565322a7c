package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/group"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testlog"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// msgs are the latest messages a watcher saw, by topic.
type msgs = map[string]mqtttest.Message

// member is one bridge of a group, run as its own process.
type member struct {
	id   string
	cmd  *exec.Cmd
	logs *testlog.Buffer
	done chan error
	http string // its farm page, API and /healthz
}

// startMember runs the built command as member id of group "farm", with
// its HTTP endpoint on a free loopback port (m.http); extra settings come
// last (they win).
func startMember(t *testing.T, env []string, id string, extra ...string) *member {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	m := &member{id: id, logs: &testlog.Buffer{}, done: make(chan error, 1), http: "http://" + addr}
	m.cmd = exec.Command(binary, "run")
	m.cmd.Env = append(slices.Clone(env), "INSTANCE_GROUP=farm", "INSTANCE_ID="+id, "MQTT_KEEPALIVE=2s",
		"HTTP_LISTEN="+addr)
	m.cmd.Env = append(m.cmd.Env, extra...)
	m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		<-m.done
		if t.Failed() {
			t.Logf("member %s logged:\n%s", id, m.logs.String())
		}
	})
	return m
}

// groupWorld is mosquitto and a simulator with 34 clusters, half of its
// printers printing.
func groupWorld(t *testing.T, base string) (*simulator.Server, *mqtttest.Broker, []string, *actions) {
	t.Helper()
	acts := &actions{}
	sim, broker, env := groupWorldOf(t, base, simulator.Options{Speed: 1, ExtraPrinters: 30, OnAction: acts.add})
	return sim, broker, env, acts
}

// groupWorldOf is mosquitto and a calm simulator with opts, and the
// environment of the group's members.
func groupWorldOf(t *testing.T, base string, opts simulator.Options) (*simulator.Server, *mqtttest.Broker, []string) {
	t.Helper()
	broker := mqtttest.Start(t)
	opts.Seed, opts.Tokens, opts.Calm = 5, []string{testToken}, true
	sim := simulator.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	env := []string{
		"MQTT_URL=" + broker.URL(), "MQTT_BASE_TOPIC=" + base,
		"ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath, "ULTIMAKER_API_TOKEN=" + testToken,
		"POLL_INTERVAL=1s", "POLL_IDLE_INTERVAL=1s", "POLL_OFFLINE_INTERVAL=1s", "POLL_CLUSTERS_INTERVAL=5s",
		"HA_DISCOVERY=false", "LOG_FORMAT=json", "LOG_LEVEL=info",
	}
	return sim, broker, env
}

// actions counts the simulator's printer and print-job actions by path.
type actions struct {
	mu    sync.Mutex
	paths []string
}

func (a *actions) add(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.paths = append(a.paths, path)
}

func (a *actions) count(sub string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.paths {
		if strings.Contains(p, sub) {
			n++
		}
	}
	return n
}

// announcement is what the test reads of a member's announcement.
type announcement struct {
	ID    string   `json:"id"`
	Sees  []string `json:"sees"`
	Share struct {
		Leader   bool `json:"leader"`
		Clusters int  `json:"clusters"`
	} `json:"share"`
}

// shares are the live members' announcements, by id.
func shares(last map[string]mqtttest.Message, base string) map[string]announcement {
	out := map[string]announcement{}
	for topic, m := range last {
		id, ok := strings.CutPrefix(topic, base+"/bridge/members/")
		if !ok || m.Payload == "" {
			continue
		}
		var a announcement
		if json.Unmarshal([]byte(m.Payload), &a) == nil {
			out[id] = a
		}
	}
	return out
}

// dealt reports whether exactly ids are live, each sees them all, one
// leads, and their shares add up to clusters.
func dealt(last map[string]mqtttest.Message, base string, clusters int, ids ...string) bool {
	got := shares(last, base)
	if len(got) != len(ids) {
		return false
	}
	sum, leaders := 0, 0
	for _, id := range ids {
		a, ok := got[id]
		if !ok || !slices.Equal(a.Sees, ids) || a.Share.Clusters == 0 && len(ids) < clusters {
			return false
		}
		sum += a.Share.Clusters
		if a.Share.Leader {
			leaders++
		}
	}
	return sum == clusters && leaders == 1
}

// TestGroupSharesAndTakesOver runs three members as processes: they deal
// the 34 clusters between them with none polled twice, a kill -9 hands
// the dead member's share to the others (its printers published again,
// a command sent to one of them at the kill answered once and carried
// out once), a duplicate INSTANCE_ID is refused, a clean stop hands over
// at once, and the bridge is offline only when the last member is gone.
func TestGroupSharesAndTakesOver(t *testing.T) {
	const base = "grp"
	sim, broker, env, acts := groupWorld(t, base)
	clusters := len(sim.ClusterIDs())
	watch := mqtttest.Watch(t, broker.URL(), base+"/#")
	members := map[string]*member{}
	for _, id := range []string{"m1", "m2", "m3"} {
		members[id] = startMember(t, env, id)
	}
	watch.WaitFor(45*time.Second, "three members dealing the clusters", func(last map[string]mqtttest.Message) bool {
		return dealt(last, base, clusters, "m1", "m2", "m3") && len(farmPrinters(last, base)) == 36
	})
	if m, _ := watch.Last(base + "/bridge/state"); m.Payload != "online" {
		for _, m := range watch.All() {
			if strings.Contains(m.Topic, "/members/") || strings.HasSuffix(m.Topic, "bridge/state") {
				t.Logf("%s %q", m.Topic, m.Payload)
			}
		}
		t.Fatalf("bridge/state = %q, want online", m.Payload)
	}

	printers := farmPrinters(watch.Snapshot(), base)

	// Every member's page and API show the whole farm, and each is healthy,
	// whatever its share.
	for id, m := range members {
		// The others' states reach it as they reach the watcher: give them
		// a moment.
		var listed []json.RawMessage
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			listed = nil
			getJSON(t, m.http+"/api/printers", &listed)
			if len(listed) == len(printers) || time.Now().After(deadline) {
				break
			}
		}
		if len(listed) != len(printers) {
			t.Errorf("member %s's API lists %d printers, want the farm's %d", id, len(listed), len(printers))
		}
		var health struct {
			Healthy bool          `json:"healthy"`
			Checks  []healthCheck `json:"checks"`
		}
		getJSON(t, m.http+"/healthz", &health)
		if !health.Healthy || !slices.ContainsFunc(health.Checks, func(c healthCheck) bool { return c.Name == "group" }) {
			t.Errorf("member %s: /healthz %+v; want healthy, with a group check", id, health)
		}
	}

	// The broker restarts empty: every member reconnects and rejoins, and
	// the farm's retained state comes back (a newcomer to the broker sees
	// it all).
	broker.Restart()
	restarted := time.Now()
	for {
		got := mqtttest.Retained(t, broker.URL(), base+"/#", 500*time.Millisecond)
		last := map[string]mqtttest.Message{}
		for topic, p := range got {
			last[topic] = mqtttest.Message{Topic: topic, Payload: p}
		}
		if dealt(last, base, clusters, "m1", "m2", "m3") && len(farmPrinters(last, base)) == 36 &&
			got[base+"/bridge/state"] == "online" && got[base+"/bridge/info"] != "" {
			break
		}
		if time.Since(restarted) > time.Minute {
			t.Fatalf("a minute after a broker restart the farm is not back: %d printer states, members %v",
				len(farmPrinters(last, base)), shares(last, base))
		}
	}
	t.Logf("broker restart: the farm's retained state back after %s", time.Since(restarted).Round(100*time.Millisecond))

	// The member that leads does the account's work; kill another one.
	var victim string
	for id, a := range shares(watch.Snapshot(), base) {
		if !a.Share.Leader {
			victim = id
		}
	}
	owned := ownedPrinters(printers, victim, "m1", "m2", "m3")
	if len(owned) == 0 {
		t.Fatalf("member %s owns no printer", victim)
	}
	target := owned[0]
	watch.Reset()
	killed := time.Now()
	members[victim].cmd.Process.Signal(syscall.SIGKILL)
	// A command for one of its printers, sent as it dies: kept by the
	// member that will own it, carried out after the takeover.
	watch.Publish(base+"/printers/"+target+"/set", `{"action":"snapshot","transaction":"at-the-kill"}`, false)
	rest := slices.DeleteFunc([]string{"m1", "m2", "m3"}, func(id string) bool { return id == victim })
	watch.WaitFor(30*time.Second, "the others taking the dead member's share", func(last msgs) bool {
		return dealt(last, base, clusters, rest...)
	})
	watch.WaitFor(30*time.Second, "the dead member's printers published again", func(last msgs) bool {
		for _, p := range owned {
			if m, ok := last[base+"/printers/"+p+"/state"]; !ok || m.Payload == "" {
				return false
			}
		}
		return true
	})
	t.Logf("kill -9 of %s: its %d printers published again by the others %s after", victim, len(owned),
		time.Since(killed).Round(100*time.Millisecond))
	watch.WaitFor(30*time.Second, "the command sent at the kill answered", func(map[string]mqtttest.Message) bool {
		return answersTo(watch.All(), "at-the-kill") > 0
	})
	time.Sleep(2 * time.Second) // a second answer would come by now
	if n := answersTo(watch.All(), "at-the-kill"); n != 1 {
		for _, m := range watch.All() {
			if strings.Contains(m.Payload, "at-the-kill") {
				t.Logf("%s %s", m.Topic, m.Payload)
			}
		}
		t.Errorf("the command sent at the kill was answered %d times, want once", n)
	}
	if m, _ := watch.Last(base + "/bridge/state"); m.Payload == "offline" {
		t.Errorf("bridge/state went offline while two members live")
	}

	// A command to a live member's printer: answered once, sent once.
	before := acts.count("/action/pause")
	var printing string
	for _, p := range farmPrinters(watch.Snapshot(), base) {
		if p.Status == "printing" && p.Job != nil {
			printing = p.ID
			break
		}
	}
	if printing != "" {
		watch.Publish(base+"/printers/"+printing+"/set", `{"action":"pause","transaction":"live"}`, false)
		watch.WaitFor(20*time.Second, "the pause answered", func(msgs) bool {
			return answersTo(watch.All(), "live") > 0
		})
		time.Sleep(2 * time.Second)
		if n := answersTo(watch.All(), "live"); n != 1 {
			t.Errorf("the pause was answered %d times, want once", n)
		}
		for _, m := range watch.All() {
			if strings.HasSuffix(m.Topic, "/response") && strings.Contains(m.Payload, `"transaction":"live"`) &&
				!strings.Contains(m.Payload, `"status":"pending"`) && !strings.Contains(m.Payload, `"status":"ok"`) {
				t.Errorf("the pause's answer: %s", m.Payload)
			}
		}
		if n := acts.count("/action/pause") - before; n != 1 {
			t.Errorf("the pause reached the cloud %d times, want once", n)
		}
	}

	// A second process with a live member's id is refused.
	dup := startMember(t, env, rest[0])
	select {
	case err := <-dup.done:
		dup.done <- err
		if err == nil || !strings.Contains(dup.logs.String(), "duplicate INSTANCE_ID") {
			t.Errorf("duplicate member exited with %v; logs:\n%s", err, dup.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("a member with a duplicate INSTANCE_ID kept running")
	}

	// A clean stop: the last one takes everything at once.
	members[rest[0]].cmd.Process.Signal(syscall.SIGTERM)
	<-members[rest[0]].done
	members[rest[0]].done <- nil
	watch.WaitFor(20*time.Second, "the last member taking the whole farm", func(last map[string]mqtttest.Message) bool {
		return dealt(last, base, clusters, rest[1])
	})
	if m, _ := watch.Last(base + "/bridge/state"); m.Payload != "online" {
		t.Errorf("bridge/state = %q after a clean stop of one of two members, want online", m.Payload)
	}
	// The last member killed: its held will says the bridge is offline.
	members[rest[1]].cmd.Process.Signal(syscall.SIGKILL)
	watch.WaitFor(20*time.Second, "bridge/state offline after the last member died", func(last msgs) bool {
		return last[base+"/bridge/state"].Payload == "offline"
	})
}

type healthCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// farmPrinters are the printers' states seen, decoded.
func farmPrinters(last map[string]mqtttest.Message, base string) []farmPrinter {
	var out []farmPrinter
	for topic, m := range last {
		if !strings.HasPrefix(topic, base+"/printers/") || !strings.HasSuffix(topic, "/state") || m.Payload == "" {
			continue
		}
		var p farmPrinter
		if json.Unmarshal([]byte(m.Payload), &p) == nil {
			out = append(out, p)
		}
	}
	return out
}

type farmPrinter struct {
	ID        string `json:"id"`
	ClusterID string `json:"cluster_id"`
	Status    string `json:"status"`
	Job       *struct {
		UUID string `json:"uuid"`
	} `json:"job"`
}

// ownedPrinters are the printers whose cluster falls to member id among
// live, by the group's own rule.
func ownedPrinters(states []farmPrinter, id string, live ...string) []string {
	var owned []string
	for _, p := range states {
		if p.ClusterID != "" && group.OwnerAmong(p.ClusterID, live) == id {
			owned = append(owned, p.ID)
		}
	}
	return owned
}

// answersTo counts the final answers (not pending) that carry
// transaction tx.
func answersTo(msgs []mqtttest.Message, tx string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/response") && strings.Contains(m.Payload, fmt.Sprintf("%q", tx)) &&
			!strings.Contains(m.Payload, `"status":"pending"`) {
			n++
		}
	}
	return n
}
