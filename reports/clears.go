package reports

import (
	"sync"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
)

// Clears are the waits the bridge saw: how long each finished print
// stood on its plate (wait_cleanup) before someone cleared it. Only this
// run's, kept for 30 days and at most maxClears.
type Clears struct {
	now func() time.Time

	mu      sync.Mutex
	waiting map[string]waiting // by printer: a print on its plate now
	waited  map[string]clear   // by job uuid
	order   []string           // those jobs, oldest first
}

type waiting struct {
	job   string
	since time.Time
}

type clear struct {
	printer string
	at      time.Time // when it was cleared
	seconds int64
}

const (
	clearsKept = 30 * 24 * time.Hour
	maxClears  = 100000
)

// NewClears starts with none seen.
func NewClears() *Clears {
	return &Clears{now: time.Now, waiting: map[string]waiting{}, waited: map[string]clear{}}
}

// Observe takes note of the printers of an update (render.Watch): a
// print that starts waiting on the plate, and one that stops.
func (c *Clears) Observe(u poller.Update) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, p := range u.Printers {
		job := ""
		if p.Job != nil && p.Job.Status == "wait_cleanup" && p.Online {
			job = p.Job.UUID
		}
		w, was := c.waiting[p.ID]
		switch {
		case was && w.job == job:
		case was && p.Online:
			// The plate was cleared: the job left, or the next began.
			c.note(w.job, p.ID, now, now.Sub(w.since))
			delete(c.waiting, p.ID)
		case was:
			delete(c.waiting, p.ID) // offline: when it was cleared is unknown
		}
		if job != "" && (!was || w.job != job) {
			c.waiting[p.ID] = waiting{job: job, since: now}
		}
	}
	for _, p := range u.RemovedPrinters {
		delete(c.waiting, p.ID)
	}
}

// note keeps a wait, forgetting those beyond the bounds. Called with c.mu
// held.
func (c *Clears) note(job, printer string, at time.Time, d time.Duration) {
	if job == "" {
		return
	}
	if _, ok := c.waited[job]; !ok {
		c.order = append(c.order, job)
	}
	c.waited[job] = clear{printer: printer, at: at, seconds: int64(d.Seconds())}
	n := 0
	for n < len(c.order) && (len(c.order)-n > maxClears || at.Sub(c.waited[c.order[n]].at) > clearsKept) {
		delete(c.waited, c.order[n])
		n++
	}
	c.order = c.order[n:]
}

// Waited is how long the print of a job waited to be cleared, in
// seconds, if the bridge saw it.
func (c *Clears) Waited(job string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.waited[job]
	return w.seconds, ok
}
