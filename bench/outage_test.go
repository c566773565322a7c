package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// BenchmarkOutage measures what the bridge holds for the broker while it
// is away: a farm of 1,000 printers (the simulator's scripted jobs, pauses
// and aborts, on a simulated clock) polled every 10 s for ten minutes with
// the broker down, then the same client fed far more events than its
// bounds take. It reports the events made, the messages and bytes held,
// those dropped, and the heap.
//
//	go test -run '^$' -bench Outage -benchtime 1x ./bench
func BenchmarkOutage(b *testing.B) {
	b.Run("printers=1000,down=10m", func(b *testing.B) {
		for range b.N {
			const n = 1000
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			sim := simulator.New(simulator.Options{ExtraPrinters: n, OnlyExtra: true, Now: func() time.Time { return now }})
			srv := httptest.NewServer(sim)
			api, _ := connect.New(connect.Options{BaseURL: srv.URL + simulator.BasePath,
				TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
			mq := awayBroker(b)
			br := render.New(topics.Tree{Base: "ultimaker"}, mq, render.Info{}, nil, render.Options{}, zerolog.Nop())
			ctx := context.Background()
			clusters, err := api.Clusters(ctx)
			if err != nil || len(clusters) != n {
				b.Fatalf("%d clusters, %v", len(clusters), err)
			}
			events := 0
			views := map[string]*state.View{}
			heap0 := heapMiB()
			for cycle := 0; cycle <= 60; cycle++ { // 10 minutes of 10-s polls
				for _, cl := range clusters {
					st, err := api.ClusterStatus(ctx, cl.ClusterID)
					if err != nil {
						b.Fatal(err)
					}
					prev := views[cl.ClusterID]
					v := state.Build(state.Observation{Cluster: cl, Status: st, Now: now}, prev)
					u := poller.Diff(prev, v)
					events += len(u.Events)
					br.Apply(ctx, u)
					v.Compact()
					views[cl.ClusterID] = &v
				}
				now = now.Add(10 * time.Second)
			}
			srv.Close()
			growth := heapMiB() - heap0
			runtime.KeepAlive(br) // what the bridge holds counts until here
			held, bytes := mq.Held()
			b.ReportMetric(float64(events), "events")
			b.ReportMetric(float64(held), "held-msgs")
			b.ReportMetric(float64(bytes)/1024, "held-KiB")
			b.ReportMetric(float64(mq.Dropped()), "dropped")
			b.ReportMetric(growth, "heap-growth-MiB")
		}
	})
	b.Run("at-the-bounds", func(b *testing.B) {
		for range b.N {
			mq := awayBroker(b)
			heap0 := heapMiB()
			// Three times what the bounds take, of an event's usual size.
			for i := range 3 * mqttpub.DefaultHeldMessages / 2 {
				p := fmt.Appendf(nil, `{"event":"print_finished","printer":"ultimakersystem-%012d","printer_name":"Farm %d",`+
					`"cluster":"ultimakersystem-%012d","job":{"uuid":"6c0bd4a2-7c6e-4f11-9d2b-%012d","name":"bracket_v%d_pla",`+
					`"time_elapsed":5400,"time_total":5400},"detail":"","time":"2026-12-06T10:00:00Z"}`, i, i, i, i, i)
				late := append(p[:len(p)-1:len(p)-1], `,"late":true}`...)
				mq.Publish(context.Background(),
					bus.Message{Topic: fmt.Sprintf("ultimaker/printers/ultimakersystem-%012d/event", i), Payload: p, Late: late},
					bus.Message{Topic: "ultimaker/bridge/event", Payload: p, Late: late})
			}
			growth := heapMiB() - heap0
			held, bytes := mq.Held() // mq lives until here
			b.ReportMetric(float64(held), "held-msgs")
			b.ReportMetric(float64(bytes)/1024/1024, "held-MiB")
			b.ReportMetric(float64(mq.Dropped()), "dropped")
			b.ReportMetric(growth, "heap-growth-MiB")
		}
	})
}

// awayBroker is a broker client whose broker is not there.
func awayBroker(b *testing.B) *mqttpub.Client {
	b.Helper()
	away := mqtttest.Prepare(b)
	mq, err := mqttpub.New(mqttpub.Config{URL: away.URL(), ClientID: "outage"}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	return mq
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / 1024 / 1024
}
