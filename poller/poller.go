// Package poller schedules polite polls of the Connect API and turns the answers into state updates and events.
package poller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// Source is the part of the Connect API the poller reads.
type Source interface {
	Clusters(ctx context.Context) ([]connect.Cluster, error)
	ClusterStatus(ctx context.Context, clusterID string) (*connect.ClusterStatus, error)
	PendingMaintenance(ctx context.Context, clusterID string) ([]connect.MaintenanceTask, error)
	CompletedMaintenance(ctx context.Context, clusterID string, limit int) ([]connect.CompletedMaintenance, error)
	Settings(ctx context.Context) (*connect.Settings, error)
	Usage(ctx context.Context) (json.RawMessage, error)
	WalkReports(ctx context.Context, start, end time.Time, visit func([]connect.Report)) error
}

// Sink receives what changed. Apply is called from the poller's own
// goroutine, one update at a time, and should not block for long.
type Sink interface {
	Apply(ctx context.Context, u Update)
}

// Update is the outcome of one poll: only what changed.
type Update struct {
	Cluster         *state.Cluster  // nil when unchanged
	Printers        []state.Printer // printers whose state changed, or new
	RemovedPrinters []state.Printer // printers that left the account
	RemovedClusters []state.Cluster // clusters that left the account
	Events          []state.Event
	Stats           *Stats           // nil when not worth publishing
	Workspace       *state.Workspace // nil when unchanged
	// Statistics are the 30-day statistics of printers, by topic id: those
	// that changed.
	Statistics map[string]state.Statistics
	// Released are the printers and clusters another member of the group
	// owns from now on: kept as they are, not removed (their topics stay).
	Released         []state.Printer
	ReleasedClusters []state.Cluster
	// Unsettled are printers among Printers whose state still lacks a
	// source that has not finished its first round (the merger's): no
	// events are derived against such a state, which would show what that
	// source adds as news.
	Unsettled []string
}

// Stats describe the poller; the renderer shows them on the bridge's info
// topic.
type Stats struct {
	// Ready is true once the cluster list and every cluster in it have
	// been polled (successfully or not) since start.
	Ready bool
	// CloudReachable is false when the latest request of the cluster list
	// and the latest request of every cluster all went without a sensible
	// answer (network error, timeout, 5xx, garbled body). One failing
	// cluster among answering ones cannot flip it.
	CloudReachable   bool
	Clusters         int
	Printers         int
	ClustersFailing  int
	LastPoll         *time.Time
	PollErrors       int64
	LastError        string
	RateLimitedUntil *time.Time
	// LocalPrinters are the printers read on the LAN, LocalAnswering those
	// that answered their latest poll (the LAN source's own stats).
	LocalPrinters  int
	LocalAnswering int
}

// Config sets the schedule.
type Config struct {
	Interval            time.Duration // status while printing or after a command
	IdleInterval        time.Duration // status when nothing prints
	OfflineInterval     time.Duration // status of an offline cluster
	ClustersInterval    time.Duration // the cluster list
	MaintenanceInterval time.Duration // pending and completed maintenance
	ReportsInterval     time.Duration // usage and the 30-day reports walk
	BackoffMax          time.Duration // cap of the per-cluster backoff
	BoostFor            time.Duration // fast polling after Refresh
	MaxInFlight         int           // requests at once for the account
	ClusterIDs          []string      // only these clusters; empty = all
	Jitter              float64       // ± fraction of each interval; 0 = 0.1, negative = none
	// Gather rounds the loop's wake-ups for status polls up to a multiple
	// of itself, so the polls due within it go out together: a farm of
	// 1,000 clusters then wakes the process 10 times a second instead of
	// 100, and each wake-up costs more than the poll it starts. It delays
	// a poll by less than Gather, never brings one forward. 0 = 100ms,
	// negative = none.
	Gather time.Duration
	// Hold, when it returns true, stops all polling (sign-in required):
	// requests would only fail.
	Hold func() bool
	// OnPoll, when set, is told of every poll ("clusters" or "status")
	// and its error class ("" for success), for metrics.
	OnPoll func(target, class string)

	// A member of a group of bridges polls only what it owns. Owns, when
	// set, says whether this member owns a cluster (by its cloud id), and
	// Leads whether it does the account's work: the cluster list (handed
	// to OnList for the others, who get it through SetClusters), the
	// workspace and the reports. FarmPrinters, when set, are all the
	// farm's printers, the others' too, for the reports' statistics. Call
	// Reshare when the answers may have changed.
	Owns         func(clusterID string) bool
	Leads        func() bool
	OnList       func([]connect.Cluster)
	FarmPrinters func() []state.Printer
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, 10*time.Second)
	def(&c.IdleInterval, time.Minute)
	def(&c.OfflineInterval, 5*time.Minute)
	def(&c.ClustersInterval, 5*time.Minute)
	def(&c.MaintenanceInterval, time.Hour)
	def(&c.ReportsInterval, time.Hour)
	def(&c.BackoffMax, 10*time.Minute)
	def(&c.BoostFor, time.Minute)
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4
	}
	switch {
	case c.Jitter == 0 || c.Jitter > 0.5:
		c.Jitter = 0.1
	case c.Jitter < 0:
		c.Jitter = 0
	}
	switch {
	case c.Gather == 0:
		c.Gather = 100 * time.Millisecond
	case c.Gather < 0:
		c.Gather = 0
	}
}

