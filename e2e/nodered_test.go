package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
)

// flowNodes reads the example Node-RED flows (flow.json, values-flow.json),
// by node id.
func flowNodes(t *testing.T) map[string]map[string]any {
	t.Helper()
	byID := map[string]map[string]any{}
	for _, f := range []string{"flow.json", "values-flow.json"} {
		for id, n := range readFlow(t, "../examples/node-red/"+f) {
			byID[id] = n
		}
	}
	return byID
}

func readFlow(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []map[string]any
	if err := json.Unmarshal(b, &nodes); err != nil {
		t.Fatal(err)
	}
	byID := map[string]map[string]any{}
	for _, n := range nodes {
		byID[n["id"].(string)] = n
	}
	return byID
}

// TestNodeRedFlowFunctions runs the flow's own functions in node: a
// status line names the printer and passes only changes; an empty state
// says once that the printer left; empty events and answers pass
// nothing; the pause command remembers its transaction, and only answers
// that carry it pass, pending ones without forgetting it (issues 9.17,
// 23).
func TestNodeRedFlowFunctions(t *testing.T) {
	byID := flowNodes(t)
	next := func(id string, out int) map[string]any {
		ws := asList(asList(byID[id]["wires"])[out])
		return byID[ws[0].(string)]
	}
	for _, in := range []string{"u2m_state_in", "u2m_event_in", "u2m_response_in"} {
		if dt := byID[in]["datatype"]; dt != "auto-detect" {
			t.Errorf("%s parses %v: an empty message (a cleared topic) makes Node-RED log a JSON error", in, dt)
		}
		if next(in, 0)["type"] != "function" {
			t.Errorf("%s does not go through a function that handles empty messages", in)
		}
	}
	if next("u2m_response_in", 0)["id"] != "u2m_match_tx" || next("u2m_match_tx", 0)["id"] != "u2m_answer" {
		t.Fatal("answers do not pass the matching function before the status switch")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: ./test.sh installs it (Debian packages nodejs, npm)")
	}
	fn := func(id string) string {
		return "new Function('msg', 'flow', 'node', " + jsString(byID[id]["func"].(string)) + ")"
	}
	script := `
const ctx = {}; const flow = {get: k => ctx[k], set: (k, v) => { ctx[k] = v; }};
const warned = []; const node = {warn: m => warned.push(m)};
const track = ` + fn("u2m_track") + `, objects = ` + fn("u2m_event_objects") + `;
const pause = ` + fn("u2m_pause_cmd") + `, match = ` + fn("u2m_match_tx") + `, value = ` + fn("u2m_attr_line") + `;
const t = 'ultimaker/printers/p1/state';
const show = r => r === null ? '-' : r.map(m => m ? m.payload : '.').join('|');
const out = [];
for (const p of [{friendly_name: 'Lab', status: 'idle'}, {friendly_name: 'Lab', status: 'idle'},
                 {friendly_name: 'Lab', status: 'printing'}, '', '', 'garbage']) {
  out.push(show(track({topic: t, payload: p}, flow, node)));
}
out.push(objects({topic: 'e', payload: ''}, flow, node) === null ? 'dropped' : 'passed');
const sent = pause({_msgid: 'abc'}, flow, node);
const tx = sent.payload.transaction;
for (const a of ['', {transaction: 'other', status: 'ok'}, {transaction: tx, status: 'pending'},
                 {transaction: tx, status: 'ok'}, {transaction: tx, status: 'ok'}, {status: 'error'}]) {
  out.push(match({payload: a}, flow, node) ? a.status : '-');
}
for (const [topic, p] of [['ultimaker/printers/p1/state/job/progress', 42.7], ['ultimaker/printers/p1/state/job/progress', ''],
                         ['ultimaker/printers/p1/state/status', 'printing'], ['ultimaker/printers/p1/state/status', null]]) {
  const r = value({topic: topic, payload: p}, flow, node);
  out.push(r ? r.payload : '-');
}
console.log(sent.payload.action + ' ' + tx.startsWith('nr-') + '\n' + out.join('\n') + '\nwarned ' + warned.length);`
	got, err := exec.Command(node, "-e", script).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, got)
	}
	want := `pause true
Lab (p1): idle|.
-
Lab (p1): idle -> printing|.
.|Lab (p1) left
-
-
dropped
-
-
pending
ok
-
-
p1: 42%
p1: no job/progress any more
p1: status printing
-
warned 1`
	if strings.TrimSpace(string(got)) != want {
		t.Errorf("flow functions printed\n%s\nwant\n%s", got, want)
	}
}

