// Package reports answers the farm's weekly questions: which jobs ran where, for whom and how they ended (the job log), and how busy each printer is (utilisation), from the cloud's history and the LAN printers' own, read when asked and kept briefly.
package reports

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// Job is one row of the job log: a job that ran on a printer.
type Job struct {
	UUID        string     `json:"uuid"`
	Name        string     `json:"name"`
	Printer     string     `json:"printer"`      // topic id; "" for a printer the bridge does not know
	PrinterName string     `json:"printer_name"` // as the cloud or the printer named it
	Cluster     string     `json:"cluster"`      // topic id
	Owner       string     `json:"owner"`
	Status      string     `json:"status"` // finished, aborted, failed, or the status of a job that runs
	Created     time.Time  `json:"created"`
	Ended       *time.Time `json:"ended"`
	TimeElapsed int64      `json:"time_elapsed"` // seconds
	TimeTotal   int64      `json:"time_total"`   // seconds
	Materials   []string   `json:"materials"`
	Source      string     `json:"source"` // cloud or local
	// WaitedToClear is how long the finished print waited on the plate
	// for someone to clear it (seconds), where the bridge saw it.
	WaitedToClear *int64 `json:"waited_to_clear"`
}

// The results a job ends with (the rule of the 30-day statistics).
const (
	Finished = "finished"
	Aborted  = "aborted"
	Failed   = "failed"
)

// Cloud is the part of the Connect API the job log reads;
// *connect.Client is one.
type Cloud interface {
	WalkReports(ctx context.Context, start, end time.Time, visit func([]connect.Report)) error
	PrintJobs(ctx context.Context, q connect.PrintJobQuery) ([]connect.PrintJob, connect.Page, error)
}

// LAN reads the LAN printers' own histories; *local.Poller is one.
type LAN interface {
	History(ctx context.Context, since time.Time) []local.PrinterHistory
}

// Farm is the farm as the bridge has it; *render.Renderer is one.
type Farm interface {
	Printers() []state.Printer
	Clusters() []state.Cluster
}

// Config tunes a Log.
type Config struct {
	// Keep is how long a period's jobs, once read, answer other
	// questions about it before they are read again. Zero: a minute.
	Keep time.Duration
	// MaxRunning bounds a job's life when the log reads jobs of a period
	// from the cloud's reports, which may list them by when they ended:
	// the read goes on this long past the period's end. Zero: 7 days.
	MaxRunning time.Duration
}

// MaxPeriod is the longest period the job log reads at once.
const MaxPeriod = 93 * 24 * time.Hour

// keepPeriods bounds the periods kept at once.
const keepPeriods = 4

// Log is the job log and the utilisation, over the sources in use (cloud
// or LAN may be nil).
type Log struct {
	cfg     Config
	cloud   Cloud
	lan     LAN
	farm    Farm
	now     func() time.Time
	clears  *Clears
	flights singleflight.Group
	reading chan struct{} // one read of the sources at a time

	mu   sync.Mutex
	kept map[period]kept
}

type period struct{ from, to int64 } // unix seconds

type kept struct {
	jobs []Job // newest first
	at   time.Time
}

// New returns a Log reading cloud and lan (either may be nil), naming
// printers and clusters from farm, with the waits to clear from clears
// (may be nil).
func New(cfg Config, cloud Cloud, lan LAN, farm Farm, clears *Clears) *Log {
	if cfg.Keep <= 0 {
		cfg.Keep = time.Minute
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = 7 * 24 * time.Hour
	}
	if clears == nil {
		clears = NewClears()
	}
	return &Log{cfg: cfg, cloud: cloud, lan: lan, farm: farm, now: time.Now, clears: clears, kept: map[period]kept{},
		reading: make(chan struct{}, 1)}
}

// Query asks the job log: the jobs created in [From, To) that match every
// filter given (a filter's values are alternatives), newest first, a page
// of them.
type Query struct {
	From, To time.Time
	Printers []string // topic ids, or names
	Clusters []string // topic ids, or names
	Statuses []string
	Owners   []string
	Text     string // the name contains it, in any case
	Page     int    // from 1
	PerPage  int
}

// ErrQuery is a question the log cannot answer as asked.
var ErrQuery = errors.New("bad query")

// DefaultDays is the period asked when a query names none: the last week.
const DefaultDays = 7