// Poller polls one account. Create it with New and start it with Run.
type Poller struct {
	cfg     Config
	src     Source
	sink    Sink
	log     zerolog.Logger
	refresh chan refresh
	rng     *rand.Rand
	reshare chan struct{}

	mu     sync.Mutex
	listIn []connect.Cluster // the leader's list, not taken yet (SetClusters)
	listAt time.Time
}

// refresh asks for a poll of one cluster ("" all), and of its pending
// maintenance too when maintenance is set.
type refresh struct {
	clusterID   string
	maintenance bool
	listOnly    bool // the cluster list (and the workspace settings) only
}

// New returns a Poller reading src and reporting to sink.
func New(cfg Config, src Source, sink Sink, log zerolog.Logger) *Poller {
	cfg.defaults()
	return &Poller{
		cfg: cfg, src: src, sink: sink,
		log:     log.With().Str("component", "poller").Logger(),
		refresh: make(chan refresh, 64),
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)),
		reshare: make(chan struct{}, 1),
	}
}

// Reshare asks the poller to look again at what it owns (the group's
// members changed): it releases what it no longer owns and polls what it
// now owns at once. It never blocks.
func (p *Poller) Reshare() {
	select {
	case p.reshare <- struct{}{}:
	default:
	}
}

// SetClusters hands a member that does not lead the account's cluster
// list, as the leader read it; it deals its share from it. It never
// blocks: a newer list replaces one not taken yet.
func (p *Poller) SetClusters(list []connect.Cluster) {
	p.mu.Lock()
	p.listIn, p.listAt = list, time.Now()
	p.mu.Unlock()
	p.Reshare()
}

func (r *run) owns(clusterID string) bool { return r.cfg.Owns == nil || r.cfg.Owns(clusterID) }

func (r *run) leads() bool { return r.cfg.Leads == nil || r.cfg.Leads() }

// Refresh asks for a poll of clusterID now, and fast polls for a while
// after (BoostFor); "" means every cluster. It never blocks.
func (p *Poller) Refresh(clusterID string) { p.ask(refresh{clusterID: clusterID}) }

// RefreshMaintenance is Refresh that also reads the cluster's pending
// maintenance again now, after tasks were logged as done.
func (p *Poller) RefreshMaintenance(clusterID string) {
	p.ask(refresh{clusterID: clusterID, maintenance: true})
}

// RefreshWorkspace reads the cluster list and the workspace settings now,
// after the settings were changed or a printer registered.
func (p *Poller) RefreshWorkspace() { p.ask(refresh{listOnly: true}) }

func (p *Poller) ask(r refresh) {
	select {
	case p.refresh <- r:
	default: // 64 refreshes are pending; they poll soon enough
	}
}

// clusterSched is the poller's record of one cluster. Only Run's
// goroutine touches it.
type clusterSched struct {
	info       connect.Cluster
	view       *state.View
	nextStatus time.Time
	nextMaint  time.Time
	boostUntil time.Time
	failures   int
	inFlight   bool
	polled     bool // at least one status poll finished
	answered   bool // the API answered its latest status request
	// again is a refresh that arrived while a poll was in flight: that
	// poll may have read the cluster before the change, so poll again.
	again bool
	// againMaint is again for maintenance: that poll's maintenance may
	// predate the change too.
	againMaint bool
	// phased is set once the cluster's rhythm was offset (see phase).
	phased bool
	// mine is set while this member of a group owns the cluster (always,
	// alone): only then is it polled.
	mine bool
}

type result struct {
	list      bool
	received  bool // the list came from the group's leader, not from the cloud
	reports   bool
	id        string
	clusters  []connect.Cluster
	settings  *connect.Settings // with the list; nil when it failed
	status    *connect.ClusterStatus
	maint     []connect.MaintenanceTask
	completed []connect.CompletedMaintenance
	maintErr  error
	usage     json.RawMessage
	tally     *state.Tally // the reports walk, counted as it went
	err       error
	at        time.Time
}

