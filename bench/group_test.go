package bench

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/group"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

var (
	groupKills  = flag.Int("group-kills", 20, "BenchmarkGroup: kill -9s of a member")
	groupStops  = flag.Int("group-stops", 3, "BenchmarkGroup: members frozen (SIGSTOP: the broker hears nothing more)")
	groupWindow = flag.Duration("group-window", time.Minute, "BenchmarkGroup: window of the request counts")
)

const (
	groupBase      = "grpbench"
	groupKeepAlive = 5 * time.Second
	groupPoll      = 5 * time.Second
)

// BenchmarkGroup measures a group of three bridges (built command, real
// mosquitto, the simulator with 34 clusters) against one bridge alone:
// cluster status requests per minute; for each kill -9 of a member and
// each member frozen (SIGSTOP, as a host cut off: only its keepalive
// tells), how long each of its printers went without a state until
// another member published it; 10 commands per kill, sent across the farm
// around it, each to be answered once and carried out at most once; the
// requests again once the killed members have rejoined.
//
//	go test -run '^$' -bench Group -benchtime 1x -timeout 30m ./bench
//
// GROUP_BENCH_LOGS=<dir> keeps each member process's debug log there.
func BenchmarkGroup(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "ultimaker2mqtt")
	if out, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for range b.N {
		runGroupBench(b, bin)
	}
}

type groupRig struct {
	b       *testing.B
	bin     string
	env     []string
	sim     *simulator.Server
	watch   *mqtttest.Watcher
	members map[string]*exec.Cmd
	acts    sync.Map // printer uuid -> *int: snapshot actions the simulator took
	actMu   sync.Mutex
	missing int // printers not published again after a failure
}