// nodeRED is where test.sh installs Node-RED (npm's node-red package).
func nodeRED(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("NODE_RED_DIR")
	if dir == "" {
		cache, _ := os.UserCacheDir()
		dir = filepath.Join(cache, "ultimaker2mqtt", "node-red")
	}
	red := filepath.Join(dir, "node_modules", "node-red", "red.js")
	if _, err := os.Stat(red); err != nil {
		t.Fatalf("Node-RED is not installed at %s: ./test.sh installs it (npm install --prefix %s node-red@4.1.8), "+
			"or set NODE_RED_DIR", dir, dir)
	}
	return red
}

// TestNodeRedFlowInNodeRed runs the example flows in a real Node-RED
// against the bridge (with per-attribute topics), the simulator and
// mosquitto, as a user imports them: printers' status lines arrive with
// their names, single values on their own topics, the pause command's
// answer is picked out, and a printer that leaves the account is said to
// have left, once, with nothing logged as an error (issues 20, 23).
func TestNodeRedFlowInNodeRed(t *testing.T) {
	red := nodeRED(t)
	w := fastWorld(t, "ultimaker")
	startBridge(t, append(w.env, "MQTT_OUTPUT=attribute_and_json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "ultimaker/printers/+/state")
	watch.WaitFor(15*time.Second, "the MakerBot", func(m map[string]mqtttest.Message) bool {
		return m["ultimaker/printers/makerbot-method-x-23a9/state"].Payload != ""
	})

	// The flow as a user imports it, pointed at the test's broker; its
	// debug nodes also write to the log, where the test reads them.
	var nodes []map[string]any
	for _, n := range flowNodes(t) {
		switch n["type"] {
		case "mqtt-broker":
			host, port, _ := strings.Cut(strings.TrimPrefix(w.broker.URL(), "tcp://"), ":")
			n["broker"], n["port"] = host, port
		case "debug":
			n["console"] = true
		}
		nodes = append(nodes, n)
	}
	dir := t.TempDir()
	flow, _ := json.Marshal(nodes)
	if err := os.WriteFile(filepath.Join(dir, "flows.json"), flow, 0o600); err != nil {
		t.Fatal(err)
	}
	port := strings.Split(freeAddr(t), ":")[1]
	cmd := exec.Command("node", red, "--userDir", dir, "--port", port, "flows.json")
	cmd.Env = append(os.Environ(), "NODE_RED_ENABLE_PROJECTS=false")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	log := &syncBuffer{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
		}
	}()
	defer func() {
		if t.Failed() {
			t.Logf("Node-RED log:\n%s", log.String())
		}
	}()
	waitLog := func(what string, within time.Duration, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond(log.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("Node-RED never logged %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLog("the status of the MakerBot, as a state and as a value", 30*time.Second, func(l string) bool {
		return strings.Contains(l, "Method-X-1 (makerbot-method-x-23a9):") && strings.Contains(l, "makerbot-method-x-23a9: status ")
	})

	// The flow's pause button, pressed through Node-RED's own API: its
	// answer (ok: the Lab S5 prints at start) comes out of the answer
	// debug.
	resp, err := http.Post("http://127.0.0.1:"+port+"/inject/u2m_pause_button", "application/json", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("press the pause button: %v %v", err, resp)
	}
	resp.Body.Close()
	waitLog("the pause's answer", 20*time.Second, func(l string) bool {
		return strings.Contains(l, `action: 'pause'`) && strings.Contains(l, `status: 'ok'`)
	})

	// The MakerBot's cluster leaves the account: the bridge clears its
	// printer's topics, and the flow says so once.
	w.sim.RemoveCluster(w.sim.ClusterIDs()[2])
	waitLog("that the MakerBot left", 20*time.Second, func(l string) bool {
		return strings.Contains(l, "Method-X-1 (makerbot-method-x-23a9) left") &&
			strings.Contains(l, "makerbot-method-x-23a9: no status any more")
	})
	time.Sleep(time.Second)
	l := log.String()
	if n := strings.Count(l, "makerbot-method-x-23a9) left"); n != 1 {
		t.Errorf("the flow said %d times that the MakerBot left, want once", n)
	}
	for _, line := range strings.Split(l, "\n") {
		if strings.Contains(line, "[error]") {
			t.Errorf("Node-RED logged an error: %s", line)
		}
	}
}