// run holds the loop's state.
type run struct {
	*Poller
	clusters     map[string]*clusterSched
	order        []*clusterSched // as found; iterated without map look-ups (1,000 per event add up)
	nextList     time.Time
	listInFlight bool
	listFails    int
	listed       bool                     // a cluster list arrived
	listAnswered bool                     // the API answered the latest list request
	vanished     map[string]state.Printer // left their cluster; removed at the next list unless seen elsewhere
	inFlight     int
	pausedUntil  time.Time
	nextReports  time.Time
	reportsBusy  bool
	workspace    state.Workspace
	printerStats map[string]state.Statistics
	stats        Stats
	sentStats    Stats
	sentAt       time.Time
	results      chan result
	requests     chan func(context.Context) result // to the workers
	// soonest is at or before the earliest nextStatus of a cluster not in
	// flight (schedule keeps it so), so dispatch and nextWake need not look
	// at every cluster on every result: at 10,000 clusters that look was
	// most of the loop's work.
	soonest time.Time
	// due are the clusters found due at the latest look, most overdue
	// first, not started yet.
	due []*clusterSched
	// recounted is false when something recount reads changed.
	recounted bool
	// leading is whether this member did the account's work at the
	// latest look.
	leading bool
}

// Run polls until ctx is cancelled, then waits for requests in flight and
// returns nil.
func (p *Poller) Run(ctx context.Context) error {
	r := &run{Poller: p, clusters: map[string]*clusterSched{}, vanished: map[string]state.Printer{},
		results: make(chan result, p.cfg.MaxInFlight+2), printerStats: map[string]state.Statistics{},
		requests: make(chan func(context.Context) result, p.cfg.MaxInFlight)}
	// MaxInFlight workers make every request: a goroutine per request
	// grew a new stack for each JSON decode, a tenth of the CPU at 1,000
	// clusters.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(r.requests)
	for range p.cfg.MaxInFlight {
		wg.Go(func() {
			for f := range r.requests {
				res := f(ctx)
				res.at = time.Now()
				r.results <- res // buffered for every request in flight: never blocks
			}
		})
	}
	r.nextList, r.nextReports = time.Now(), time.Now()
	r.leading = r.leads()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		r.dispatch(now)
		wake := r.nextWake(now)
		if g := r.cfg.Gather; g > 0 && wake.After(now) {
			if w := wake.Truncate(g); w.Before(wake) {
				wake = w.Add(g)
			}
		}
		timer.Reset(max(wake.Sub(now), 0))
		select {
		case <-ctx.Done():
			return nil
		case res := <-r.results:
			r.inFlight--
			r.handle(ctx, res)
		case rq := <-p.refresh:
			r.boost(rq, time.Now())
		case <-p.reshare:
			r.reshareNow(ctx, time.Now())
		case <-timer.C:
		}
	}
}

// phase shortens a cluster's second status interval by a random part of
// up to half, once: clusters found together then poll out of step, each
// in an exact rhythm after. Exact, so a change reaches MQTT within one
// interval, and never sooner than the API asks (one status call per
// interval); the first poll of all stays immediate.
func (r *run) phase(d time.Duration) time.Duration {
	if r.cfg.Jitter == 0 {
		return d
	}
	return d/2 + time.Duration(r.rng.Float64()*float64(d/2))
}

func (r *run) jitter(d time.Duration) time.Duration {
	if r.cfg.Jitter == 0 {
		return d
	}
	f := 1 + r.cfg.Jitter*(2*r.rng.Float64()-1)
	return time.Duration(float64(d) * f)
}

// backoff is the delay after n consecutive failures: the fast interval
// doubled per failure, capped.
func (r *run) backoff(n int) time.Duration {
	d := r.cfg.Interval
	for i := 1; i < n && d < r.cfg.BackoffMax; i++ {
		d *= 2
	}
	return r.jitter(min(d, r.cfg.BackoffMax))
}

func (r *run) boost(rq refresh, now time.Time) {
	if rq.listOnly {
		r.nextList = now
		return
	}
	for _, c := range r.order {
		if rq.clusterID != "" && c.info.ClusterID != rq.clusterID {
			continue
		}
		c.boostUntil = now.Add(r.cfg.BoostFor)
		if c.nextStatus.After(now) {
			r.schedule(c, now)
		}
		if rq.maintenance {
			c.nextMaint = now
			c.againMaint = c.inFlight
		}
		c.again = c.inFlight
	}
	if rq.clusterID == "" {
		r.nextList = now
	}
}