func runGroupBench(b *testing.B, bin string) {
	broker := mqtttest.Start(b)
	r := &groupRig{b: b, bin: bin, members: map[string]*exec.Cmd{}}
	r.sim = simulator.New(simulator.Options{Speed: 1, Seed: 9, ExtraPrinters: 30, Calm: true, OnAction: r.action})
	srv := httptest.NewServer(r.sim)
	defer srv.Close()
	r.env = []string{"HTTP_LISTEN=", "MQTT_URL=" + broker.URL(), "MQTT_BASE_TOPIC=" + groupBase,
		"ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath, "ULTIMAKER_API_TOKEN=bench",
		"POLL_INTERVAL=" + groupPoll.String(), "POLL_IDLE_INTERVAL=" + groupPoll.String(),
		"MQTT_KEEPALIVE=" + groupKeepAlive.String(), "HA_DISCOVERY=false", "LOG_LEVEL=warn", "COMMAND_TIMEOUT=30s"}
	r.watch = mqtttest.WatchQoS(b, broker.URL(), groupBase+"/#", 0)
	clusters := len(r.sim.ClusterIDs())
	defer r.stopAll()

	// Alone.
	r.start("", "")
	r.waitPrinters(36)
	lone := r.statusPerMinute()
	r.stop("")
	b.Logf("alone: %.1f cluster status requests a minute", lone)

	// Three members.
	ids := []string{"m1", "m2", "m3"}
	for _, id := range ids {
		r.start("farm", id)
	}
	r.waitDealt(clusters, ids...)
	grouped := r.statusPerMinute()
	b.Logf("group of 3: %.1f cluster status requests a minute (%.3f × alone)", grouped, grouped/lone)

	var killSilence, stopSilence []time.Duration
	var sent []string // transactions
	sentTo := map[string]int{}
	txPrinter := map[string]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	for k := range *groupKills + *groupStops {
		victim := ids[k%len(ids)]
		states := r.printerClusters()
		var owned []string // the victim's printing printers
		for p, cid := range states {
			if group.OwnerAmong(cid, ids) == victim && r.status(p) == "printing" {
				owned = append(owned, p)
			}
		}
		printers := slices.Collect(maps.Keys(states))
		slices.Sort(printers)
		mark := len(r.watch.All())
		at := time.Now()
		frozen := k >= *groupKills
		if frozen {
			r.members[victim].Process.Signal(syscall.SIGSTOP)
		} else {
			r.members[victim].Process.Signal(syscall.SIGKILL)
		}
		for i := range 10 { // commands around the kill, across the farm
			p := printers[rng.IntN(len(printers))]
			tx := fmt.Sprintf("k%d-%d", k, i)
			r.watch.Publish(groupBase+"/printers/"+p+"/set", `{"action":"snapshot","transaction":"`+tx+`"}`, false)
			sent, sentTo[p], txPrinter[tx] = append(sent, tx), sentTo[p]+1, p
			time.Sleep(50 * time.Millisecond)
		}
		silence := r.silence(mark, at, owned, 60*time.Second)
		if frozen {
			stopSilence = append(stopSilence, silence...)
		} else {
			killSilence = append(killSilence, silence...)
		}
		if frozen {
			r.members[victim].Process.Signal(syscall.SIGCONT) // it finds its connection gone, and rejoins
		} else {
			r.members[victim].Wait()
			r.start("farm", victim)
		}
		r.waitDealt(clusters, ids...)
		// One failure at a time: this round's commands settle before the
		// next (a command outlives its owner, not every member that held it).
		r.watch.WaitFor(40*time.Second, "this round's answers", func(map[string]mqtttest.Message) bool {
			return finalAnswers(r.watch.All(), sent[len(sent)-10:])
		})
	}
	rejoined := r.statusPerMinute()
	b.Logf("after the kills and rejoins: %.1f cluster status requests a minute", rejoined)

	// Every command answered once; no snapshot taken more often than asked.
	time.Sleep(35 * time.Second) // COMMAND_TIMEOUT and a little
	answers := map[string]int{}
	for _, m := range r.watch.All() {
		var a struct {
			Status      string `json:"status"`
			Transaction string `json:"transaction"`
		}
		if strings.HasSuffix(m.Topic, "/response") && json.Unmarshal([]byte(m.Payload), &a) == nil && a.Status != "pending" {
			answers[a.Transaction]++
		}
	}
	once, none, more := 0, 0, 0
	for _, tx := range sent {
		switch answers[tx] {
		case 0:
			none++
			b.Logf("never answered: %s to %s", tx, txPrinter[tx])
		case 1:
			once++
		default:
			more++
			for _, m := range r.watch.All() {
				if strings.HasSuffix(m.Topic, "/response") && strings.Contains(m.Payload, `"`+tx+`"`) {
					b.Logf("answered more than once: %s %s %s", m.At.Format("15:04:05.000"), m.Topic, m.Payload)
				}
			}
		}
	}
	over := 0
	for p, n := range sentTo {
		if r.actions(r.uuidOf(p)) > n {
			over++
		}
	}
	b.Logf("commands: %d sent, %d answered once, %d never, %d more than once; printers with more snapshots "+
		"than asked: %d", len(sent), once, none, more, over)
	report := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			return
		}
		slices.Sort(ds)
		p := func(q float64) float64 { return ds[min(len(ds)-1, int(q*float64(len(ds))))].Seconds() }
		b.ReportMetric(p(0.5), name+"_p50_s")
		b.ReportMetric(p(0.99), name+"_p99_s")
		b.ReportMetric(ds[len(ds)-1].Seconds(), name+"_max_s")
		b.Logf("%s: %d printer silences, p50 %.2fs p99 %.2fs max %.2fs", name, len(ds), p(0.5), p(0.99),
			ds[len(ds)-1].Seconds())
	}
	report("kill", killSilence)
	report("freeze", stopSilence)
	b.ReportMetric(lone, "lone_status/min")
	b.ReportMetric(grouped/lone, "group/lone")
	b.ReportMetric(rejoined/lone, "rejoined/lone")
	b.ReportMetric(float64(once), "answered_once")
	b.ReportMetric(float64(none+more), "not_once")
	b.ReportMetric(float64(over), "actions_over")
	b.ReportMetric(float64(r.missing), "never_published")
	bound := groupKeepAlive*3/2 + groupPoll + 2*time.Second
	b.Logf("bound 1.5 × MQTT_KEEPALIVE + POLL_INTERVAL + 2s = %s", bound)
}

// finalAnswers reports whether every transaction in txs has a final answer.
func finalAnswers(msgs []mqtttest.Message, txs []string) bool {
	done := map[string]bool{}
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/response") && !strings.Contains(m.Payload, `"status":"pending"`) {
			for _, tx := range txs {
				if strings.Contains(m.Payload, `"transaction":"`+tx+`"`) {
					done[tx] = true
				}
			}
		}
	}
	return len(done) == len(txs)
}

