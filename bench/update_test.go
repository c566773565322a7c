package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// replay serves recorded status answers, a different one of three per
// request of a cluster, so printing printers change at every poll: the
// cost of serving is a map look-up, not the simulator's.
type replay struct {
	bodies map[string][][]byte
	hits   map[string]*atomic.Uint64
}

func (rp *replay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bs, ok := rp.bodies[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	n := rp.hits[r.URL.Path].Add(1) - 1
	w.Header().Set("Content-Type", "application/json")
	w.Write(bs[n%uint64(len(bs))])
}

// serveElsewhere serves rp from a child process (this test binary run
// again), so the CPU the benchmark measures is the bridge's alone, not
// the server's too.
func serveElsewhere(b *testing.B, rp *replay) string {
	dir := b.TempDir()
	var index []string
	i := 0
	for path, bodies := range rp.bodies {
		for k, body := range bodies {
			name := fmt.Sprintf("%d-%d.json", i, k)
			if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		index = append(index, fmt.Sprintf("%s %d %d", path, i, len(bodies)))
		i++
	}
	os.WriteFile(filepath.Join(dir, "index"), []byte(strings.Join(index, "\n")), 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BENCH_REPLAY_DIR="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("replay server: %v", err)
	}
	return "http://" + strings.TrimSpace(addr)
}

// TestMain runs the replay server when asked to (BENCH_REPLAY_DIR).
func TestMain(m *testing.M) {
	if dir := os.Getenv("BENCH_REPLAY_DIR"); dir != "" {
		rp := &replay{bodies: map[string][][]byte{}, hits: map[string]*atomic.Uint64{}}
		index, _ := os.ReadFile(filepath.Join(dir, "index"))
		for _, line := range strings.Split(string(index), "\n") {
			var path string
			var i, n int
			fmt.Sscanf(line, "%s %d %d", &path, &i, &n)
			for k := range n {
				body, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d-%d.json", i, k)))
				rp.bodies[path] = append(rp.bodies[path], body)
			}
			rp.hits[path] = &atomic.Uint64{}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.Exit(1)
		}
		fmt.Println(ln.Addr().String())
		http.Serve(ln, rp)
		return
	}
	os.Exit(m.Run())
}

// record polls every cluster of a simulated farm of n printers three
// times, 90 s apart, and keeps the raw answers: a printing printer's
// running time passes a minute between any two, so its state changes at
// every poll of the replay (within one minute it changes only once a
// percent).
func record(b *testing.B, n int) (*replay, []connect.Cluster) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sim := simulator.New(simulator.Options{ExtraPrinters: n, OnlyExtra: true, Calm: true, Now: func() time.Time { return now }})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	api, _ := connect.New(connect.Options{BaseURL: srv.URL + simulator.BasePath,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
	clusters, err := api.Clusters(context.Background())
	if err != nil || len(clusters) != n {
		b.Fatalf("%d clusters, %v", len(clusters), err)
	}
	rp := &replay{bodies: map[string][][]byte{}, hits: map[string]*atomic.Uint64{}}
	for range 3 {
		for _, c := range clusters {
			path := simulator.BasePath + "/clusters/" + c.ClusterID + "/status"
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			req.Header.Set("Authorization", "Bearer t")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			rp.bodies[path] = append(rp.bodies[path], body)
			if rp.hits[path] == nil {
				rp.hits[path] = &atomic.Uint64{}
			}
		}
		now = now.Add(90 * time.Second)
	}
	return rp, clusters
}

// BenchmarkPrinterUpdate measures the CPU of one printer update at farm
// scale, from the cloud's HTTP answer to the MQTT messages handed to the
// publisher (HTTP client and GC included), against a floor measured the
// same way: fetching and decoding the same answers and nothing else.
// Half the printers print, so their state changes at every poll. Each is
// measured with the answers served over the loopback by a child process,
// and from memory (the same HTTP client code without sockets).
//
//	go test -run '^$' -bench PrinterUpdate -benchtime 5x ./bench
func BenchmarkPrinterUpdate(b *testing.B) {
	for _, n := range []int{1000} {
		rp, clusters := record(b, n)
		url := serveElsewhere(b, rp)
		// Over the loopback to a child process, and from memory: the
		// second leaves out the sockets and the transport's goroutines,
		// so it shows the cost from an answer received to the messages
		// handed on.
		for _, via := range []string{"loopback", "memory"} {
			opts := connect.Options{BaseURL: url + simulator.BasePath,
				TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})}
			if via == "memory" {
				opts.HTTPClient = &http.Client{Transport: rp}
			}
			api, _ := connect.New(opts)
			printerUpdate(b, n, via, api, clusters)
		}
	}
}

// RoundTrip serves rp from memory, as ServeHTTP does over the network.
func (rp *replay) RoundTrip(r *http.Request) (*http.Response, error) {
	bs, ok := rp.bodies[r.URL.Path]
	if !ok {
		return &http.Response{StatusCode: http.StatusNotFound, Body: http.NoBody, Request: r}, nil
	}
	n := rp.hits[r.URL.Path].Add(1) - 1
	body := bs[n%uint64(len(bs))]
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

// printerUpdate runs the floor and the bridge over api.
func printerUpdate(b *testing.B, n int, via string, api *connect.Client, clusters []connect.Cluster) {
	ctx := context.Background()
	// Four requests at once, as the poller runs them (POLL_MAX_IN_FLIGHT).
	fetchAll := func(each func(cl connect.Cluster, st *connect.ClusterStatus)) {
		jobs := make(chan connect.Cluster)
		type res struct {
			cl connect.Cluster
			st *connect.ClusterStatus
		}
		results := make(chan res)
		for range 4 {
			go func() {
				for cl := range jobs {
					st, err := api.ClusterStatus(ctx, cl.ClusterID)
					if err != nil {
						panic(err)
					}
					results <- res{cl, st}
				}
			}()
		}
		go func() {
			for _, cl := range clusters {
				jobs <- cl
			}
			close(jobs)
		}()
		for range clusters {
			r := <-results
			each(r.cl, r.st)
		}
	}
	b.Run(fmt.Sprintf("floor/%s/printers=%d", via, n), func(b *testing.B) {
		start := cpu()
		for range b.N {
			fetchAll(func(connect.Cluster, *connect.ClusterStatus) {})
		}
		b.ReportMetric(float64(cpu()-start)/float64(b.N*n)/1000, "cpu-µs/printer")
	})
	for _, output := range []string{config.OutputJSON, config.OutputAttributes} {
		bridgeUpdate(b, n, via, output, fetchAll)
	}
}

// bridgeUpdate measures the bridge's update, with MQTT_OUTPUT output.
func bridgeUpdate(b *testing.B, n int, via, output string, fetchAll func(func(connect.Cluster, *connect.ClusterStatus))) {
	ctx := context.Background()
	name := "bridge"
	if output == config.OutputAttributes {
		name = "bridge-attributes"
	}
	b.Run(fmt.Sprintf("%s/%s/printers=%d", name, via, n), func(b *testing.B) {
		cfg, _ := config.Load(map[string]string{}, false)
		out := &counter{last: map[string][]byte{}}
		br := render.New(topics.Tree{Base: "ultimaker"}, out, render.Info{}, bridge.Discovery(cfg, "bench"),
			render.Options{Leaves: output == config.OutputAttributes}, zerolog.Nop())
		views := map[string]*state.View{}
		cycle := func() {
			fetchAll(func(cl connect.Cluster, st *connect.ClusterStatus) {
				prev := views[cl.ClusterID]
				v := state.Build(state.Observation{Cluster: cl, Status: st, Now: time.Now()}, prev)
				br.Apply(ctx, poller.Diff(prev, v))
				views[cl.ClusterID] = &v
			})
		}
		cycle() // the first cycle renders every discovery config
		out.msgs, out.bytes = 0, 0
		runtime.GC()
		start := cpu()
		b.ResetTimer()
		for range b.N {
			cycle()
		}
		b.StopTimer()
		b.ReportMetric(float64(cpu()-start)/float64(b.N*n)/1000, "cpu-µs/printer")
		b.ReportMetric(float64(out.msgs)/float64(b.N), "msgs/cycle")
	})
}