// dispatch starts every request that is due, within MaxInFlight, unless
// the account is rate limited.
func (r *run) dispatch(now time.Time) {
	if now.Before(r.pausedUntil) || r.held() {
		return
	}
	leads := r.leads()
	if leads && !r.listInFlight && !now.Before(r.nextList) && r.inFlight < r.cfg.MaxInFlight {
		r.listInFlight = true
		r.start(func(ctx context.Context) result {
			cl, err := r.src.Clusters(ctx)
			res := result{list: true, clusters: cl, err: err}
			if err == nil {
				// The workspace settings go with the cluster list.
				res.settings, _ = r.src.Settings(ctx)
			}
			return res
		})
	}
	// Usage and the reports walk once every ReportsInterval, once every
	// cluster is known (the statistics name printers).
	if leads && r.stats.Ready && !r.reportsBusy && !now.Before(r.nextReports) && r.inFlight < r.cfg.MaxInFlight {
		r.reportsBusy = true
		tally := state.NewTally(r.printerOf(), now)
		r.start(func(ctx context.Context) result {
			res := result{reports: true, tally: tally}
			res.usage, res.err = r.src.Usage(ctx)
			if res.err == nil {
				at := time.Now()
				res.err = r.src.WalkReports(ctx, at.Add(-state.StatisticsDays*24*time.Hour), at, tally.Add)
			}
			return res
		})
	}
	if r.inFlight >= r.cfg.MaxInFlight {
		return
	}
	if len(r.due) == 0 && !now.Before(r.soonest) {
		// Most overdue first, so a slow account still gets round to
		// everyone. The queue is drained before the next look at all
		// clusters: with polls gathered, looking again after each result
		// was most of the CPU at 10,000 clusters.
		r.soonest = now.Add(time.Hour)
		for _, c := range r.order {
			switch {
			case c.inFlight || !c.mine:
			case !now.Before(c.nextStatus):
				r.due = append(r.due, c)
			default:
				r.soonest = minTime(r.soonest, c.nextStatus)
			}
		}
		slices.SortStableFunc(r.due, func(a, b *clusterSched) int { return a.nextStatus.Compare(b.nextStatus) })
	}
	for len(r.due) > 0 && r.inFlight < r.cfg.MaxInFlight {
		c := r.due[0]
		r.due[0] = nil
		r.due = r.due[1:]
		if r.clusters[c.info.ClusterID] != c || c.inFlight || !c.mine {
			continue // left the account or this member, or polled since it was queued
		}
		if now.Before(c.nextStatus) {
			r.soonest = minTime(r.soonest, c.nextStatus) // put off since (rate limit)
			continue
		}
		c.inFlight = true
		// The first status of a cluster goes out alone: its maintenance
		// waits for the second poll, so a farm's first full publish costs
		// one request per cluster, not three.
		id, wantMaint := c.info.ClusterID, c.polled && !now.Before(c.nextMaint)
		r.start(func(ctx context.Context) result {
			res := result{id: id}
			res.status, res.err = r.src.ClusterStatus(ctx, id)
			if res.err == nil && wantMaint {
				res.maint, res.maintErr = r.src.PendingMaintenance(ctx, id)
				if res.maint == nil && res.maintErr == nil {
					res.maint = []connect.MaintenanceTask{}
				}
				if res.maintErr == nil {
					res.completed, res.maintErr = r.src.CompletedMaintenance(ctx, id, state.MaintenanceHistoryLength)
					if res.completed == nil && res.maintErr == nil {
						res.completed = []connect.CompletedMaintenance{}
					}
				}
			}
			return res
		})
	}
}

// start hands f to a worker; there is always one free, as no more than
// MaxInFlight requests are in flight.
func (r *run) start(f func(context.Context) result) {
	r.inFlight++
	r.requests <- f
}

func (r *run) held() bool { return r.cfg.Hold != nil && r.cfg.Hold() }

func (r *run) nextWake(now time.Time) time.Time {
	if now.Before(r.pausedUntil) {
		return r.pausedUntil
	}
	if r.held() {
		return now.Add(time.Second) // look again; Refresh also wakes us
	}
	wake := now.Add(time.Hour)
	if !r.listInFlight && r.leading {
		wake = minTime(wake, r.nextList)
	}
	if r.stats.Ready && !r.reportsBusy && r.leading {
		wake = minTime(wake, r.nextReports)
	}
	if r.inFlight >= r.cfg.MaxInFlight {
		return wake // a result will wake us
	}
	return minTime(wake, r.soonest)
}