// MaxPerPage bounds a JSON page.
const MaxPerPage = 500

// ParseQuery reads a query from a URL's: from and to (RFC 3339 times, or
// dates, which mean their start in UTC; default the last DefaultDays
// days), printer, cluster, status, owner (each may repeat, or be a
// comma-separated list), q, page and per_page.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	q := Query{Page: 1, PerPage: 100}
	var err error
	if q.To, err = parseTime(v.Get("to"), now); err != nil {
		return q, fmt.Errorf("%w: to: %v", ErrQuery, err)
	}
	if q.From, err = parseTime(v.Get("from"), q.To.Add(-DefaultDays*24*time.Hour)); err != nil {
		return q, fmt.Errorf("%w: from: %v", ErrQuery, err)
	}
	switch {
	case !q.From.Before(q.To):
		return q, fmt.Errorf("%w: from must be before to", ErrQuery)
	case q.To.Sub(q.From) > MaxPeriod:
		return q, fmt.Errorf("%w: at most %d days at once", ErrQuery, int(MaxPeriod.Hours()/24))
	}
	list := func(key string) []string {
		var out []string
		for _, s := range v[key] {
			for _, item := range strings.Split(s, ",") {
				if item = strings.TrimSpace(item); item != "" && len(out) < 100 {
					out = append(out, item)
				}
			}
		}
		return out
	}
	q.Printers, q.Clusters, q.Statuses, q.Owners = list("printer"), list("cluster"), list("status"), list("owner")
	q.Text = strings.TrimSpace(v.Get("q"))
	for key, dst := range map[string]*int{"page": &q.Page, "per_page": &q.PerPage} {
		if s := v.Get(key); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return q, fmt.Errorf("%w: %s: a whole number from 1", ErrQuery, key)
			}
			*dst = n
		}
	}
	q.PerPage = min(q.PerPage, MaxPerPage)
	return q, nil
}

func parseTime(s string, def time.Time) (time.Time, error) {
	switch {
	case s == "":
		return def.UTC(), nil
	case len(s) == len("2006-01-02"):
		t, err := time.Parse(time.DateOnly, s)
		return t.UTC(), err
	}
	t, err := time.Parse(time.RFC3339, s)
	return t.UTC(), err
}

// Result is a page of the job log.
type Result struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Total   int       `json:"total"` // jobs that match, on every page
	Page    int       `json:"page"`
	PerPage int       `json:"per_page"`
	Jobs    []Job     `json:"jobs"`
}

// Jobs answers q: every matching job when all (CSV), else q's page.
func (l *Log) Jobs(ctx context.Context, q Query, all bool) (Result, error) {
	jobs, err := l.period(ctx, q.From, q.To)
	if err != nil {
		return Result{}, err
	}
	match := jobs // shared, read only: no copy of a farm's month when nothing is filtered
	if q.filters() {
		match = nil
		names := l.names()
		for _, j := range jobs {
			if q.matches(j, names) {
				match = append(match, j)
			}
		}
	}
	r := Result{From: q.From, To: q.To, Total: len(match), Page: q.Page, PerPage: q.PerPage, Jobs: match}
	if !all {
		lo := min(len(match), (q.Page-1)*q.PerPage)
		r.Jobs = match[lo:min(len(match), lo+q.PerPage)]
	}
	if r.Jobs == nil {
		r.Jobs = []Job{}
	}
	return r, nil
}

// names are the friendly names of the farm's printers and clusters, by
// topic id, for filters that name them.
func (l *Log) names() map[string]string {
	out := map[string]string{}
	if l.farm == nil {
		return out
	}
	for _, p := range l.farm.Printers() {
		out[p.ID] = p.FriendlyName
	}
	for _, c := range l.farm.Clusters() {
		out["cluster:"+c.ID] = c.FriendlyName
	}
	return out
}

func (q Query) filters() bool {
	return len(q.Printers)+len(q.Clusters)+len(q.Statuses)+len(q.Owners) > 0 || q.Text != ""
}

