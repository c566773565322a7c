package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

const (
	labS5    = "ultimakersystem-4b0fc38e95e3" // a single S5, printing at start
	farmHost = "ultimakersystem-ccbdd30044ec" // host of a group of three, with a queue
)

// serveLocal serves the LAN API of the printer name on a loopback port of
// its own, as a printer on the network would.
func serveLocal(t *testing.T, sim *simulator.Server, name string, opts simulator.LocalOptions) (*simulator.LocalPrinter, string) {
	t.Helper()
	lp, err := sim.LocalPrinter(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lp)
	t.Cleanup(srv.Close)
	return lp, strings.TrimPrefix(srv.URL, "http://")
}

// lanEnv is the environment of a bridge that reads only the LAN: no cloud
// variable at all.
func lanEnv(w *world, base string, hosts ...string) []string {
	var env []string
	for _, kv := range w.env {
		if !strings.HasPrefix(kv, "ULTIMAKER_") {
			env = append(env, kv)
		}
	}
	return append(env, "LOCAL_PRINTERS="+strings.Join(hosts, ","), "LOCAL_POLL_INTERVAL=500ms", "LOCAL_PAIR_TIMEOUT=3s",
		"COMMAND_TIMEOUT=10s")
}

// printerState is the part of a printer's state the LAN tests read.
type printerState struct {
	Status    string `json:"status"`
	Source    string `json:"source"`
	Online    bool   `json:"online"`
	LocalAuth string `json:"local_auth"`
	Job       *struct {
		UUID, Name, Status string
	} `json:"job"`
	Extruders []struct {
		Material          string   `json:"material"`
		HotendTemperature *float64 `json:"hotend_temperature"`
		HotendTarget      *float64 `json:"hotend_target"`
	} `json:"extruders"`
	BuildPlate *struct {
		Temperature *float64 `json:"temperature"`
		Target      *float64 `json:"target"`
	} `json:"build_plate"`
	Camera *struct {
		SnapshotURL string `json:"snapshot_url"`
		StreamURL   string `json:"stream_url"`
	} `json:"camera"`
	Firmware struct {
		Latest string `json:"latest"`
	} `json:"firmware"`
	Maintenance struct {
		TasksDue []string `json:"tasks_due"`
	} `json:"maintenance"`
}

// waitOnline waits for the bridge's "online": its command topics are
// subscribed from then on.
func waitOnline(t *testing.T, watch *mqtttest.Watcher, base string) {
	t.Helper()
	watch.WaitFor(10*time.Second, "bridge online", func(m map[string]mqtttest.Message) bool {
		return m[base+"/bridge/state"].Payload == "online"
	})
}

func stateOf(t *testing.T, m map[string]mqtttest.Message, topic string) (printerState, bool) {
	t.Helper()
	msg, ok := m[topic]
	if !ok || msg.Payload == "" {
		return printerState{}, false
	}
	var st printerState
	if err := json.Unmarshal([]byte(msg.Payload), &st); err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	return st, true
}