// schedule sets c's next status poll to at.
func (r *run) schedule(c *clusterSched, at time.Time) {
	c.nextStatus = at
	r.soonest = minTime(r.soonest, at)
}

func (r *run) handle(ctx context.Context, res result) {
	if ctx.Err() != nil {
		return // shutting down: cancelled requests are not failures
	}
	if res.list {
		r.listInFlight = false
		r.handleList(ctx, res)
		return
	}
	if res.reports {
		r.reportsBusy = false
		r.handleReports(ctx, res)
		return
	}
	c := r.clusters[res.id]
	if c == nil {
		return // removed while its request was in flight
	}
	if !c.mine {
		c.inFlight = false // another member owns it since: its poll tells
		return
	}
	answered := connect.Answered(res.err)
	if !c.polled || c.answered != answered {
		r.recounted = false
	}
	c.inFlight, c.polled, c.answered = false, true, answered
	r.observe("status", res.err)
	if res.err != nil {
		r.statusFailed(ctx, c, res)
		return
	}
	if c.failures > 0 {
		r.log.Info().Str("cluster", c.info.ClusterID).Int("failures", c.failures).Msg("cluster poll recovered")
		r.recounted = false
	}
	c.failures = 0

	if res.maintErr != nil {
		r.log.Debug().Err(res.maintErr).Str("cluster", c.info.ClusterID).Msg("pending maintenance poll failed")
		c.nextMaint = res.at.Add(r.backoff(2))
	} else if res.maint != nil {
		c.nextMaint = res.at.Add(r.jitter(r.cfg.MaintenanceInterval))
	}
	r.publish(ctx, c, state.Observation{Cluster: c.info, Status: res.status, Maintenance: res.maint,
		Completed: res.completed, Now: res.at})
	iv := r.interval(c, res.at)
	if !c.phased {
		c.phased, iv = true, r.phase(iv)
	}
	if c.again {
		iv, c.again = 0, false
	}
	r.schedule(c, res.at.Add(iv))
	if c.againMaint {
		c.nextMaint, c.againMaint = res.at, false
	}
	t := res.at.UTC().Truncate(time.Second)
	r.stats.LastPoll = &t
	r.sendStats(ctx, false)
}

// interval picks the next status interval for c: fast while something
// happens, slow when idle, slower when offline.
func (r *run) interval(c *clusterSched, now time.Time) time.Duration {
	if now.Before(c.boostUntil) {
		return r.cfg.Interval
	}
	if c.view == nil || !c.view.Cluster.Online {
		return r.cfg.OfflineInterval
	}
	for _, p := range c.view.Printers {
		if p.Job != nil {
			return r.cfg.Interval
		}
	}
	return r.cfg.IdleInterval
}

// Diff is the update from the view prev (nil: first sight) to next: the
// cluster and printers whose content changed, and the events between.
func Diff(prev *state.View, next state.View) Update {
	var u Update
	if next.ClusterChanged {
		cl := next.Cluster
		u.Cluster = &cl
	}
	for i, p := range next.Printers {
		if next.PrinterChanged[i] {
			u.Printers = append(u.Printers, p)
		}
	}
	if prev != nil {
		u.Events = state.Events(*prev, next)
	}
	return u
}

func (r *run) publish(ctx context.Context, c *clusterSched, obs state.Observation) {
	view := state.Build(obs, c.view)
	u := Diff(c.view, view)
	old := map[string]state.Printer{}
	if c.view != nil {
		for _, p := range c.view.Printers {
			old[p.ID] = p
		}
	}
	for _, p := range view.Printers {
		delete(old, p.ID)
	}
	for _, p := range old {
		// A printer gone from this cluster may have moved to another one
		// not polled yet: decide at the next cluster list.
		if !r.printerElsewhere(p.ID, c) {
			r.vanished[p.ID] = p
		}
	}
	for _, p := range view.Printers {
		delete(r.vanished, p.ID)
	}
	if c.view == nil || len(c.view.Printers) != len(view.Printers) {
		r.recounted = false
	}
	c.view = &view
	r.recount()
	if u.Cluster != nil || len(u.Printers) > 0 || len(u.Events) > 0 {
		r.sink.Apply(ctx, u)
	}
	// Published: the encodings were for that. Their sums tell the next
	// poll's changes, and the list's copy of the host printer is of no
	// more use once the status was read.
	c.view.Compact()
	c.info.HostPrinter = nil
}