func (q Query) matches(j Job, names map[string]string) bool {
	oneOf := func(values []string, ids ...string) bool {
		if len(values) == 0 {
			return true
		}
		for _, v := range values {
			for _, id := range ids {
				if id != "" && strings.EqualFold(v, id) {
					return true
				}
			}
		}
		return false
	}
	return oneOf(q.Printers, j.Printer, j.PrinterName, names[j.Printer]) &&
		oneOf(q.Clusters, j.Cluster, names["cluster:"+j.Cluster]) &&
		oneOf(q.Statuses, j.Status) && oneOf(q.Owners, j.Owner) &&
		(q.Text == "" || strings.Contains(strings.ToLower(j.Name), strings.ToLower(q.Text)))
}

// period is every job created in [from, to), newest first: read from the
// sources, or kept from a read less than Keep ago. Reads of one period at
// once share one read.
func (l *Log) period(ctx context.Context, from, to time.Time) ([]Job, error) {
	key := period{from.Unix(), to.Unix()}
	now := l.now()
	l.mu.Lock()
	if k, ok := l.kept[key]; ok && now.Sub(k.at) < l.cfg.Keep {
		l.mu.Unlock()
		return k.jobs, nil
	}
	l.mu.Unlock()
	v, err, _ := l.flights.Do(fmt.Sprint(key), func() (any, error) {
		// One walk of the history at a time, whoever asks: a page's
		// questions must never cost the account its request budget (a 429
		// pauses every poll).
		select {
		case l.reading <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-l.reading }()
		jobs, err := l.read(context.WithoutCancel(ctx), from, to)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		var oldest period
		for k, old := range l.kept {
			if now.Sub(old.at) >= l.cfg.Keep {
				delete(l.kept, k)
			} else if oldest == (period{}) || old.at.Before(l.kept[oldest].at) {
				oldest = k
			}
		}
		if len(l.kept) >= keepPeriods {
			delete(l.kept, oldest)
		}
		l.kept[key] = kept{jobs: jobs, at: now}
		return jobs, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]Job), nil
}

// read reads the jobs created in [from, to): the cloud's reports of jobs
// that ended (asked until MaxRunning past to, and kept by when they were
// created: the rule of the 30-day statistics), its jobs that run now, and
// the LAN printers' histories for jobs the cloud does not know.
func (l *Log) read(ctx context.Context, from, to time.Time) ([]Job, error) {
	now := l.now()
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	n := l.namer()
	seen := map[string]bool{}
	var jobs []Job
	if l.cloud != nil {
		end := to.Add(l.cfg.MaxRunning)
		if end.After(now) {
			end = now
		}
		err := l.cloud.WalkReports(ctx, from, end, func(rs []connect.Report) {
			for _, r := range rs {
				if !in(r.CreatedAt.Time) || seen[r.UUID] {
					continue
				}
				seen[r.UUID] = true
				jobs = append(jobs, n.report(r))
			}
		})
		if err != nil {
			return nil, fmt.Errorf("the cloud's reports: %w", err)
		}
		if to.After(now.Add(-l.cfg.MaxRunning)) {
			running, err := l.running(ctx)
			if err != nil {
				return nil, fmt.Errorf("the cloud's print jobs: %w", err)
			}
			for _, pj := range running {
				if in(pj.CreatedAt.Time) && !seen[pj.UUID] {
					seen[pj.UUID] = true
					jobs = append(jobs, n.printJob(pj))
				}
			}
		}
	}
	if l.lan != nil {
		for _, h := range l.lan.History(ctx, from) {
			for _, hj := range h.Jobs {
				j := n.lanJob(h.Printer, hj)
				if in(j.Created) && !seen[j.UUID] {
					seen[j.UUID] = true
					jobs = append(jobs, j)
				}
			}
		}
	}
	for i := range jobs {
		if w, ok := l.clears.Waited(jobs[i].UUID); ok {
			jobs[i].WaitedToClear = &w
		}
	}
	slices.SortStableFunc(jobs, func(a, b Job) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.UUID, b.UUID)
	})
	return jobs, nil
}

// running is the cloud's jobs in progress, every page.
func (l *Log) running(ctx context.Context) ([]connect.PrintJob, error) {
	var out []connect.PrintJob
	for page := 1; page <= 100; page++ {
		js, p, err := l.cloud.PrintJobs(ctx, connect.PrintJobQuery{States: []string{"in_progress"}, Page: page, Limit: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, js...)
		if len(js) == 0 || p.TotalPages <= page {
			break
		}
	}
	return out, nil
}