func TestLANOnlyPrinterPairedCommands(t *testing.T) {
	for _, algo := range []string{"MD5", "SHA-256"} {
		t.Run(algo, func(t *testing.T) {
			base := "lan" + strings.ToLower(strings.ReplaceAll(algo, "-", ""))
			w := fastWorld(t, base)
			lp, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{Algorithm: algo, ApproveAfter: 300 * time.Millisecond})
			authFile := filepath.Join(t.TempDir(), "local-auth.json")
			env := append(lanEnv(w, base, addr), "LOCAL_AUTH_FILE="+authFile)
			watch := mqtttest.Watch(t, w.broker.URL(), base+"/#")
			_, logs := startBridge(t, env)
			stateTopic := base + "/printers/" + labS5 + "/state"

			watch.WaitFor(10*time.Second, "the LAN printer's state", func(m map[string]mqtttest.Message) bool {
				st, ok := stateOf(t, m, stateTopic)
				return ok && st.Job != nil && st.Job.Status == "printing"
			})
			got := mqtttest.Retained(t, w.broker.URL(), base+"/#", 300*time.Millisecond)
			var st printerState
			json.Unmarshal([]byte(got[stateTopic]), &st)
			if st.Source != "local" || !st.Online || st.LocalAuth != "" {
				t.Errorf("source %q online %v local_auth %q; want local, true, none", st.Source, st.Online, st.LocalAuth)
			}
			if len(st.Extruders) < 2 || st.Extruders[0].HotendTemperature == nil || st.Extruders[0].HotendTarget == nil ||
				*st.Extruders[0].HotendTarget != 215 {
				t.Errorf("extruders lack hotend temperature and target: %s", got[stateTopic])
			}
			if st.Extruders[0].Material != "" {
				t.Errorf("material name %q invented: the LAN gives only its GUID", st.Extruders[0].Material)
			}
			if st.BuildPlate == nil || st.BuildPlate.Target == nil || *st.BuildPlate.Target != 60 {
				t.Errorf("build plate target missing: %s", got[stateTopic])
			}
			if st.Camera == nil || !strings.HasPrefix(st.Camera.SnapshotURL, "http://"+addr+"/") {
				t.Fatalf("camera: %+v", st.Camera)
			}
			resp, err := http.Get(st.Camera.SnapshotURL)
			if err != nil {
				t.Fatal(err)
			}
			img, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || len(img) == 0 {
				t.Errorf("snapshot: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(img))
			}
			if got[base+"/clusters/"+labS5+"/state"] == "" {
				t.Errorf("no cluster state for the LAN printer")
			}
			if info := got[base+"/bridge/info"]; !strings.Contains(info, `"local_printers":1`) || !strings.Contains(info, `"printers":1`) ||
				!strings.Contains(info, `"auth":"lan_only"`) {
				t.Errorf("bridge/info: %s", got[base+"/bridge/info"])
			}

			waitOnline(t, watch, base)
			// Not paired: the answer says how to pair, and nothing reaches the printer.
			set, response := base+"/printers/"+labS5+"/set", base+"/printers/"+labS5+"/response"
			as := command(t, watch, set, response, `{"action":"pause","transaction":"p1"}`, `"p1"`)
			if a := as[len(as)-1]; a.Error == nil || a.Error.Code != "unauthorized" || !strings.Contains(a.Error.Message, "bridge/request/pair") {
				t.Fatalf("unpaired pause answered %+v", a)
			}
			if n := lp.Requests("/api/v1/print_job/state"); n != 0 {
				t.Errorf("%d job state requests reached the unpaired printer", n)
			}
			// A cloud-only command is refused without a cloud account.
			as = command(t, watch, set, response, `{"action":"rename","name":"Lab","transaction":"s1"}`, `"s1"`)
			if a := as[len(as)-1]; a.Error == nil || a.Error.Code != "not_allowed" {
				t.Errorf("rename without a cloud account answered %+v", a)
			}

			// Pair: pending ("confirm on the printer's screen"), then ok.
			as = command(t, watch, base+"/bridge/request/pair", base+"/bridge/response/pair",
				`{"printer":"`+labS5+`","transaction":"pair1"}`, `"pair1"`)
			if statuses(as) != "pending,ok" || !strings.Contains(as[0].Data["message"].(string), "printer's screen") {
				t.Fatalf("pair answered %s: %+v", statuses(as), as)
			}
			fi, err := os.Stat(authFile)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("auth file: %v, mode %v", err, fi.Mode())
			}
			raw, _ := os.ReadFile(authFile)
			var stored struct {
				Printers map[string]struct{ ID, Key string }
			}
			json.Unmarshal(raw, &stored)
			if len(stored.Printers) == 0 {
				t.Fatalf("auth file holds no pairing")
			}
			for _, c := range stored.Printers {
				if strings.Contains(logs.String(), c.Key) {
					t.Errorf("the pairing key reached the log")
				}
				for tp, m := range got {
					if strings.Contains(m, c.Key) {
						t.Errorf("the pairing key was published on %s", tp)
					}
				}
			}

			// Paired: pause and resume go over the LAN with digest auth.
			as = command(t, watch, set, response, `{"action":"pause","transaction":"p2"}`, `"p2"`)
			if a := as[len(as)-1]; a.Status != "ok" || a.Data["via"] != "local" {
				t.Fatalf("paired pause answered %+v", as)
			}
			if n := lp.Requests("/api/v1/print_job/state"); n < 1 {
				t.Errorf("no job state request reached the printer")
			}
			watch.WaitFor(10*time.Second, "the job paused", func(m map[string]mqtttest.Message) bool {
				st, ok := stateOf(t, m, stateTopic)
				return ok && st.Job != nil && st.Job.Status == "paused"
			})
			as = command(t, watch, set, response, `{"action":"resume","transaction":"r1"}`, `"r1"`)
			if a := as[len(as)-1]; a.Status != "ok" {
				t.Fatalf("paired resume answered %+v", as)
			}
			watch.WaitFor(10*time.Second, "the job printing again", func(m map[string]mqtttest.Message) bool {
				st, ok := stateOf(t, m, stateTopic)
				return ok && st.Job != nil && st.Job.Status == "printing"
			})

			// A credential the printer no longer accepts shows as
			// local_auth required, and the command says to pair again.
			lp.RevokePairings()
			as = command(t, watch, set, response, `{"action":"pause","transaction":"p3"}`, `"p3"`)
			if a := as[len(as)-1]; a.Error == nil || a.Error.Code != "unauthorized" {
				t.Fatalf("pause with a revoked credential answered %+v", a)
			}
			watch.WaitFor(10*time.Second, "local_auth required", func(m map[string]mqtttest.Message) bool {
				st, ok := stateOf(t, m, stateTopic)
				return ok && st.LocalAuth == "required" && st.Job != nil // still read
			})
			if n := strings.Count(logs.String(), "refuses the bridge until it is paired"); n != 1 {
				t.Errorf("the refused credential was logged %d times, want once", n)
			}
			// Paired again from a terminal: the running bridge takes the new
			// credential and the problem clears.
			if err := cli(t.Context(), env, nil, nil, "pair", addr); err != nil {
				t.Fatal(err)
			}
			watch.WaitFor(10*time.Second, "local_auth cleared", func(m map[string]mqtttest.Message) bool {
				st, ok := stateOf(t, m, stateTopic)
				return ok && st.LocalAuth == ""
			})
		})
	}
}