func (r *run) statusFailed(ctx context.Context, c *clusterSched, res result) {
	c.failures++
	r.recounted = r.recounted && c.failures > 1
	c.again, c.againMaint = false, false // the backoff decides
	r.stats.PollErrors++
	r.stats.LastError = string(connect.KindOf(res.err))
	if c.failures == 1 {
		// Once per failure streak: a cloud outage must not flood the log.
		r.log.Warn().Err(res.err).Str("cluster", c.info.ClusterID).Str("kind", r.stats.LastError).Msg("cluster poll failed")
	}
	r.schedule(c, res.at.Add(r.backoff(c.failures)))
	var ae *connect.APIError
	if errors.As(res.err, &ae) {
		switch ae.Kind {
		case connect.KindRateLimited:
			r.rateLimited(ae, res.at)
		case connect.KindNotFound:
			r.nextList = minTime(r.nextList, res.at) // the cluster may have left the account
		}
	}
	// An offline cluster whose status cannot be read still has printers
	// users want to see as offline: publish what the list says.
	if c.view == nil && !c.info.IsOnline && c.info.HostPrinter != nil {
		r.publish(ctx, c, state.Observation{Cluster: c.info, Now: res.at})
	}
	r.recount()
	r.sendStats(ctx, true)
}

// rateLimited pauses every request of the account: the limit is per
// account, so polling other clusters would only prolong it.
func (r *run) rateLimited(ae *connect.APIError, now time.Time) {
	d := max(ae.RetryAfter, time.Second) // connect fills in its default
	until := now.Add(d)
	if until.After(r.pausedUntil) {
		r.pausedUntil = until
		shown := until.UTC().Truncate(time.Second)
		r.stats.RateLimitedUntil = &shown
		r.log.Warn().Dur("retry_after", d).Msg("rate limited: pausing all polls")
	}
	for _, c := range r.order {
		if c.nextStatus.Before(until) {
			c.nextStatus = until
		}
	}
	r.nextList = maxTime(r.nextList, until)
}

// reshareNow takes a cluster list the leader handed over, and looks
// again at what this member owns: what another member owns now is
// released (its view dropped, its topics left as they are), what it owns
// now is polled at once.
func (r *run) reshareNow(ctx context.Context, now time.Time) {
	r.mu.Lock()
	list, at := r.listIn, r.listAt
	r.listIn = nil
	r.mu.Unlock()
	wasLeading := r.leading
	r.leading = r.leads()
	if list != nil && !r.leading {
		r.handleList(ctx, result{list: true, received: true, clusters: list, at: at})
	}
	if r.leading && !wasLeading {
		r.log.Debug().Msg("leading the group: reading the cluster list, workspace and reports")
		r.nextList, r.nextReports = now, now
	}
	var released []state.Printer
	var releasedClusters []state.Cluster
	for _, c := range r.order {
		mine := r.owns(c.info.ClusterID)
		switch {
		case mine && !c.mine:
			c.mine, c.failures, c.phased = true, 0, false
			r.schedule(c, now)
		case !mine && c.mine:
			c.mine = false
			if c.view != nil {
				released = append(released, c.view.Printers...)
				releasedClusters = append(releasedClusters, c.view.Cluster)
			}
			c.view, c.polled, c.answered, c.failures, c.again, c.againMaint = nil, false, false, 0, false, false
		}
	}
	r.recounted = false
	r.recount()
	if len(released) > 0 || len(releasedClusters) > 0 {
		r.sink.Apply(ctx, Update{Released: released, ReleasedClusters: releasedClusters})
	}
	r.sendStats(ctx, true)
}

