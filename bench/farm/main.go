// Command farm measures the built bridge at farm scale: it starts a stock
// mosquitto, the simulator with N single-printer clusters and the binary,
// and prints CPU seconds, peak resident memory, MQTT messages and bytes,
// API requests against what the polling rules allow, and how fast a change
// in the cloud reaches MQTT; with -page, also what one open farm page
// costs the bridge and how fast it shows a change. Run it with
// bench/farm.sh.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

func main() {
	bin := flag.String("bin", "./ultimaker2mqtt", "the binary to measure")
	printers := flag.Int("printers", 1000, "single-printer clusters (half of them printing)")
	duration := flag.Duration("duration", 60*time.Second, "measuring window, after the first publish and a warm-up")
	interval := flag.Duration("interval", 10*time.Second, "POLL_INTERVAL and POLL_IDLE_INTERVAL")
	ha := flag.Bool("ha", true, "Home Assistant discovery")
	idle := flag.Bool("idle", false, "every printer idle: nothing changes in the cloud but the renames")
	renames := flag.Duration("renames", 500*time.Millisecond, "how often a printer is renamed in the cloud (0: never)")
	page := flag.Bool("page", false, "then windows without and with the farm's page open in headless Chromium, in turn")
	flag.IntVar(&pageRounds, "page-rounds", pageRounds, "-page: turns of a window without and one with the page")
	flag.DurationVar(&pageWindow, "page-window", pageWindow, "-page: each window of a turn")
	flag.Parse()
	if err := measure(*bin, *printers, *duration, *interval, *ha, *idle, *renames, *page); err != nil {
		fmt.Fprintln(os.Stderr, "farm:", err)
		os.Exit(1)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// mosquitto starts a stock broker (its defaults, Nagle's algorithm on).
func mosquitto(dir string) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port), 0o600)
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("mosquitto: %w", err)
	}
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return fmt.Sprintf("tcp://127.0.0.1:%d", port), func() { cmd.Process.Kill(); cmd.Wait() }, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	return "", nil, fmt.Errorf("mosquitto did not start")
}

// proc reads a process's CPU seconds, resident memory and the kernel's
// high-water mark of it (which sees spikes between samples) from /proc.
func proc(pid int) (cpu, rssMiB, hwmMiB float64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cpu = (ut + st) / 100 // clock ticks (USER_HZ is 100 on Linux)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
				kb, _ := strconv.ParseFloat(f[1], 64)
				if f[0] == "VmRSS:" {
					rssMiB = kb / 1024
				} else {
					hwmMiB = kb / 1024
				}
			}
		}
	}
	return cpu, rssMiB, hwmMiB
}

type counter struct {
	mu            sync.Mutex
	msgs, bytes   int
	printerStates int
	states        map[string]bool
	waiting       map[string]time.Time // friendly name -> renamed at
	latencies     []time.Duration
	seen          map[string]time.Time // friendly name -> its state reached MQTT at
}

// pageRounds and pageWindow are the turns of -page: each a window
// without the page and one with it (-page-rounds, -page-window).
var (
	pageRounds = 6
	pageWindow = 30 * time.Second
)