func TestLANPairingRefusedAndTimedOut(t *testing.T) {
	for _, tc := range []struct {
		name, pairing, code string
	}{
		{"refused", simulator.PairRefuse, "action_failed"},
		{"timed out", simulator.PairIgnore, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := "pair" + tc.pairing
			w := fastWorld(t, base)
			_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{Pairing: tc.pairing, ApproveAfter: 200 * time.Millisecond})
			authFile := filepath.Join(t.TempDir(), "local-auth.json")
			watch := mqtttest.Watch(t, w.broker.URL(), base+"/#")
			_, logs := startBridge(t, append(lanEnv(w, base, addr), "LOCAL_AUTH_FILE="+authFile))
			defer func() {
				if t.Failed() {
					t.Log(logs.String())
				}
			}()
			watch.WaitFor(10*time.Second, "the LAN printer", func(m map[string]mqtttest.Message) bool {
				_, ok := stateOf(t, m, base+"/printers/"+labS5+"/state")
				return ok
			})
			waitOnline(t, watch, base)
			as := command(t, watch, base+"/bridge/request/pair", base+"/bridge/response/pair",
				`{"printer":"`+addr+`","transaction":1}`, `1`)
			if statuses(as) != "pending,error" || as[len(as)-1].Error.Code != tc.code {
				t.Fatalf("pair answered %s: %+v", statuses(as), as[len(as)-1].Error)
			}
			if _, err := os.Stat(authFile); err == nil {
				t.Errorf("a refused pairing was saved")
			}
			// A printer the bridge does not read: refused, and nothing is
			// sent to that address.
			other, otherAddr := serveLocal(t, w.sim, farmHost, simulator.LocalOptions{})
			for i, printer := range []string{"no such/printer", otherAddr} {
				tx := strconv.Itoa(i + 2)
				as = command(t, watch, base+"/bridge/request/pair", base+"/bridge/response/pair",
					`{"printer":"`+printer+`","transaction":`+tx+`}`, tx)
				if a := as[len(as)-1]; a.Error == nil || a.Error.Code != "not_found" {
					t.Errorf("pairing %s answered %+v", printer, a)
				}
			}
			if n := other.Requests("/"); n != 0 {
				t.Errorf("%d requests reached a printer the bridge does not read", n)
			}
		})
	}
}