func (r *run) handleList(ctx context.Context, res result) {
	r.recounted = false
	if !res.received {
		r.listAnswered = connect.Answered(res.err)
		r.observe("clusters", res.err)
	}
	if res.err != nil {
		r.listFails++
		r.stats.PollErrors++
		r.stats.LastError = string(connect.KindOf(res.err))
		switch {
		case r.listFails == 1 && connect.KindOf(res.err) == connect.KindAuth:
			// Nothing will work until a person acts: say what to do.
			r.log.Error().Err(res.err).Str("kind", r.stats.LastError).Msg("the cloud refuses the bridge's token: " +
				"check ULTIMAKER_API_TOKEN (or sign in again with login for TOKEN_FILE); `ultimaker2mqtt check` tells more")
		case r.listFails == 1:
			r.log.Warn().Err(res.err).Str("kind", r.stats.LastError).Msg("cluster list poll failed")
		}
		r.nextList = res.at.Add(min(r.backoff(r.listFails), r.cfg.ClustersInterval))
		var ae *connect.APIError
		if errors.As(res.err, &ae) && ae.Kind == connect.KindRateLimited {
			r.rateLimited(ae, res.at)
		}
		r.recount()
		r.sendStats(ctx, true)
		return
	}
	if r.listFails > 0 {
		r.log.Info().Int("failures", r.listFails).Msg("cluster list poll recovered")
	}
	r.listFails, r.listed = 0, true
	if !res.received {
		r.workspaceSettings(ctx, res.settings, res.at)
		t := res.at.UTC().Truncate(time.Second)
		r.stats.LastPoll = &t
		r.nextList = res.at.Add(r.jitter(r.cfg.ClustersInterval))
		if r.cfg.OnList != nil {
			list := make([]connect.Cluster, 0, len(res.clusters))
			for _, cl := range res.clusters {
				list = append(list, listed(cl, true))
			}
			r.cfg.OnList(list)
		}
	}

	seen := map[string]bool{}
	for _, cl := range res.clusters {
		if cl.ClusterID == "" || seen[cl.ClusterID] || (len(r.cfg.ClusterIDs) > 0 && !slices.Contains(r.cfg.ClusterIDs, cl.ClusterID)) {
			continue
		}
		seen[cl.ClusterID] = true
		c := r.clusters[cl.ClusterID]
		if c == nil {
			c = &clusterSched{nextMaint: res.at, mine: r.owns(cl.ClusterID)}
			if c.mine {
				r.schedule(c, res.at)
			}
			r.clusters[cl.ClusterID] = c
			r.order = append(r.order, c)
			r.log.Debug().Str("cluster", cl.ClusterID).Str("name", cl.FriendlyName).Bool("mine", c.mine).Msg("cluster found")
		} else if c.info.IsOnline != cl.IsOnline && !c.inFlight && c.mine {
			r.schedule(c, res.at) // came online or went offline: look now
		}
		c.info = listed(cl, c.view != nil)
	}
	var gone []state.Cluster
	var gonePrinters []state.Printer
	r.order = slices.DeleteFunc(r.order, func(c *clusterSched) bool {
		id := c.info.ClusterID
		if seen[id] {
			return false
		}
		delete(r.clusters, id)
		if c.view != nil {
			gone = append(gone, c.view.Cluster)
			for _, p := range c.view.Printers {
				if !r.printerElsewhere(p.ID, c) {
					gonePrinters = append(gonePrinters, p)
				}
			}
		}
		if c.mine {
			r.log.Info().Str("cluster", id).Msg("cluster left the account")
		}
		return true
	})
	// Printers that left a cluster and turned up nowhere since.
	for id, p := range r.vanished {
		if !r.printerElsewhere(id, nil) {
			gonePrinters = append(gonePrinters, p)
		}
	}
	clear(r.vanished)
	if len(gone) > 0 || len(gonePrinters) > 0 {
		r.sink.Apply(ctx, Update{RemovedClusters: gone, RemovedPrinters: gonePrinters})
	}
	r.recount()
	r.sendStats(ctx, true)
}

// listed is what the poller keeps of a cluster from the list: the fields
// state.Build reads, and the host printer only until the status was read
// (polled). At 10,000 clusters the rest was 3 MB.
func listed(cl connect.Cluster, polled bool) connect.Cluster {
	kept := connect.Cluster{ClusterID: cl.ClusterID, HostName: cl.HostName, FriendlyName: cl.FriendlyName,
		IsOnline: cl.IsOnline, PrinterType: cl.PrinterType, HostVersion: cl.HostVersion, Capabilities: cl.Capabilities,
		OrganizationShared: cl.OrganizationShared, TeamIDs: cl.TeamIDs, Note: cl.Note, MaintenanceDue: cl.MaintenanceDue}
	if !polled {
		kept.HostPrinter = cl.HostPrinter
	}
	return kept
}

// printerElsewhere reports whether a cluster other than c shows printer id.
func (r *run) printerElsewhere(id string, c *clusterSched) bool {
	for _, o := range r.order {
		if o == c || o.view == nil {
			continue
		}
		for _, p := range o.view.Printers {
			if p.ID == id {
				return true
			}
		}
	}
	return false
}

func (r *run) observe(target string, err error) {
	if r.cfg.OnPoll == nil {
		return
	}
	class := ""
	if err != nil {
		if class = string(connect.KindOf(err)); class == "" {
			class = "other"
		}
	}
	r.cfg.OnPoll(target, class)
}

