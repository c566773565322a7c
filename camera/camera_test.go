package camera

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testlog"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// fakeTaker records the pictures asked for, and answers with err.
type fakeTaker struct {
	mu    sync.Mutex
	taken []string // "printer event job lanOnly"
	err   map[string]error
	hold  chan struct{} // when set, a picture waits for it
}

func (f *fakeTaker) TakePicture(ctx context.Context, printer, event, job string, lanOnly bool) error {
	f.mu.Lock()
	f.taken = append(f.taken, fmt.Sprintf("%s %s %s %v", printer, event, job, lanOnly))
	err, hold := f.err[printer], f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (f *fakeTaker) pictures() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.taken...)
}

func ended(printer, typ, job string) poller.Update {
	return poller.Update{Events: []state.Event{{Type: typ, Printer: printer, Job: &state.EventJob{UUID: job}}}}
}

func printing(id string, camera bool) state.Printer {
	p := state.Printer{ID: id, Online: true, Printing: true}
	if camera {
		p.Camera = &state.Camera{SnapshotURL: "http://printer/snapshot"}
	}
	return p
}

func TestEndedPrintsArePicturedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		taker := &fakeTaker{}
		w := New(taker, 0, zerolog.Nop())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()

		w.Observe(ended("s5", state.PrintFinished, "job-1"))
		w.Observe(ended("s5", state.PrintFinished, "job-1")) // the same end, seen again
		w.Observe(ended("s3", state.PrintAborted, "job-2"))
		w.Observe(ended("s3", state.PrintStarted, "job-3")) // not an end
		synctest.Wait()
		// Taken at once, in any order.
		want := []string{"s3 print_aborted job-2 false", "s5 print_finished job-1 false"}
		if got := taker.pictures(); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			t.Errorf("pictures %q, want %q", got, want)
		}
		cancel()
		<-done
	})
}

func TestPrintersWithACameraArePicturedEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		taker := &fakeTaker{}
		w := New(taker, time.Minute, zerolog.Nop())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()

		w.Observe(poller.Update{Printers: []state.Printer{printing("lan", true), printing("cloud", false)}})
		time.Sleep(150 * time.Second) // pictures at about 1 s, 61 s, 121 s
		synctest.Wait()
		if got := taker.pictures(); len(got) != 3 || got[0] != "lan   true" {
			t.Errorf("pictures %q, want 3 of the LAN printer, with its own camera only", got)
		}

		// It stops printing: no more pictures.
		idle := printing("lan", true)
		idle.Printing = false
		w.Observe(poller.Update{Printers: []state.Printer{idle}})
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if got := taker.pictures(); len(got) != 3 {
			t.Errorf("%d pictures after the print, want still 3", len(got))
		}
		cancel()
		<-done
	})
}

func TestFailuresAreLoggedOncePerStreak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log testlog.Buffer
		taker := &fakeTaker{err: map[string]error{"s5": errors.New("cloud said 503"), "um3": picture.ErrNoCamera}}
		w := New(taker, 0, zerolog.New(&log))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()

		for i := range 3 {
			w.Observe(ended("s5", state.PrintFinished, fmt.Sprint("job-", i)))
			w.Observe(ended("um3", state.PrintFinished, fmt.Sprint("um3-job-", i)))
			synctest.Wait()
		}
		if n := strings.Count(log.String(), "picture not taken"); n != 1 {
			t.Errorf("%d failures logged, want 1 (a printer without camera is none): %s", n, log.String())
		}
		taker.mu.Lock()
		delete(taker.err, "s5")
		taker.mu.Unlock()
		w.Observe(ended("s5", state.PrintFinished, "job-ok"))
		synctest.Wait()
		if !strings.Contains(log.String(), "pictures work again") {
			t.Errorf("the recovery is not logged: %s", log.String())
		}
		cancel()
		<-done
	})
}

func TestRunWaitsForPicturesUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		taker := &fakeTaker{hold: make(chan struct{})}
		w := New(taker, 0, zerolog.Nop())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		for i := range maxAtOnce + 2 {
			w.Observe(ended(fmt.Sprint("p", i), state.PrintFinished, fmt.Sprint("job-", i)))
		}
		synctest.Wait()
		if n := len(taker.pictures()); n != maxAtOnce {
			t.Errorf("%d pictures at once, want %d", n, maxAtOnce)
		}
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after its context ended")
		}
	})
}