func TestLANAndCloudMergeIntoOneState(t *testing.T) {
	w := fastWorld(t, "merged")
	_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	env := append(slices.Clone(w.env), "LOCAL_PRINTERS="+addr, "LOCAL_POLL_INTERVAL=300ms",
		"LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "merged/#")
	_, logs := startBridge(t, env)
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	topic := "merged/printers/" + labS5 + "/state"
	defer func() {
		if t.Failed() {
			for _, m := range watch.All() {
				if m.Topic == topic {
					t.Log(m.Payload)
				}
			}
		}
	}()
	watch.WaitFor(10*time.Second, "the merged state", func(m map[string]mqtttest.Message) bool {
		st, ok := stateOf(t, m, topic)
		return ok && st.Source == "cloud+local"
	})
	// Both sources keep polling (cloud every 1 s, LAN every 300 ms) for a
	// while: the state never falls back to one source, and the job status
	// never moves back.
	mark := len(watch.All())
	time.Sleep(4 * time.Second)
	order := []string{"pre_print", "printing", "post_print", "wait_cleanup"}
	last := -1
	n := 0
	for _, m := range watch.All()[mark:] {
		if m.Topic != topic {
			continue
		}
		n++
		var st printerState
		json.Unmarshal([]byte(m.Payload), &st)
		if st.Source != "cloud+local" {
			t.Errorf("state flapped to source %q", st.Source)
		}
		if st.Job != nil {
			i := slices.Index(order, st.Job.Status)
			if i >= 0 && i < last {
				t.Errorf("job status moved back to %s", st.Job.Status)
			}
			last = max(last, i)
		}
	}
	got := mqtttest.Retained(t, w.broker.URL(), "merged/#", 300*time.Millisecond)
	var st printerState
	json.Unmarshal([]byte(got[topic]), &st)
	t.Logf("%d state messages in 4 s; final %s", n, got[topic])
	// The LAN's live fields and the cloud's own ones are in the one state.
	if len(st.Extruders) == 0 || st.Extruders[0].HotendTemperature == nil || st.Extruders[0].Material == "" {
		t.Errorf("merged extruders lack the LAN's temperature or the cloud's material: %s", got[topic])
	}
	if st.Firmware.Latest == "" || st.Camera == nil {
		t.Errorf("merged state lacks the cloud's firmware or the LAN's camera: %s", got[topic])
	}
	// A printer only the cloud sees says so.
	var other printerState
	json.Unmarshal([]byte(got["merged/printers/ultimakersystem-ccbdd3005a11/state"]), &other)
	if other.Source != "cloud" || other.Camera != nil || len(other.Extruders) > 0 && other.Extruders[0].HotendTemperature != nil {
		t.Errorf("cloud-only printer: %s", got["merged/printers/ultimakersystem-ccbdd3005a11/state"])
	}
	// One device each: the printer's state topic is the only one for it.
	count := 0
	for tp := range got {
		if strings.HasSuffix(tp, "/state") && strings.Contains(tp, "4b0fc38e95e3") && strings.Contains(tp, "/printers/") {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d printer state topics for one printer", count)
	}
}

func TestLANPrinterVanishesAndReturns(t *testing.T) {
	w := fastWorld(t, "vanish")
	lp, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	watch := mqtttest.Watch(t, w.broker.URL(), "vanish/#")
	_, logs := startBridge(t, append(lanEnv(w, "vanish", addr), "LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json")))
	avail := "vanish/printers/" + labS5 + "/availability"
	watch.WaitFor(10*time.Second, "online", func(m map[string]mqtttest.Message) bool { return m[avail].Payload == "online" })
	lp.SetOffline(true)
	gone := time.Now()
	watch.WaitFor(10*time.Second, "offline", func(m map[string]mqtttest.Message) bool { return m[avail].Payload == "offline" })
	t.Logf("offline %s after the printer dropped off (two missed polls at 500 ms)", time.Since(gone).Round(time.Millisecond))
	if st, _ := stateOf(t, watch.Snapshot(), "vanish/printers/"+labS5+"/state"); st.Status != "offline" {
		t.Errorf("status %q while gone", st.Status)
	}
	time.Sleep(2 * time.Second) // retried with backoff, logged once
	if n := strings.Count(logs.String(), "not answering on the LAN"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	lp.SetOffline(false)
	back := time.Now()
	watch.WaitFor(10*time.Second, "online again", func(m map[string]mqtttest.Message) bool { return m[avail].Payload == "online" })
	t.Logf("online %s after the printer returned (backoff capped)", time.Since(back).Round(time.Millisecond))
}

func TestLANPrinterRefusingReadsUntilPaired(t *testing.T) {
	w := fastWorld(t, "gated")
	lp, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{GatedReads: true, ApproveAfter: 200 * time.Millisecond})
	watch := mqtttest.Watch(t, w.broker.URL(), "gated/#")
	_, logs := startBridge(t, append(lanEnv(w, "gated", addr), "LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json")))
	topic := "gated/printers/" + labS5 + "/state"
	watch.WaitFor(10*time.Second, "local_auth required", func(m map[string]mqtttest.Message) bool {
		st, ok := stateOf(t, m, topic)
		return ok && st.LocalAuth == "required"
	})
	polls := lp.Requests("/api/v1/printer")
	time.Sleep(2 * time.Second)
	// Polled at its interval (not in a loop), logged once.
	if n := lp.Requests("/api/v1/printer") - polls; n > 6 {
		t.Errorf("%d reads in 2 s of a printer refusing them", n)
	}
	if n := strings.Count(logs.String(), "refuses the bridge until it is paired"); n != 1 {
		t.Errorf("logged %d times, want once", n)
	}
	got := mqtttest.Retained(t, w.broker.URL(), "homeassistant/#", 300*time.Millisecond)
	i := slices.IndexFunc(mapKeys(got), func(k string) bool { return strings.HasSuffix(k, "_printer_"+labS5+"/config") })
	if i < 0 {
		t.Fatalf("no Home Assistant device for the printer: %v", mapKeys(got))
	}
	if cfg := got[mapKeys(got)[i]]; !strings.Contains(cfg, "_local_auth") || !strings.Contains(cfg, "local_auth == 'required'") {
		t.Errorf("the HA device has no LAN sign-in problem entity")
	}
	waitOnline(t, watch, "gated")
	as := command(t, watch, "gated/bridge/request/pair", "gated/bridge/response/pair", `{"printer":"`+labS5+`","transaction":"g"}`, `"g"`)
	if statuses(as) != "pending,ok" {
		t.Fatalf("pair answered %s", statuses(as))
	}
	watch.WaitFor(10*time.Second, "readable after pairing", func(m map[string]mqtttest.Message) bool {
		st, ok := stateOf(t, m, topic)
		return ok && st.LocalAuth == "" && st.Job != nil
	})
}