// recount brings the stats' counts up to date, when something they are
// made of changed (a look at every cluster per poll added up at 10,000).
func (r *run) recount() {
	if r.stats.RateLimitedUntil != nil && !time.Now().Before(*r.stats.RateLimitedUntil) {
		r.stats.RateLimitedUntil = nil
	}
	if r.recounted {
		return
	}
	r.recounted = true
	r.stats.Clusters, r.stats.Printers, r.stats.ClustersFailing = 0, 0, 0
	ready := r.listed
	r.stats.CloudReachable = r.listAnswered
	for _, c := range r.order {
		if !c.mine {
			continue
		}
		r.stats.Clusters++
		r.stats.CloudReachable = r.stats.CloudReachable || c.answered
		ready = ready && c.polled
		if c.view != nil {
			r.stats.Printers += len(c.view.Printers)
		}
		if c.failures > 0 {
			r.stats.ClustersFailing++
		}
	}
	r.stats.Ready = r.stats.Ready || ready
}

// statsEvery is how often a newer last_poll alone is worth a publish.
const statsEvery = 30 * time.Second

// sendStats hands the stats to the sink when something other than the
// poll time changed, or the poll time is statsEvery old: last_poll alone
// must not cost a publish per cluster poll.
func (r *run) sendStats(ctx context.Context, force bool) {
	s := r.stats
	cmp, sent := s, r.sentStats
	cmp.LastPoll, sent.LastPoll = nil, nil
	cmp.RateLimitedUntil, sent.RateLimitedUntil = nil, nil
	changed := cmp != sent || !timeEq(s.RateLimitedUntil, r.sentStats.RateLimitedUntil)
	if !changed && !force && time.Since(r.sentAt) < max(r.cfg.Interval, statsEvery) {
		return
	}
	if !changed && timeEq(s.LastPoll, r.sentStats.LastPoll) {
		return
	}
	r.sentStats, r.sentAt = s, time.Now()
	r.sink.Apply(ctx, Update{Stats: &s})
}

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// farm is every printer of the account: the group's (FarmPrinters), or
// those of the clusters polled here.
func (r *run) farm() []state.Printer {
	if r.cfg.FarmPrinters != nil {
		return r.cfg.FarmPrinters()
	}
	var out []state.Printer
	for _, c := range r.order {
		if c.view != nil {
			out = append(out, c.view.Printers...)
		}
	}
	return out
}

// printerOf names the printer a report ran on, from the clusters known
// now (state.ReportPrinter); the walk runs on a worker, so the maps are
// its own.
func (r *run) printerOf() func(connect.Report) string { return state.ReportPrinter(r.farm()) }

// handleReports turns usage and the reports walk into the workspace's and
// each printer's 30-day statistics.
func (r *run) handleReports(ctx context.Context, res result) {
	r.observe("reports", res.err)
	if res.err != nil {
		r.log.Debug().Err(res.err).Msg("usage or reports poll failed")
		r.nextReports = res.at.Add(min(r.backoff(3), r.cfg.ReportsInterval))
		var ae *connect.APIError
		if errors.As(res.err, &ae) && ae.Kind == connect.KindRateLimited {
			r.rateLimited(ae, res.at)
		}
		return
	}
	r.nextReports = res.at.Add(r.jitter(r.cfg.ReportsInterval))
	all, per := res.tally.Result(res.at)
	var u Update
	ws := r.workspace
	if ws.Statistics == nil || !state.SameStatistics(*ws.Statistics, all) || !bytes.Equal(ws.Usage, res.usage) {
		ws.Statistics, ws.Usage, ws.UpdatedAt = &all, res.usage, res.at.UTC().Truncate(time.Second)
		r.workspace = ws
		u.Workspace = &ws
	}
	for _, p := range r.farm() {
		s, ok := per[p.ID]
		if !ok {
			s = state.Statistics{PeriodDays: state.StatisticsDays, UpdatedAt: all.UpdatedAt}
		}
		if old, seen := r.printerStats[p.ID]; !seen || !state.SameStatistics(old, s) {
			if u.Statistics == nil {
				u.Statistics = map[string]state.Statistics{}
			}
			u.Statistics[p.ID] = s
			r.printerStats[p.ID] = s
		}
	}
	if u.Workspace != nil || len(u.Statistics) > 0 {
		r.sink.Apply(ctx, u)
	}
}

// workspaceSettings takes the settings read with the cluster list.
func (r *run) workspaceSettings(ctx context.Context, s *connect.Settings, at time.Time) {
	if s == nil {
		return
	}
	next := state.SettingsOf(*s)
	if r.workspace.Settings != nil && *r.workspace.Settings == next {
		return
	}
	ws := r.workspace
	ws.Settings, ws.UpdatedAt = &next, at.UTC().Truncate(time.Second)
	r.workspace = ws
	r.sink.Apply(ctx, Update{Workspace: &ws})
}
