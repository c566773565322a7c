package local

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// sink records the updates a Poller hands on.
type sink struct {
	mu  sync.Mutex
	got []poller.Update
}

func (s *sink) Apply(_ context.Context, u poller.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, u)
}

func (s *sink) printers() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, u := range s.got {
		for _, p := range u.Printers {
			out[p.ID+"/"+map[bool]string{true: "online", false: "offline"}[p.Online]] = true
		}
	}
	return out
}

// TestSlowPrinterDelaysNoOther polls a printer that never answers beside
// one that does: the answering one keeps its interval, the silent one
// goes offline, and Run stops promptly when its context ends.
func TestSlowPrinterDelaysNoOther(t *testing.T) {
	sim := simulator.New(simulator.Options{Seed: 1})
	lp, err := sim.LocalPrinter("ultimakersystem-4b0fc38e95e3", simulator.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fast := httptest.NewServer(lp)
	defer fast.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	hosts := []string{strings.TrimPrefix(hang.URL, "http://"), strings.TrimPrefix(fast.URL, "http://")}
	rec := &sink{}
	store, _ := OpenStore("")
	p := New(Config{Hosts: hosts, Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, BackoffMax: time.Second},
		store, rec, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(2 * time.Second)
	reads := lp.Requests("/api/v1/printer")
	cancel()
	start := time.Now()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Run took %s to stop", took)
	}
	// 2 s at 100 ms: about 20 reads; the silent printer's 500 ms timeouts
	// must not hold them up.
	if reads < 12 {
		t.Errorf("the answering printer was read %d times in 2 s; the silent one delayed it", reads)
	}
	got := rec.printers()
	if !got["ultimakersystem-4b0fc38e95e3/online"] {
		t.Errorf("no state of the answering printer: %v", got)
	}
	silent := strings.ReplaceAll(strings.Split(hosts[0], ":")[0], ".", "_")
	if !got[silent+"/offline"] {
		t.Errorf("the silent printer is not offline: %v", got)
	}
}

// TestFoundPrinterIsForgotten: a printer found at run time (mDNS) that
// neither answers nor is announced for ForgetAfter leaves, as a printer
// that left the account does; one listed in Hosts stays, offline (issue
// 19.3).
func TestFoundPrinterIsForgotten(t *testing.T) {
	sim := simulator.New(simulator.Options{Seed: 1})
	serve := func(name string) (*simulator.LocalPrinter, string) {
		lp, err := sim.LocalPrinter(name, simulator.LocalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(lp)
		t.Cleanup(srv.Close)
		return lp, strings.TrimPrefix(srv.URL, "http://")
	}
	listed, listedAddr := serve("ultimakersystem-4b0fc38e95e3")
	found, foundAddr := serve("ultimakersystem-ccbdd30044ec")
	rec := &sink{}
	store, _ := OpenStore("")
	p := New(Config{Hosts: []string{listedAddr}, Interval: 100 * time.Millisecond, Timeout: 300 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond, ForgetAfter: time.Second}, store, rec, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	p.Add(foundAddr)
	removed := func() map[string]bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		out := map[string]bool{}
		for _, u := range rec.got {
			for _, pr := range u.RemovedPrinters {
				out[pr.ID] = true
			}
			for _, c := range u.RemovedClusters {
				out["cluster "+c.ID] = true
			}
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for !rec.printers()["ultimakersystem-ccbdd3005a11/online"] && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Both go silent; announcements of the found one keep it until they
	// stop too.
	listed.SetOffline(true)
	found.SetOffline(true)
	for range 10 {
		p.Add(foundAddr)
		time.Sleep(150 * time.Millisecond)
	}
	if got := removed(); len(got) != 0 {
		t.Fatalf("removed %v while still announced", got)
	}
	// Meanwhile the silent host's members show offline, not frozen.
	if !rec.printers()["ultimakersystem-ccbdd3005a11/offline"] {
		t.Errorf("a member of the silent group is not offline: %v", rec.printers())
	}
	deadline = time.Now().Add(5 * time.Second)
	for !removed()["cluster ultimakersystem-ccbdd30044ec"] && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := removed()
	for _, id := range []string{"cluster ultimakersystem-ccbdd30044ec", "ultimakersystem-ccbdd30044ec", "ultimakersystem-ccbdd3005a11",
		"ultimakersystem-ccbdd3007c42"} {
		if !got[id] {
			t.Errorf("%s was not removed with the forgotten group: %v", id, got)
		}
	}
	if got["ultimakersystem-4b0fc38e95e3"] {
		t.Error("a printer listed in LOCAL_PRINTERS was forgotten")
	}
	if onLAN, _ := p.Reach("ultimakersystem-ccbdd30044ec"); onLAN {
		t.Error("the forgotten printer is still reachable for commands")
	}
}

// TestGroupMemberReadsOnlyWhatItOwns: in a group of bridges, a printer
// this member does not own is asked for its identity only; one it loses
// is released (to the member that owns it now), and read again when it
// comes back.
func TestGroupMemberReadsOnlyWhatItOwns(t *testing.T) {
	sim := simulator.New(simulator.Options{Seed: 1})
	lp, err := sim.LocalPrinter("ultimakersystem-4b0fc38e95e3", simulator.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lp)
	defer srv.Close()
	var mu sync.Mutex
	owned, guids := false, map[string]bool{}
	owns := func(guid string) bool {
		mu.Lock()
		defer mu.Unlock()
		guids[guid] = true
		return owned
	}
	setOwned := func(v bool) {
		mu.Lock()
		owned = v
		mu.Unlock()
	}
	rec := &sink{}
	store, _ := OpenStore("")
	p := New(Config{Hosts: []string{strings.TrimPrefix(srv.URL, "http://")}, Interval: 50 * time.Millisecond,
		Owns: owns}, store, rec, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(500 * time.Millisecond)
	if got := rec.printers(); len(got) != 0 {
		t.Fatalf("a printer another member owns was published: %v", got)
	}
	if reads := lp.Requests("/api/v1/printer"); reads > 1 {
		t.Errorf("a printer another member owns was read %d times; want its identity only", reads)
	}
	mu.Lock()
	if len(guids) != 1 || guids[""] {
		t.Errorf("ownership asked by %v; want the printer's GUID", guids)
	}
	mu.Unlock()
	setOwned(true)
	p.Reshare()
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	wait("the printer published once owned", func() bool { return rec.printers()["ultimakersystem-4b0fc38e95e3/online"] })
	setOwned(false)
	p.Reshare()
	wait("the printer released", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, u := range rec.got {
			if len(u.Released) == 1 && u.Released[0].ID == "ultimakersystem-4b0fc38e95e3" && len(u.ReleasedClusters) == 1 {
				return true
			}
		}
		return false
	})
	before := lp.Requests("/api/v1/printer")
	time.Sleep(300 * time.Millisecond)
	if n := lp.Requests("/api/v1/printer") - before; n > 0 {
		t.Errorf("a released printer was read %d more times", n)
	}
}
