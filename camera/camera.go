// Package camera keeps printers' pictures coming: one when a print ends, and one every interval while a printer whose own camera the bridge reads prints.
package camera

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// Taker takes and publishes a picture of a printer: with its own camera
// on the LAN, else (unless lanOnly) the cloud's webcam action; the picture
// says the event and job it was taken for; picture.ErrNoCamera when the
// printer has no camera to use. *commands.Handler is one.
type Taker interface {
	TakePicture(ctx context.Context, printer, event, job string, lanOnly bool) error
}

const (
	// maxAtOnce bounds the pictures taken at once: a farm's prints can
	// end together, and each cloud picture is an action to follow.
	maxAtOnce = 4
	// pictureTimeout bounds one picture (a cloud action settles in
	// seconds).
	pictureTimeout = time.Minute
	// rememberJobs bounds the jobs remembered as pictured.
	rememberJobs = 4096
)

// Watcher takes the pictures. Feed it the renderer's updates (Observe)
// and run it (Run).
type Watcher struct {
	taker    Taker
	interval time.Duration // 0: no pictures while printing
	log      zerolog.Logger
	now      func() time.Time

	ended chan ending

	mu       sync.Mutex
	printing map[string]time.Time // printers printing with their own camera -> last picture
	pictured map[string]bool      // jobs whose end was pictured
	order    []string             // those jobs, oldest first
	failing  map[string]bool      // printers whose latest picture failed (logged once)
}

// ending is a print that ended, to be pictured.
type ending struct{ printer, event, job string }

// New returns a Watcher taking pictures with t; interval (CAMERA_INTERVAL)
// is how often a printer with its own camera is pictured while it prints.
func New(t Taker, interval time.Duration, log zerolog.Logger) *Watcher {
	return &Watcher{taker: t, interval: interval, log: log.With().Str("component", "camera").Logger(), now: time.Now,
		ended: make(chan ending, 256), printing: map[string]time.Time{}, pictured: map[string]bool{}, failing: map[string]bool{}}
}

// Observe takes note of an update: prints that ended (to picture at
// once, before the bed is cleared) and which printers print with a camera
// of their own. It never blocks; it runs after the update was published,
// so the event itself is not delayed.
func (w *Watcher) Observe(u poller.Update) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range u.Printers {
		if p.Printing && p.Camera != nil && p.Online {
			if _, ok := w.printing[p.ID]; !ok {
				w.printing[p.ID] = time.Time{}
			}
		} else {
			delete(w.printing, p.ID)
		}
	}
	for _, p := range u.RemovedPrinters {
		delete(w.printing, p.ID)
	}
	for _, e := range u.Events {
		if e.Type != state.PrintFinished && e.Type != state.PrintAborted && e.Type != state.PrintFailed {
			continue
		}
		job := ""
		if e.Job != nil {
			job = e.Job.UUID
		}
		if job != "" && w.pictured[job] {
			continue // one picture per ended job
		}
		if e.Late && !holdsPrint(u, e.Printer) {
			continue // seen after the moment, and the print is gone: nothing to picture
		}
		select {
		case w.ended <- ending{printer: e.Printer, event: e.Type, job: job}:
			if job != "" {
				w.remember(job)
			}
		default:
			w.log.Warn().Str("printer", e.Printer).Msg("too many prints ended at once; no picture of this one")
		}
	}
}

// holdsPrint reports whether u shows the printer still holding its print.
func holdsPrint(u poller.Update, printer string) bool {
	for _, p := range u.Printers {
		if p.ID == printer {
			return p.HoldsPrint()
		}
	}
	return false
}

// remember notes a job as pictured, forgetting the oldest beyond
// rememberJobs. Called with w.mu held.
func (w *Watcher) remember(job string) {
	w.pictured[job] = true
	w.order = append(w.order, job)
	if len(w.order) > rememberJobs {
		delete(w.pictured, w.order[0])
		w.order = w.order[1:]
	}
}

// Run takes the pictures until ctx ends, and waits for those under way.
func (w *Watcher) Run(ctx context.Context) {
	slots := make(chan struct{}, maxAtOnce)
	var wg sync.WaitGroup
	defer wg.Wait()
	take := func(printer, event, job string, lanOnly bool) {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			pctx, cancel := context.WithTimeout(ctx, pictureTimeout)
			defer cancel()
			w.outcome(printer, w.taker.TakePicture(pctx, printer, event, job, lanOnly), ctx)
		})
	}
	var tick <-chan time.Time
	if w.interval > 0 {
		t := time.NewTicker(min(w.interval, time.Second))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-w.ended:
			take(e.printer, e.event, e.job, false)
		case <-tick:
			for _, id := range w.due() {
				take(id, "", "", true)
			}
		}
	}
}

// due are the printers printing with their own camera whose last picture
// is an interval old, marked as pictured now.
func (w *Watcher) due() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	var out []string
	for id, last := range w.printing {
		if now.Sub(last) >= w.interval {
			w.printing[id] = now
			out = append(out, id)
		}
	}
	return out
}

// outcome logs a failed picture once per printer and streak; a printer
// without a camera is no failure.
func (w *Watcher) outcome(printer string, err error, ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		if w.failing[printer] {
			w.log.Info().Str("printer", printer).Msg("pictures work again")
		}
		delete(w.failing, printer)
	case errors.Is(err, picture.ErrNoCamera):
	case !w.failing[printer]:
		w.failing[printer] = true
		w.log.Warn().Err(err).Str("printer", printer).Msg("picture not taken")
	}
}