func measure(bin string, n int, duration, interval time.Duration, ha, idle bool, renames time.Duration, page bool) error {
	dir, _ := os.MkdirTemp("", "farm")
	defer os.RemoveAll(dir)
	url, stop, err := mosquitto(dir)
	if err != nil {
		return err
	}
	defer stop()

	sim := simulator.New(simulator.Options{ExtraPrinters: n, OnlyExtra: true, IdleExtra: idle, Calm: true, Seed: 1,
		Tokens: []string{"farm-token"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(ln, sim)
	ids := sim.ClusterIDs()

	c := &counter{states: map[string]bool{}, waiting: map[string]time.Time{}, seen: map[string]time.Time{}}
	watch := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("farm-watch").SetOrderMatters(false))
	if t := watch.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		return fmt.Errorf("watcher: %v", t.Error())
	}
	watch.Subscribe("farm/#", 0, func(_ mqtt.Client, m mqtt.Message) { c.saw(m) })
	watch.Subscribe("homeassistant/#", 0, func(_ mqtt.Client, m mqtt.Message) { c.saw(m) })

	cmd := exec.Command(bin, "run")
	cmd.Env = []string{"HTTP_LISTEN=", "MQTT_URL=" + url, "MQTT_BASE_TOPIC=farm", "MQTT_CLIENT_ID=farm-bridge",
		"ULTIMAKER_API_URL=http://" + ln.Addr().String() + simulator.BasePath, "ULTIMAKER_API_TOKEN=farm-token",
		"POLL_INTERVAL=" + interval.String(), "POLL_IDLE_INTERVAL=" + interval.String(), "POLL_CLUSTERS_INTERVAL=5m",
		"HA_DISCOVERY=" + strconv.FormatBool(ha), "LOG_LEVEL=warn", "LOG_FORMAT=json"}
	var origin string
	if page {
		port, err := freePort()
		if err != nil {
			return err
		}
		origin = fmt.Sprintf("http://127.0.0.1:%d", port)
		cmd.Env = append(cmd.Env, "HTTP_LISTEN="+strings.TrimPrefix(origin, "http://"))
	}
	// BRIDGE_GOGC, BRIDGE_GOMEMLIMIT, BRIDGE_GOMAXPROCS and
	// BRIDGE_MQTT_OUTPUT reach the bridge without the prefix: the runtime's
	// trades and the per-attribute topics can be measured.
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "MQTT_OUTPUT"} {
		if v := os.Getenv("BRIDGE_" + k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()

	peak, hwm := 0.0, 0.0
	sample := func() (float64, float64) {
		cpu, rss, h := proc(cmd.Process.Pid)
		peak, hwm = max(peak, rss), max(hwm, h)
		return cpu, rss
	}
	for {
		c.mu.Lock()
		got := len(c.states)
		c.mu.Unlock()
		sample()
		if got >= n {
			break
		}
		if time.Since(start) > 2*time.Minute {
			return fmt.Errorf("only %d of %d printer states after 2 minutes", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	first := time.Since(start)
	firstCPU, firstRSS := sample()
	c.mu.Lock()
	firstMsgs, firstBytes := c.msgs, c.bytes
	c.mu.Unlock()

	time.Sleep(2 * interval) // warm up: the rhythm settles
	cpu0, _ := sample()
	req0 := sim.Requests("")
	c.mu.Lock()
	msgs0, bytes0, states0 := c.msgs, c.bytes, c.printerStates
	c.mu.Unlock()

	seq := 0
	order := rand.Perm(len(ids))
	// renaming renames printers for d, sampling, and returns the mean RSS.
	renaming := func(d time.Duration) float64 {
		end := time.Now().Add(d)
		next := time.Now()
		sum, k := 0.0, 0
		for time.Now().Before(end) {
			if renames > 0 && !time.Now().Before(next) {
				seq++
				name := fmt.Sprintf("fresh-%d", seq)
				c.mu.Lock()
				c.waiting[name] = time.Now()
				c.mu.Unlock()
				// Each rename goes to a cluster not renamed yet: a second rename
				// before the next poll would hide the first.
				sim.Rename(ids[order[(seq-1)%len(order)]], name)
				next = next.Add(renames)
			}
			_, rss := sample()
			sum, k = sum+rss, k+1
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(interval + time.Second) // the last renames arrive
		return sum / float64(max(k, 1))
	}
	renaming(duration)
	cpu1, rss1 := sample()
	req1 := sim.Requests("")
	c.mu.Lock()
	msgs, bytes, states := c.msgs-msgs0, c.bytes-bytes0, c.printerStates-states0
	lat := slices.Clone(c.latencies)
	lost := len(c.waiting)
	c.mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))].Round(time.Millisecond)
	}
	window := duration + interval + time.Second
	polls := float64(n) * window.Seconds() / interval.Seconds()
	fmt.Printf("printers %d, interval %s, HA discovery %v, all idle %v\n", n, interval, ha, idle)
	fmt.Printf("first full publish: %s (CPU %.2f s, RSS %.1f MiB, %d messages, %.1f MiB)\n",
		first.Round(time.Millisecond), firstCPU, firstRSS, firstMsgs, float64(firstBytes)/(1<<20))
	fmt.Printf("window %s: CPU %.2f s = %.0f µs per printer poll; RSS %.1f MiB now, peak %.1f MiB (%.1f KiB per printer)\n",
		window.Round(time.Second), cpu1-cpu0, (cpu1-cpu0)/polls*1e6, rss1, peak, peak*1024/float64(n))
	fmt.Printf("RSS high-water mark since start (kernel's VmHWM, first burst included): %.1f MiB\n", hwm)
	fmt.Printf("MQTT: %d messages (%d printer states), %.1f KiB\n", msgs, states, float64(bytes)/1024)
	fmt.Printf("API requests: %d; the rules allow %.0f status polls plus the list\n", req1-req0, polls)
	fmt.Printf("freshness of %d renames: p50 %s, p99 %s, max %s (interval %s); %d not seen\n",
		len(lat), pct(0.5), pct(0.99), pct(1), interval, lost)
	if !page {
		return nil
	}

	// Then windows without and with the page open, in turn, so that a
	// drift of the farm (prints ending, the heap growing) weighs on both:
	// what one open page costs the bridge, how fast it draws the farm,
	// how fast a state on MQTT shows on it.
	var cpuWithout, cpuWith, rssWithout, rssWith, rendered float64
	var shown []time.Duration
	missed := 0
	for range pageRounds {
		c0, _ := sample()
		rssWithout += renaming(pageWindow)
		c1, _ := sample()
		cpuWithout += c1 - c0

		browser, took, err := openPage(origin, n)
		if err != nil {
			return err
		}
		rendered = max(rendered, took.Seconds())
		time.Sleep(2 * time.Second)
		seq0 := seq
		c2, _ := sample()
		rssWith += renaming(pageWindow)
		c3, _ := sample()
		cpuWith += c3 - c2
		applied, err := browser.applied()
		browser.close()
		if err != nil {
			return err
		}
		c.mu.Lock()
		for i := seq0 + 1; i <= seq; i++ {
			name := fmt.Sprintf("fresh-%d", i)
			mq, ok1 := c.seen[name]
			at, ok2 := applied[name]
			if !ok1 || !ok2 {
				missed++
				continue
			}
			shown = append(shown, at.Sub(mq))
		}
		c.mu.Unlock()
	}
	slices.Sort(shown)
	pctOf := func(l []time.Duration, p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		return l[min(len(l)-1, int(float64(len(l))*p))].Round(time.Millisecond)
	}
	each := (pageWindow + interval + time.Second).Seconds() * float64(pageRounds)
	fmt.Printf("page: %d rounds of %s without and %s with the page open\n", pageRounds, pageWindow, pageWindow)
	fmt.Printf("page: first render of %d printers, slowest of %d: %.2f s (navigation to the first frame with every tile)\n",
		n, pageRounds, rendered)
	fmt.Printf("page: bridge CPU %.2f %% of a core without the page, %.2f %% with it open (%+.1f %%)\n",
		cpuWithout/each*100, cpuWith/each*100, (cpuWith/cpuWithout-1)*100)
	fmt.Printf("page: bridge mean RSS %.1f MiB without, %.1f MiB with it open (%+.1f MiB)\n",
		rssWithout/float64(pageRounds), rssWith/float64(pageRounds), (rssWith-rssWithout)/float64(pageRounds))
	fmt.Printf("page: MQTT to page for %d renames: p50 %s, p99 %s, max %s; %d not matched\n",
		len(shown), pctOf(shown, 0.5), pctOf(shown, 0.99), pctOf(shown, 1), missed)
	return nil
}

func (c *counter) saw(m mqtt.Message) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs++
	c.bytes += len(m.Topic()) + len(m.Payload())
	if !strings.HasPrefix(m.Topic(), "farm/printers/") || !strings.HasSuffix(m.Topic(), "/state") {
		return
	}
	c.printerStates++
	c.states[m.Topic()] = true
	if len(c.waiting) == 0 {
		return
	}
	var st struct {
		FriendlyName string `json:"friendly_name"`
	}
	if json.Unmarshal(m.Payload(), &st) == nil {
		if at, ok := c.waiting[st.FriendlyName]; ok {
			c.latencies = append(c.latencies, now.Sub(at))
			c.seen[st.FriendlyName] = now
			delete(c.waiting, st.FriendlyName)
		}
	}
}