// silence waits for a state of each printer in owned after mark and
// returns, per printer, how long after at it came.
func (r *groupRig) silence(mark int, at time.Time, owned []string, within time.Duration) []time.Duration {
	deadline := time.Now().Add(within)
	seen := map[string]time.Duration{}
	for len(seen) < len(owned) && time.Now().Before(deadline) {
		for _, m := range r.watch.All()[mark:] {
			p, isPrinter := strings.CutPrefix(m.Topic, groupBase+"/printers/")
			p, isState := strings.CutSuffix(p, "/state")
			if isPrinter && isState && slices.Contains(owned, p) {
				if _, done := seen[p]; !done && m.Payload != "" {
					seen[p] = m.At.Sub(at)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(seen) < len(owned) {
		var missing []string
		for _, p := range owned {
			if _, ok := seen[p]; !ok {
				missing = append(missing, p)
			}
		}
		for _, p := range missing {
			r.b.Logf("printer %s (%s) not published again within %s", p, r.status(p), within)
		}
		r.missing += len(missing)
	}
	return slices.Collect(maps.Values(seen))
}

func (r *groupRig) start(groupName, id string) {
	cmd := exec.Command(r.bin, "run")
	cmd.Env = append(slices.Clone(r.env), "INSTANCE_GROUP="+groupName, "INSTANCE_ID="+id)
	cmd.Stderr = os.Stderr
	if dir := os.Getenv("GROUP_BENCH_LOGS"); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.log", cmp.Or(id, "alone"), time.Now().UnixMilli())))
		if err != nil {
			r.b.Fatal(err)
		}
		cmd.Stderr, cmd.Stdout = f, f
		cmd.Env = append(cmd.Env, "LOG_LEVEL=debug", "LOG_FORMAT=json")
	}
	if err := cmd.Start(); err != nil {
		r.b.Fatal(err)
	}
	r.members[id] = cmd
}

func (r *groupRig) stop(id string) {
	cmd := r.members[id]
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	delete(r.members, id)
}

func (r *groupRig) stopAll() {
	for id, cmd := range r.members {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
		delete(r.members, id)
	}
}

// statusPerMinute counts the cluster status requests over the window.
func (r *groupRig) statusPerMinute() float64 {
	before := r.sim.Requests("/status")
	time.Sleep(*groupWindow)
	return float64(r.sim.Requests("/status")-before) / groupWindow.Minutes()
}

func (r *groupRig) waitPrinters(n int) {
	r.watch.WaitFor(2*time.Minute, "every printer's state", func(last map[string]mqtttest.Message) bool {
		return len(r.printerClusters()) >= n
	})
}

// waitDealt waits until exactly ids are live, see each other, and their
// shares add up to every cluster.
func (r *groupRig) waitDealt(clusters int, ids ...string) {
	r.watch.WaitFor(2*time.Minute, "the members dealing the clusters", func(last map[string]mqtttest.Message) bool {
		sum, live := 0, 0
		for topic, m := range last {
			if !strings.HasPrefix(topic, groupBase+"/bridge/members/") || m.Payload == "" {
				continue
			}
			var a struct {
				Sees  []string `json:"sees"`
				Share struct {
					Clusters int `json:"clusters"`
				} `json:"share"`
			}
			if json.Unmarshal([]byte(m.Payload), &a) != nil || !slices.Equal(a.Sees, ids) {
				return false
			}
			sum, live = sum+a.Share.Clusters, live+1
		}
		return live == len(ids) && sum == clusters
	})
}

// printerClusters are the printers whose states are retained now, with
// their cluster ids.
func (r *groupRig) printerClusters() map[string]string {
	out := map[string]string{}
	for topic, m := range r.watch.Snapshot() {
		p, isPrinter := strings.CutPrefix(topic, groupBase+"/printers/")
		p, isState := strings.CutSuffix(p, "/state")
		if !isPrinter || !isState || m.Payload == "" {
			continue
		}
		var s struct {
			ClusterID string `json:"cluster_id"`
		}
		if json.Unmarshal([]byte(m.Payload), &s) == nil && s.ClusterID != "" {
			out[p] = s.ClusterID
		}
	}
	return out
}

// status is a printer's status in its retained state.
func (r *groupRig) status(printer string) string {
	m, _ := r.watch.Last(groupBase + "/printers/" + printer + "/state")
	var s struct {
		Status string `json:"status"`
	}
	json.Unmarshal([]byte(m.Payload), &s)
	return s.Status
}

func (r *groupRig) uuidOf(printer string) string {
	m, _ := r.watch.Last(groupBase + "/printers/" + printer + "/state")
	var s struct {
		UUID string `json:"uuid"`
	}
	json.Unmarshal([]byte(m.Payload), &s)
	return s.UUID
}

func (r *groupRig) action(path string) {
	if !strings.HasSuffix(path, "webcam_snapshot") {
		return
	}
	r.actMu.Lock()
	defer r.actMu.Unlock()
	for part := range strings.SplitSeq(path, "/") {
		v, _ := r.acts.LoadOrStore(part, new(int))
		*v.(*int)++
	}
}

func (r *groupRig) actions(uuid string) int {
	r.actMu.Lock()
	defer r.actMu.Unlock()
	if v, ok := r.acts.Load(uuid); ok && uuid != "" {
		return *v.(*int)
	}
	return 0
}
