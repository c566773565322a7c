// Package bench measures the bridge at farm scale.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// counter is a Publisher that counts what would reach the broker: like
// mqttpub it skips a retained payload equal to the last one on its topic,
// and keeps the payload without copying it (a copy was the benchmark's
// own cost, counted as the bridge's).
type counter struct {
	msgs, bytes int
	last        map[string][]byte
}

func (c *counter) Publish(_ context.Context, msgs ...bus.Message) error {
	for _, m := range msgs {
		if m.Retain {
			if old, ok := c.last[m.Topic]; ok && bytes.Equal(old, m.Payload) {
				continue
			}
			c.last[m.Topic] = m.Payload
		}
		c.msgs++
		c.bytes += len(m.Topic) + len(m.Payload)
	}
	return nil
}
func (c *counter) Republish(context.Context, ...string) error { return nil }

func (c *counter) Forget(...string) {}

// BenchmarkPollCycle polls every cluster of a farm once per iteration over
// real HTTP against the simulator (half the printers printing), builds the
// state, derives events and renders the MQTT messages with Home Assistant
// discovery: the work of one poll cycle, without the broker.
//
//	go test -run '^$' -bench PollCycle -benchtime 20x ./bench
func BenchmarkPollCycle(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("printers=%d", n), func(b *testing.B) {
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			sim := simulator.New(simulator.Options{ExtraPrinters: n, OnlyExtra: true, Now: func() time.Time { return now }})
			srv := httptest.NewServer(sim)
			defer srv.Close()
			api, _ := connect.New(connect.Options{BaseURL: srv.URL + simulator.BasePath,
				TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
			out := &counter{last: map[string][]byte{}}
			tree := topics.Tree{Base: "ultimaker"}
			cfg, err := config.Load(map[string]string{}, false)
			if err != nil {
				b.Fatal(err)
			}
			br := render.New(tree, out, render.Info{}, bridge.Discovery(cfg, "bench"), render.Options{}, zerolog.Nop())
			ctx := context.Background()
			clusters, err := api.Clusters(ctx)
			if err != nil || len(clusters) != n {
				b.Fatalf("%d clusters, %v", len(clusters), err)
			}
			views := map[string]*state.View{}
			cycle := func() {
				for _, cl := range clusters {
					st, err := api.ClusterStatus(ctx, cl.ClusterID)
					if err != nil {
						b.Fatal(err)
					}
					prev := views[cl.ClusterID]
					v := state.Build(state.Observation{Cluster: cl, Status: st, Now: now}, prev)
					br.Apply(ctx, poller.Diff(prev, v))
					views[cl.ClusterID] = &v
				}
				now = now.Add(10 * time.Second)
			}
			cycle() // the first cycle publishes everything; measure steady state
			first := *out
			out.msgs, out.bytes = 0, 0
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for range b.N {
				cycle()
			}
			b.StopTimer()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(out.msgs)/float64(b.N), "msgs/cycle")
			b.ReportMetric(float64(out.bytes)/float64(b.N)/1024, "KiB/cycle")
			b.ReportMetric(float64(first.msgs), "msgs-first")
			b.ReportMetric(float64(first.bytes)/1024, "KiB-first")
			b.ReportMetric(float64(after.HeapAlloc)/1024/1024, "heap-MiB")
		})
	}
}
