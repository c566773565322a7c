package bench

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/reports"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// farmView is a farm the job log names printers from.
type farmView struct {
	printers []state.Printer
	clusters []state.Cluster
}

func (f farmView) Printers() []state.Printer { return f.printers }
func (f farmView) Clusters() []state.Cluster { return f.clusters }

// BenchmarkJobLogCSV measures a 30-day CSV of the job log for a farm of
// 1,000 printers that each ran three jobs a day (96,000 jobs with the
// simulator's own): the cloud requests it costs, the time, the memory
// it holds (the period is kept a minute for the page's next questions)
// and the bytes of CSV.
//
//	go test -run '^$' -bench JobLogCSV -benchtime 3x ./bench
func BenchmarkJobLogCSV(b *testing.B) {
	const n = 1000
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	sim := simulator.New(simulator.Options{ExtraPrinters: n, OnlyExtra: true, Calm: true, Now: func() time.Time { return now }})
	for i := range n {
		printer := fmt.Sprintf("ultimakersystem-f0a1b2%06x", i)
		for d := range 30 {
			for k := range 3 {
				created := now.Add(-time.Duration(d)*24*time.Hour - time.Duration(k*8+1)*time.Hour)
				result := []string{"finished", "finished", "aborted", "finished", "failed"}[(i+d+k)%5]
				if err := sim.AddHistory(printer, fmt.Sprintf("part_%d_%d_%d", i, d, k), "owner", result, created,
					5*time.Hour, 6*time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	var requests int
	api, _ := connect.New(connect.Options{BaseURL: srv.URL + simulator.BasePath,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}),
		Observe:     func(string, string, int, time.Duration) { requests++ }})
	ctx := context.Background()
	clusters, err := api.Clusters(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var farm farmView
	for _, c := range clusters {
		st, err := api.ClusterStatus(ctx, c.ClusterID)
		if err != nil {
			b.Fatal(err)
		}
		v := state.Build(state.Observation{Cluster: c, Status: st, Now: now}, nil)
		v.Compact()
		farm.printers = append(farm.printers, v.Printers...)
		farm.clusters = append(farm.clusters, v.Cluster)
	}
	q := reports.Query{From: now.Add(-30 * 24 * time.Hour), To: now, Page: 1, PerPage: 100}
	b.ResetTimer()
	for range b.N {
		requests = 0
		log := reports.New(reports.Config{}, api, nil, farm, nil)
		heap0 := heapMiB()
		r, err := log.Jobs(ctx, q, true)
		if err != nil {
			b.Fatal(err)
		}
		var out countWriter
		if err := reports.WriteJobsCSV(&out, r.Jobs); err != nil {
			b.Fatal(err)
		}
		held := heapMiB() - heap0
		runtime.KeepAlive(log)
		b.ReportMetric(float64(r.Total), "jobs")
		b.ReportMetric(float64(requests), "requests")
		b.ReportMetric(float64(out.n)/1024/1024, "csv-MiB")
		b.ReportMetric(held, "held-MiB")
	}
}

type countWriter struct{ n int }

func (c *countWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
