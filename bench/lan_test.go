package bench

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// BenchmarkLANPrinters runs the bridge on the LAN only, at the default
// LOCAL_POLL_INTERVAL (5s), against one printing and one idle simulated
// printer and a real mosquitto. It reports the requests per minute each
// printer gets, and the freshness of a status change made on the
// printer's screen (pause, resume) until its state on MQTT shows it.
//
//	go test -run '^$' -bench LANPrinters -benchtime 1x ./bench
func BenchmarkLANPrinters(b *testing.B) {
	const printing, idle = "ultimakersystem-4b0fc38e95e3", "ultimakersystem-0030d6123abc"
	for range b.N {
		broker := mqtttest.Start(b)
		// 10x: the printer's own pausing and resuming take a second.
		sim := simulator.New(simulator.Options{Seed: 3, Calm: true, Speed: 10})
		var lps []*simulator.LocalPrinter
		var hosts []string
		for _, name := range []string{printing, idle} {
			lp, err := sim.LocalPrinter(name, simulator.LocalOptions{})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(lp)
			defer srv.Close()
			lps, hosts = append(lps, lp), append(hosts, strings.TrimPrefix(srv.URL, "http://"))
		}
		cfg, err := config.Load(map[string]string{"MQTT_URL": broker.URL(), "MQTT_BASE_TOPIC": "lanbench",
			"LOCAL_PRINTERS": strings.Join(hosts, ","), "LOCAL_AUTH_FILE": filepath.Join(b.TempDir(), "a.json"),
			"HA_DISCOVERY": "false"}, true)
		if err != nil {
			b.Fatal(err)
		}
		br, err := bridge.New(cfg, bridge.Options{Version: "bench", Log: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		watch := mqtttest.Watch(b, broker.URL(), "lanbench/printers/"+printing+"/state")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- br.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				b.Errorf("bridge: %v", err)
			}
		}()
		jobStatus := func(m map[string]mqtttest.Message) string {
			var st struct {
				Job *struct{ Status string } `json:"job"`
			}
			json.Unmarshal([]byte(m["lanbench/printers/"+printing+"/state"].Payload), &st)
			if st.Job == nil {
				return ""
			}
			return st.Job.Status
		}
		watch.WaitFor(20*time.Second, "printing", func(m map[string]mqtttest.Message) bool { return jobStatus(m) == "printing" })

		// Freshness: press pause or resume on the screen at a random
		// moment of the poll cycle and time the state showing it.
		b.ResetTimer()
		start := time.Now()
		before := [2]int{lps[0].Requests("/"), lps[1].Requests("/")}
		var fresh []time.Duration
		for i := range 24 {
			target, settled, want := "pause", "printing", []string{"pausing", "paused"}
			if i%2 == 1 {
				target, settled, want = "print", "paused", []string{"resuming", "printing"}
			}
			watch.WaitFor(20*time.Second, settled, func(m map[string]mqtttest.Message) bool { return jobStatus(m) == settled })
			time.Sleep(time.Duration(i*397%5000) * time.Millisecond) // spread over the 5 s cycle
			for lps[0].PressOnScreen(target) != nil {
				time.Sleep(50 * time.Millisecond) // still settling on the printer
			}
			at := time.Now()
			watch.WaitFor(20*time.Second, want[0], func(m map[string]mqtttest.Message) bool {
				return slices.Contains(want, jobStatus(m))
			})
			fresh = append(fresh, time.Since(at))
		}
		minutes := time.Since(start).Minutes()
		b.StopTimer()
		perMin := func(i int) float64 { return float64(lps[i].Requests("/")-before[i]) / minutes }
		slices.Sort(fresh)
		p := func(q float64) time.Duration { return fresh[min(len(fresh)-1, int(q*float64(len(fresh))))] }
		b.ReportMetric(perMin(0), "req/min-printing")
		b.ReportMetric(perMin(1), "req/min-idle")
		b.ReportMetric(float64(p(0.5).Milliseconds()), "ms-fresh-p50")
		b.ReportMetric(float64(p(0.99).Milliseconds()), "ms-fresh-p99")
		b.Logf("%.1f min; freshness of %d screen changes: p50 %s, p99 %s, max %s (interval 5s)", minutes, len(fresh),
			p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), fresh[len(fresh)-1].Round(time.Millisecond))
	}
}