func TestLANGroupHostFeedsClusterAndQueue(t *testing.T) {
	w := fastWorld(t, "group")
	_, addr := serveLocal(t, w.sim, farmHost, simulator.LocalOptions{ApproveAfter: 100 * time.Millisecond})
	watch := mqtttest.Watch(t, w.broker.URL(), "group/#")
	startBridge(t, append(lanEnv(w, "group", addr), "LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json")))
	ctopic := "group/clusters/" + farmHost + "/state"
	var cl struct {
		Printers []string `json:"printers"`
		Queue    []struct {
			UUID string `json:"uuid"`
		} `json:"queue"`
	}
	watch.WaitFor(10*time.Second, "the group's cluster state", func(m map[string]mqtttest.Message) bool {
		if m[ctopic].Payload == "" {
			return false
		}
		json.Unmarshal([]byte(m[ctopic].Payload), &cl)
		return len(cl.Printers) == 3 && len(cl.Queue) >= 2
	})
	for _, p := range cl.Printers {
		if _, ok := watch.Snapshot()["group/printers/"+p+"/state"]; !ok {
			t.Errorf("no state of group member %s", p)
		}
	}
	waitOnline(t, watch, "group")
	last := cl.Queue[len(cl.Queue)-1].UUID
	set, resp := "group/clusters/"+farmHost+"/set", "group/clusters/"+farmHost+"/response"
	as := command(t, watch, set, resp, `{"action":"move_to_top","job":"`+last+`","transaction":"m0"}`, `"m0"`)
	if a := as[len(as)-1]; a.Error == nil || a.Error.Code != "unauthorized" {
		t.Fatalf("unpaired move_to_top answered %+v", a)
	}
	command(t, watch, "group/bridge/request/pair", "group/bridge/response/pair", `{"printer":"`+farmHost+`","transaction":"p"}`, `"p"`)
	as = command(t, watch, set, resp, `{"action":"move_to_top","job":"`+last+`","transaction":"m1"}`, `"m1"`)
	if a := as[len(as)-1]; a.Status != "ok" || a.Data["via"] != "local" {
		t.Fatalf("move_to_top over the LAN answered %+v", as)
	}
	watch.WaitFor(10*time.Second, "the job on top of the queue", func(m map[string]mqtttest.Message) bool {
		json.Unmarshal([]byte(m[ctopic].Payload), &cl)
		return len(cl.Queue) > 0 && cl.Queue[0].UUID == last
	})
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestPairCommandBesideRunningBridge pairs from a terminal while the
// bridge runs: the bridge picks the credential up from LOCAL_AUTH_FILE
// without a restart, and keeps it when it writes the file itself.
func TestPairCommandBesideRunningBridge(t *testing.T) {
	w := fastWorld(t, "paircli")
	lp, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{ApproveAfter: 200 * time.Millisecond})
	authFile := filepath.Join(t.TempDir(), "local-auth.json")
	env := append(lanEnv(w, "paircli", addr), "LOCAL_AUTH_FILE="+authFile)
	watch := mqtttest.Watch(t, w.broker.URL(), "paircli/#")
	startBridge(t, env)
	waitOnline(t, watch, "paircli")

	var out syncBuffer
	if err := cli(t.Context(), env, nil, &out, "pair", addr); err != nil {
		t.Fatalf("pair: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "press ALLOW") || !strings.Contains(out.String(), "Paired with") {
		t.Errorf("pair said: %s", out.String())
	}
	if fi, err := os.Stat(authFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("auth file: %v", err)
	}
	set, response := "paircli/printers/"+labS5+"/set", "paircli/printers/"+labS5+"/response"
	deadline := time.Now().Add(10 * time.Second)
	for {
		tx := time.Now().Format("150405.000")
		as := command(t, watch, set, response, `{"action":"pause","transaction":"`+tx+`"}`, `"`+tx+`"`)
		if a := as[len(as)-1]; a.Status == "ok" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the running bridge did not pick up the pairing: %+v", a)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if lp.Requests("/api/v1/print_job/state") == 0 {
		t.Errorf("the pause did not go over the LAN")
	}
	// Bad usage is a usage error (exit code 2).
	for _, args := range [][]string{{"pair"}, {"pair", "http://x/"}, {"pair", "a", "b"}} {
		err := cli(t.Context(), env, nil, nil, args...)
		if exitCodeOf(err) != 2 {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestCheckLANPrinters: check reads each LAN printer and says whether the
// bridge is paired; a silent printer fails it.
func TestCheckLANPrinters(t *testing.T) {
	w := fastWorld(t, "chklan")
	_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{ApproveAfter: 100 * time.Millisecond})
	authFile := filepath.Join(t.TempDir(), "a.json")
	env := append(lanEnv(w, "chklan", addr), "LOCAL_AUTH_FILE="+authFile)
	var out syncBuffer
	if err := cli(t.Context(), env, nil, &out, "check"); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Lab-S5-1 (Ultimaker S5") || !strings.Contains(out.String(), "not paired") ||
		strings.Contains(out.String(), "Connect API") {
		t.Errorf("check said:\n%s", out.String())
	}
	if err := cli(t.Context(), env, nil, nil, "pair", addr); err != nil {
		t.Fatal(err)
	}
	out = syncBuffer{}
	if err := cli(t.Context(), env, nil, &out, "check"); err != nil ||
		!strings.Contains(out.String(), "paired: the printer accepts") {
		t.Errorf("check after pairing: %v\n%s", err, out.String())
	}
	env = append(lanEnv(w, "chklan", "127.0.0.1:1"), "LOCAL_AUTH_FILE="+authFile)
	if err := cli(t.Context(), env, nil, nil, "check"); err == nil ||
		!strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("check with a silent printer: %v", err)
	}
}

// TestLANPrinterAsleepAtStart: a printer that does not answer at start is
// shown offline under its address; when it wakes, its own key takes over
// and the placeholder's topics are cleared.
func TestLANPrinterAsleepAtStart(t *testing.T) {
	w := fastWorld(t, "asleep")
	lp, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	lp.SetOffline(true)
	watch := mqtttest.Watch(t, w.broker.URL(), "asleep/#")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := ln.Addr().String()
	ln.Close()
	startBridge(t, append(lanEnv(w, "asleep", addr), "LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"),
		"HTTP_LISTEN="+metricsAddr))
	placeholder := "asleep/printers/127_0_0_1/availability"
	watch.WaitFor(10*time.Second, "the placeholder offline", func(m map[string]mqtttest.Message) bool {
		return m[placeholder].Payload == "offline"
	})
	lp.SetOffline(false)
	watch.WaitFor(15*time.Second, "the printer under its own key", func(m map[string]mqtttest.Message) bool {
		return m["asleep/printers/"+labS5+"/availability"].Payload == "online"
	})
	got := mqtttest.Retained(t, w.broker.URL(), "asleep/#", 300*time.Millisecond)
	for tp := range got {
		if strings.Contains(tp, "127_0_0_1") {
			t.Errorf("placeholder topic %s still retained", tp)
		}
	}
	// The LAN's requests and failures are counted as polls of target lan.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ultimaker2mqtt_polls_total{target="lan"}`, `ultimaker2mqtt_poll_errors_total{class="error",target="lan"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestLANHostNameDiffersFromCloud: a printer whose LAN host name is not
// the cloud's unique_name is matched by its GUID: one printer, one state
// fed by both sources, nothing left under the LAN's name (issue 19.3).
func TestLANHostNameDiffersFromCloud(t *testing.T) {
	w := fastWorld(t, "alias")
	_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{Hostname: "lab-printer.local"})
	env := append(slices.Clone(w.env), "LOCAL_PRINTERS="+addr, "LOCAL_POLL_INTERVAL=300ms",
		"LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "alias/#")
	startBridge(t, env)
	topic := "alias/printers/" + labS5 + "/state"
	watch.WaitFor(15*time.Second, "one merged printer", func(m map[string]mqtttest.Message) bool {
		st, ok := stateOf(t, m, topic)
		return ok && st.Source == "cloud+local" && m["alias/printers/lab-printer/state"].Payload == ""
	})
	got := mqtttest.Retained(t, w.broker.URL(), "alias/#", 300*time.Millisecond)
	for tp := range got {
		if strings.Contains(tp, "lab-printer") {
			t.Errorf("%s is retained: the printer shows twice", tp)
		}
	}
}

// TestSnapshotFromTheLANCamera: snapshot on a printer whose camera is read
// on the LAN takes the picture there, with or without a cloud account: the
// JPEG retained on the picture topic, its description on the snapshot
// topic, and no webcam action in the cloud (issue 19.3).
func TestSnapshotFromTheLANCamera(t *testing.T) {
	for _, cloud := range []bool{true, false} {
		t.Run(map[bool]string{true: "WithCloud", false: "LANOnly"}[cloud], func(t *testing.T) {
			w := fastWorld(t, "pic")
			_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
			env := lanEnv(w, "pic", addr)
			if cloud {
				env = append(slices.Clone(w.env), "LOCAL_PRINTERS="+addr, "LOCAL_POLL_INTERVAL=500ms")
			}
			env = append(env, "LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
			watch := mqtttest.Watch(t, w.broker.URL(), "pic/#")
			startBridge(t, env)
			lab := "pic/printers/" + labS5
			watch.WaitFor(15*time.Second, "the camera on the LAN", func(m map[string]mqtttest.Message) bool {
				st, ok := stateOf(t, m, lab+"/state")
				return ok && st.Camera != nil
			})
			as := command(t, watch, lab+"/set", lab+"/response", `{"action":"snapshot","transaction":"s1"}`, `"s1"`)
			if statuses(as) != "ok" || as[0].Data["via"] != "local" {
				t.Fatalf("snapshot answered %s %+v %+v", statuses(as), as[len(as)-1].Data, as[len(as)-1].Error)
			}
			got := mqtttest.Retained(t, w.broker.URL(), lab+"/+", 300*time.Millisecond)
			if pic := got[lab+"/picture"]; !picture.IsJPEG([]byte(pic)) {
				t.Errorf("picture topic holds %d bytes that are not a JPEG", len(pic))
			}
			var snap struct {
				Via     string
				Size    int
				TakenAt time.Time `json:"taken_at"`
			}
			if err := json.Unmarshal([]byte(got[lab+"/snapshot"]), &snap); err != nil || snap.Via != "local" ||
				snap.Size != len(got[lab+"/picture"]) || time.Since(snap.TakenAt) > time.Minute {
				t.Errorf("snapshot topic: %s (%v)", got[lab+"/snapshot"], err)
			}
			if n := w.sim.Requests("get_webcam_snapshot"); n != 0 {
				t.Errorf("the cloud was asked for a webcam snapshot %d times", n)
			}
		})
	}
}

// TestMDNSPrinterForgotten: a printer found by mDNS that stops answering
// and being announced is removed after LOCAL_FORGET_AFTER, topics and all,
// as a printer that left the account is (issue 19.3). Real multicast; a
// machine without it skips.
func TestMDNSPrinterForgotten(t *testing.T) {
	w := fastWorld(t, "forget")
	lp, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	host, port, _ := net.SplitHostPort(addr)
	portN, _ := strconv.Atoi(port)
	zone, err := mdns.NewMDNSService(labS5, local.Service, "local.", labS5+".local.", portN, []net.IP{net.ParseIP(host)},
		[]string{"type=printer", "name=Lab-S5-1"})
	if err != nil {
		t.Fatal(err)
	}
	announcer, err := mdns.NewServer(&mdns.Config{Zone: zone})
	if err != nil {
		t.Skipf("no multicast here: %v", err)
	}
	defer announcer.Shutdown()
	env := append(lanEnv(w, "forget"), "LOCAL_PRINTERS=", "LOCAL_DISCOVERY=true", "LOCAL_FORGET_AFTER=2s",
		"LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "forget/#")
	_, logs := startBridge(t, env)
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	topic := "forget/printers/" + labS5 + "/state"
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, ok := stateOf(t, watch.Snapshot(), topic); ok && st.Online {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, ok := stateOf(t, watch.Snapshot(), topic); !ok || !st.Online {
		t.Skip("the bridge found no printer by mDNS on this machine (no multicast route)")
	}
	announcer.Shutdown()
	lp.SetOffline(true)
	// The cluster's availability is the last of the printer's topics to go.
	last := "forget/clusters/" + labS5 + "/availability"
	watch.WaitFor(20*time.Second, "the printer's topics cleared", func(m map[string]mqtttest.Message) bool {
		msg, ok := m[last]
		return ok && msg.Payload == "" && m[topic].Payload == ""
	})
	got := mqtttest.Retained(t, w.broker.URL(), "forget/#", 300*time.Millisecond)
	for tp := range got {
		if strings.Contains(tp, labS5) {
			t.Errorf("%s is still retained after the printer was forgotten: %.100s", tp, got[tp])
		}
	}
	if t.Failed() {
		for _, m := range watch.All() {
			if strings.Contains(m.Topic, "clusters/") || strings.Contains(m.Topic, "/camera") || strings.HasSuffix(m.Topic, "/state") {
				t.Logf("%s %.80s", m.Topic, m.Payload)
			}
		}
	}
}

// TestLANGroupMembersTemperatures: reading only a group's host, the bridge
// also reads each member's own API for its temperatures (issue 19.3).
func TestLANGroupMembersTemperatures(t *testing.T) {
	w := fastWorld(t, "temps")
	member := "ultimakersystem-ccbdd3005a11"
	_, memberAddr := serveLocal(t, w.sim, member, simulator.LocalOptions{})
	_, hostAddr := serveLocal(t, w.sim, farmHost, simulator.LocalOptions{Members: map[string]string{member: memberAddr}})
	env := append(lanEnv(w, "temps", hostAddr), "LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "temps/#")
	startBridge(t, env)
	watch.WaitFor(15*time.Second, "the member's temperatures", func(m map[string]mqtttest.Message) bool {
		st, ok := stateOf(t, m, "temps/printers/"+member+"/state")
		return ok && len(st.Extruders) > 0 && st.Extruders[0].HotendTemperature != nil && st.BuildPlate != nil &&
			st.BuildPlate.Target != nil
	})
	// The member without an API of its own served has none.
	s7 := "temps/printers/ultimakersystem-ccbdd3007c42/state"
	watch.WaitFor(5*time.Second, "the other member", func(m map[string]mqtttest.Message) bool { return m[s7].Payload != "" })
	if st, _ := stateOf(t, watch.Snapshot(), s7); len(st.Extruders) > 0 && st.Extruders[0].HotendTemperature != nil {
		t.Errorf("the unreadable member has temperatures: %+v", st.Extruders)
	}
}
