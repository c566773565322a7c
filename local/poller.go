package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Config sets how printers on the LAN are read.
type Config struct {
	Hosts          []string      // host or host:port, checked by ParseHost
	Interval       time.Duration // status of each printer (5s)
	Timeout        time.Duration // one request (3s)
	BackoffMax     time.Duration // longest wait between tries of a silent printer (1m)
	SystemInterval time.Duration // identity and firmware (10m)
	// ForgetAfter removes a printer found at run time (Add: mDNS) that
	// neither answered nor was announced for this long (24h); the
	// configured Hosts are never removed.
	ForgetAfter time.Duration
	Pair        PairRequest // how the bridge introduces itself when pairing
	// OnRequest, when set, is told of every request's outcome ("" or an
	// error class), for metrics and benchmarks.
	OnRequest func(host, class string)
	// KnownAs, when set, gives the topic id another source (the cloud)
	// knows a printer by, from its GUID: a printer whose LAN host name
	// differs from the cloud's unique_name is then one printer, not two.
	KnownAs func(guid string) (string, bool)
	// Owns, when set (a group of bridges), tells whether this bridge reads
	// the printer with this GUID: a printer it does not own is asked only
	// for its identity, and what was published of it is released to the
	// member that owns it.
	Owns func(guid string) bool
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, 5*time.Second)
	def(&c.Timeout, 3*time.Second)
	def(&c.BackoffMax, time.Minute)
	def(&c.SystemInterval, 10*time.Minute)
	def(&c.ForgetAfter, 24*time.Hour)
	def(&c.Pair.Timeout, 5*time.Minute)
	if c.Pair.Application == "" {
		c.Pair.Application = "ultimaker2mqtt"
	}
}

// Poller reads each printer on the LAN on its own schedule, so a slow or
// silent printer never delays another, and hands what changed to its
// sink as the cloud poller does. Create it with New, start it with Run.
type Poller struct {
	cfg   Config
	store *Store
	sink  poller.Sink
	log   zerolog.Logger

	applyMu sync.Mutex // one update at a time to the sink

	mu        sync.Mutex
	watches   map[string]*watch // by host
	keys      map[string]*watch // printer and cluster keys → the host that feeds them
	adds      chan string
	polled    int             // watches that finished a first poll
	answering int             // as last sent
	statsAt   time.Time       // when stats were last sent
	printers  map[string]bool // every printer key published
	clusters  map[string]bool // every cluster key published
}

// watch is one printer address and what its goroutine knows of it.
type watch struct {
	host   string
	client *Client
	wake   chan struct{}

	// Owned by the watch's goroutine.
	sys        *System
	sysAt      time.Time
	camera     bool
	group      bool
	view       *state.View
	last       *connect.Printer         // for the offline state
	members    []connect.Printer        // a group's printers as last read, for its offline state
	shown      map[string]state.Printer // every printer the watch published, by key, as last published
	ended      *connect.PrintJob        // the last job seen ending
	misses     int
	authLogged bool
	downLogged bool

	// Under Poller.mu.
	memberClients map[string]*Client // a group's other printers, by address
	found         bool               // added at run time (mDNS), so it may be forgotten
	seen          time.Time          // its latest answer or announcement
	key           string
	camera0       string // the key of the printer whose camera the watch reads, if any
	reached       bool   // answered its latest poll
	gated         bool   // refuses reads
	rejected      bool   // refused the credential (a signed request got 401/403)
}

// New returns a Poller of the printers in cfg.Hosts, with the pairings in
// store.
func New(cfg Config, store *Store, sink poller.Sink, log zerolog.Logger) *Poller {
	cfg.defaults()
	p := &Poller{cfg: cfg, store: store, sink: sink, log: log.With().Str("component", "local").Logger(),
		watches: map[string]*watch{}, keys: map[string]*watch{}, adds: make(chan string, 64),
		printers: map[string]bool{}, clusters: map[string]bool{}}
	for _, h := range cfg.Hosts {
		p.addWatch(h, false)
	}
	return p
}

// addWatch watches host (found: at run time), or for a host already
// watched notes it was seen.
func (p *Poller) addWatch(host string, found bool) (*watch, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.watches[host]; ok {
		w.seen = time.Now()
		return w, false
	}
	w := &watch{host: host, client: NewClient(host, p.cfg.Timeout, nil), wake: make(chan struct{}, 1), found: found,
		seen: time.Now(), memberClients: map[string]*Client{}}
	if c, ok := p.store.Get(host); ok {
		w.client.SetCredential(c)
	}
	p.watches[host] = w
	return w, true
}

// Add watches a printer found at run time (mDNS); known hosts are ignored.
func (p *Poller) Add(host string) {
	select {
	case p.adds <- host:
	default:
		p.log.Warn().Str("host", host).Msg("too many printers found at once; this one is added at its next announcement")
	}
}

// Run polls every printer until ctx ends; it returns once every watch
// has stopped.
func (p *Poller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	p.mu.Lock()
	for _, w := range p.watches {
		wg.Go(func() { p.watch(ctx, w) })
	}
	p.mu.Unlock()
	p.sendStats(ctx, true)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			for _, w := range p.watches {
				w.client.CloseIdleConnections()
			}
			return nil
		case h := <-p.adds:
			if w, added := p.addWatch(h, true); added {
				p.log.Info().Str("host", h).Msg("printer found on the LAN")
				wg.Go(func() { p.watch(ctx, w) })
			}
		}
	}
}

// Refresh polls the printer or group with this key now (after a command).
func (p *Poller) Refresh(key string) {
	p.mu.Lock()
	w := p.keys[key]
	p.mu.Unlock()
	if w != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (p *Poller) watch(ctx context.Context, w *watch) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.wake:
			timer.Stop()
		}
		next := p.poll(ctx, w)
		if ctx.Err() != nil {
			return
		}
		if p.forgotten(ctx, w) {
			return
		}
		if first {
			first = false
			p.mu.Lock()
			p.polled++
			p.mu.Unlock()
			p.sendStats(ctx, true)
		} else {
			p.sendStats(ctx, false)
		}
		timer.Reset(next)
	}
}

// reading is one poll's answers.
type reading struct {
	printer *Printer
	job     *PrintJob
	members []connect.Printer  // a group's printers (host only)
	jobs    []connect.PrintJob // a group's jobs (host only)
	// memberLive are the temperatures of a group's other printers, read
	// from each one's own /api/v1/printer, by unique name.
	memberLive map[string]state.Live
	gated      bool
}

// poll reads the printer once, publishes what changed, and returns the
// wait until the next poll.
func (p *Poller) poll(ctx context.Context, w *watch) time.Duration {
	now := time.Now()
	if w.sys != nil && !p.owns(w) && now.Sub(w.sysAt) < p.cfg.SystemInterval {
		p.release(ctx, w)
		return p.cfg.Interval
	}
	r, err := p.read(ctx, w, now)
	if ctx.Err() != nil {
		return 0
	}
	if w.sys != nil && !p.owns(w) {
		p.release(ctx, w)
		return p.cfg.Interval
	}
	if err != nil {
		w.misses++
		if w.misses == 2 || w.view == nil && w.misses == 1 {
			p.publish(ctx, w, p.offline(w, now))
		}
		if !w.downLogged && w.misses >= 2 {
			w.downLogged = true
			p.log.Warn().Str("host", w.host).Err(err).Msg("printer not answering on the LAN; shown offline, retrying with backoff")
		}
		p.setReached(w, false, false)
		return min(p.cfg.Interval<<min(w.misses-1, 10), p.cfg.BackoffMax)
	}
	// Paired (again) by `ultimaker2mqtt pair` beside the running bridge,
	// or at another address (mDNS after a DHCP change).
	c, ok := p.store.Get(w.host)
	if !ok && w.sys != nil {
		c, ok = p.store.Get(p.keyOf(w))
	}
	if ok && !w.client.Uses(c) {
		w.client.SetCredential(c)
		p.reject(w, false)
	}
	if w.downLogged {
		p.log.Info().Str("host", w.host).Msg("printer answers on the LAN again")
	}
	p.mu.Lock()
	w.seen = now
	p.mu.Unlock()
	w.misses, w.downLogged = 0, false
	refused := r.gated || p.isRejected(w)
	if refused && !w.authLogged {
		w.authLogged = true
		p.log.Warn().Str("host", w.host).Bool("paired", w.client.Paired()).Msg("printer refuses the bridge until it is paired: " +
			"run `ultimaker2mqtt pair " + w.host + "` or publish {\"printer\": \"" + w.host + "\"} to bridge/request/pair")
	} else if !refused {
		w.authLogged = false
	}
	p.setReached(w, true, r.gated)
	p.publish(ctx, w, p.observe(w, r, now))
	return p.cfg.Interval
}

// read asks the printer for its state: /printer every time, /system at
// the start and rarely, /print_job only while a job runs or just ended,
// the group's lists only on a group's host.
func (p *Poller) read(ctx context.Context, w *watch, now time.Time) (reading, error) {
	var r reading
	c := w.client
	if w.sys == nil || now.Sub(w.sysAt) > p.cfg.SystemInterval || w.misses >= 2 {
		sys, err := c.System(ctx)
		p.observeRequest(w, err)
		switch {
		case errors.Is(err, ErrAuth):
			r.gated = true
		case err != nil:
			return r, err
		default:
			w.sys, w.sysAt = sys, now
			cam, err := c.HasCamera(ctx)
			p.observeRequest(w, err)
			w.camera = cam
			members, err := c.ClusterPrinters(ctx)
			p.observeRequest(w, err)
			w.group = err == nil && len(members) > 1
			if c.Paired() {
				// Reads may be open while the credential is revoked: check
				// it as rarely as the identity.
				err := c.VerifyAuth(ctx)
				p.observeRequest(w, err)
				p.reject(w, errors.Is(err, ErrAuth))
			}
		}
	}
	lp, err := c.Printer(ctx)
	p.observeRequest(w, err)
	switch {
	case errors.Is(err, ErrAuth):
		r.gated = true
		return r, nil
	case err != nil:
		return r, err
	}
	r.printer = lp
	if w.group {
		if r.members, err = c.ClusterPrinters(ctx); err == nil {
			r.jobs, err = c.ClusterPrintJobs(ctx)
		}
		p.observeRequest(w, err)
		if errors.Is(err, ErrAuth) {
			r.gated = true
			return r, nil
		}
		if err == nil {
			r.memberLive = p.readMembers(ctx, w, r.members)
		}
		return r, err
	}
	hadJob := w.view != nil && len(w.view.Printers) > 0 && w.view.Printers[0].Job != nil
	if lp.Status != "idle" || hadJob {
		j, err := c.PrintJob(ctx)
		p.observeRequest(w, err)
		switch {
		case errors.Is(err, ErrNoJob):
		case errors.Is(err, ErrAuth):
			r.gated = true
		case err != nil:
			return r, err
		default:
			r.job = j
		}
	}
	return r, nil
}

// readMembers reads the temperatures of a group's other printers, each
// from its own /api/v1/printer at the ip_address the group's host lists,
// all at once (a silent member delays the poll by one timeout at most).
// A member the bridge also watches on its own is left to that watch; one
// that does not answer, or refuses, has no temperatures this time.
func (p *Poller) readMembers(ctx context.Context, w *watch, members []connect.Printer) map[string]state.Live {
	host := p.keyOf(w)
	var mu sync.Mutex
	out := map[string]state.Live{}
	var wg sync.WaitGroup
	for _, m := range members {
		addr, ok := memberAddress(m.IPAddress)
		if !ok || m.UniqueName == "" || m.UniqueName == host || m.UUID != "" && w.sys != nil && m.UUID == w.sys.GUID {
			continue
		}
		p.mu.Lock()
		_, own := p.watches[addr]
		c := w.memberClients[addr]
		if c == nil && !own {
			c = NewClient(addr, p.cfg.Timeout, w.client.transport)
			if cred, ok := p.store.Get(addr); ok {
				c.SetCredential(cred)
			}
			w.memberClients[addr] = c
		}
		p.mu.Unlock()
		if own {
			continue
		}
		wg.Go(func() {
			lp, err := c.Printer(ctx)
			p.observeRequest(w, err)
			if err != nil {
				return
			}
			live := liveOf(lp)
			mu.Lock()
			out[m.UniqueName] = live
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// memberAddress is where a group member's own API is read: its
// ip_address as the group's host lists it, an IP literal (with a port
// only in the simulator); anything else is not read.
func memberAddress(ip string) (string, bool) {
	addr, err := ParseHost(ip)
	if err != nil {
		return "", false
	}
	if net.ParseIP(hostOnly(addr)) == nil {
		return "", false
	}
	return addr, true
}

func (p *Poller) observeRequest(w *watch, err error) {
	if p.cfg.OnRequest == nil {
		return
	}
	class := ""
	switch {
	case err == nil || errors.Is(err, ErrNoJob):
	case errors.Is(err, ErrAuth):
		class = "auth"
	default:
		class = "error"
	}
	p.cfg.OnRequest(w.host, class)
}

// reject marks (or, after a successful signed request, clears) a watch
// whose credential the printer refused.
func (p *Poller) reject(w *watch, rejected bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.rejected = rejected
}

func (p *Poller) isRejected(w *watch) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.rejected
}

func (p *Poller) setReached(w *watch, reached, gated bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.reached, w.gated = reached, gated
}

// keyOf is the printer's key: the cloud's for a printer with the same
// GUID, else its host name as the cloud's unique_name spells it
// (ultimakersystem-…), else the address it was found at.
func (p *Poller) keyOf(w *watch) string {
	if w.sys != nil && w.sys.GUID != "" && p.cfg.KnownAs != nil {
		if k, ok := p.cfg.KnownAs(w.sys.GUID); ok {
			return k
		}
	}
	if w.sys != nil {
		if k := topics.Segment(strings.TrimSuffix(w.sys.Hostname, ".local")); k != "" && !strings.Contains(w.sys.Hostname, ":") &&
			k != "localhost" {
			return k
		}
	}
	if k := topics.Segment(strings.TrimSuffix(hostOnly(w.host), ".local")); k != "" {
		return k
	}
	return "printer"
}

// observe turns one reading into the cloud's shapes, so state.Build
// makes the same model from either source.
func (p *Poller) observe(w *watch, r reading, now time.Time) state.Observation {
	key := p.keyOf(w)
	cp := connect.Printer{UniqueName: key, Enabled: true, IPAddress: hostOnly(w.host), Status: "unknown"}
	if s := w.sys; s != nil {
		cp.UUID, cp.FriendlyName, cp.MachineVariant, cp.FirmwareVersion = s.GUID, s.Name, s.Variant, s.Firmware
	}
	if cp.FriendlyName == "" {
		cp.FriendlyName = key
	}
	live := state.Live{URL: w.client.URL("/")}
	if r.gated || p.isRejected(w) {
		live.LocalAuth = state.LocalAuthRequired
	}
	if w.camera {
		live.Camera = &state.Camera{SnapshotURL: w.client.URL("/api/v1/camera/0/snapshot"),
			StreamURL: w.client.URL("/api/v1/camera/0/stream")}
	}
	if lp := r.printer; lp != nil {
		cp.Status = printerStatus(lp.Status)
		if lp.Bed != nil {
			cp.BuildPlate = &connect.BuildPlate{Type: lp.Bed.Type}
		}
		temps := liveOf(lp)
		live.Hotends, live.BuildPlate = temps.Hotends, temps.BuildPlate
		if len(lp.Heads) > 0 {
			for i, e := range lp.Heads[0].Extruders {
				cfg := connect.PrintCoreConfiguration{ExtruderIndex: float64(i)}
				if h := e.Hotend; h != nil {
					cfg.PrintCoreID = h.ID
				}
				if m := e.ActiveMaterial; m != nil {
					if guid := cmpOr(m.GUID, m.GUIDLegacy); guid != "" {
						cfg.Material = &connect.Material{GUID: guid}
					}
				}
				cp.Configuration = append(cp.Configuration, cfg)
			}
		}
		w.last = &cp
	}
	cluster := connect.Cluster{HostName: key, HostGUID: cp.UUID, FriendlyName: cp.FriendlyName, IsOnline: true,
		PrinterCount: 1, HostVersion: cp.FirmwareVersion, HostInternalIP: cp.IPAddress, HostPrinter: &cp}
	status := &connect.ClusterStatus{Printers: []connect.Printer{cp}, PrintJobs: []connect.PrintJob{}}
	if j := r.job; j != nil {
		pj := connect.PrintJob{UUID: j.UUID, Name: j.Name, Status: j.State, Started: true, Owner: j.SourceUser,
			TimeTotal: j.TimeTotal, TimeElapsed: j.TimeElapsed, PrinterUUID: cp.UUID, PrintedOnUUID: cp.UUID}
		if j.Result != "" {
			done := pj
			done.Status = strings.ToLower(j.Result)
			w.ended = &done
		}
		status.PrintJobs = append(status.PrintJobs, pj)
	}
	if w.ended != nil {
		status.RecentlyCompleted = []connect.PrintJob{*w.ended}
	}
	if w.group && r.members != nil {
		// The group's host lists every member in the cloud's shapes.
		cluster.PrinterCount = float64(len(r.members))
		status.Printers, status.PrintJobs = r.members, r.jobs
		for i := range status.Printers {
			if status.Printers[i].UniqueName == key || status.Printers[i].UUID == cp.UUID && cp.UUID != "" {
				status.Printers[i].UniqueName = key
			}
		}
		w.members = slices.Clone(status.Printers)
	}
	lives := map[string]state.Live{key: live}
	for name, l := range r.memberLive {
		lives[name] = l
	}
	return state.Observation{Cluster: cluster, Status: status, Now: now, Source: state.SourceLocal, Live: lives}
}

// liveOf is the temperatures a printer's /api/v1/printer reports: each
// hotend's and the bed's.
func liveOf(lp *Printer) state.Live {
	var l state.Live
	if lp.Bed != nil && lp.Bed.Temperature != nil {
		l.BuildPlate = &state.Temperature{Current: lp.Bed.Temperature.Current, Target: lp.Bed.Temperature.Target}
	}
	if len(lp.Heads) > 0 {
		for _, e := range lp.Heads[0].Extruders {
			var t state.Temperature
			// An empty slot (no print core) reports 0 °C: no temperature.
			if h := e.Hotend; h != nil && h.ID != "" && h.Temperature != nil {
				t = state.Temperature{Current: h.Temperature.Current, Target: h.Temperature.Target}
			}
			l.Hotends = append(l.Hotends, t)
		}
	}
	return l
}

// offline is the observation of a printer that stopped answering.
func (p *Poller) offline(w *watch, now time.Time) state.Observation {
	key := p.keyOf(w)
	cp := connect.Printer{UniqueName: key, FriendlyName: key, IPAddress: hostOnly(w.host), Enabled: true}
	if w.last != nil {
		cp = *w.last
	}
	cluster := connect.Cluster{HostName: key, FriendlyName: cp.FriendlyName, PrinterCount: 1, HostPrinter: &cp}
	if w.view != nil {
		cluster.FriendlyName = w.view.Cluster.FriendlyName
	}
	obs := state.Observation{Cluster: cluster, Now: now, Source: state.SourceLocal}
	if w.group && len(w.members) > 1 {
		// A group's host that went silent takes its members along: all
		// offline, none frozen at its last reading.
		cluster.PrinterCount = float64(len(w.members))
		online := false
		obs.Status = &connect.ClusterStatus{IsOnline: &online, Printers: w.members, PrintJobs: []connect.PrintJob{}}
	}
	return obs
}

func (p *Poller) publish(ctx context.Context, w *watch, obs state.Observation) {
	view := state.Build(obs, w.view)
	u := poller.Diff(w.view, view)
	if old := w.view; old != nil && old.Cluster.ID != view.Cluster.ID {
		// Known by its address until it first answered (asleep at start):
		// the placeholder gives way to the printer's own key.
		u.RemovedClusters = append(u.RemovedClusters, old.Cluster)
		for _, op := range old.Printers {
			if !slices.ContainsFunc(view.Printers, func(np state.Printer) bool { return np.ID == op.ID }) {
				u.RemovedPrinters = append(u.RemovedPrinters, op)
			}
		}
		u.Cluster = &view.Cluster
		u.Printers = view.Printers
	}
	w.view = &view
	if w.shown == nil {
		w.shown = map[string]state.Printer{}
	}
	for _, pr := range view.Printers {
		w.shown[pr.ID] = pr.Compact()
	}
	for _, pr := range u.RemovedPrinters {
		delete(w.shown, pr.ID)
	}
	p.mu.Lock()
	w.key, w.camera0 = view.Cluster.ID, ""
	for _, pr := range view.Printers {
		if pr.Camera != nil {
			w.camera0 = pr.ID
		}
	}
	p.keys[view.Cluster.ID] = w
	p.clusters[view.Cluster.ID] = true
	for _, pr := range view.Printers {
		p.keys[pr.ID] = w
		p.printers[pr.ID] = true
	}
	for _, c := range u.RemovedClusters {
		delete(p.clusters, c.ID)
	}
	for _, pr := range u.RemovedPrinters {
		delete(p.printers, pr.ID)
	}
	p.mu.Unlock()
	if u.Cluster != nil || len(u.Printers) > 0 || len(u.Events) > 0 || len(u.RemovedPrinters) > 0 {
		p.applyMu.Lock()
		p.sink.Apply(ctx, u)
		p.applyMu.Unlock()
	}
}

// owns reports whether this bridge reads w's printer (always, alone).
func (p *Poller) owns(w *watch) bool {
	return p.cfg.Owns == nil || p.cfg.Owns(w.sys.GUID)
}

// Reshare polls every printer now: what this member owns in its group
// changed.
func (p *Poller) Reshare() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.watches {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// release hands what w published over to the group member that owns its
// printer now: the renderer keeps showing it from that member's topics.
func (p *Poller) release(ctx context.Context, w *watch) {
	if w.view == nil {
		return
	}
	u := poller.Update{ReleasedClusters: []state.Cluster{w.view.Cluster}}
	p.mu.Lock()
	for k, kw := range p.keys {
		if kw == w {
			delete(p.keys, k)
		}
	}
	delete(p.clusters, w.view.Cluster.ID)
	for id, pr := range w.shown {
		u.Released = append(u.Released, pr)
		delete(p.printers, id)
	}
	p.mu.Unlock()
	w.view, w.shown, w.misses = nil, nil, 0
	p.log.Info().Str("host", w.host).Msg("printer belongs to another member of the group now: released")
	p.applyMu.Lock()
	p.sink.Apply(ctx, u)
	p.applyMu.Unlock()
}

// forgotten removes w when it was found at run time and has been silent
// and unannounced for ForgetAfter: its printers and cluster leave, as a
// printer that left the account does (topics and device cleared).
func (p *Poller) forgotten(ctx context.Context, w *watch) bool {
	p.mu.Lock()
	if !w.found || time.Since(w.seen) < p.cfg.ForgetAfter {
		p.mu.Unlock()
		return false
	}
	delete(p.watches, w.host)
	for k, kw := range p.keys {
		if kw == w {
			delete(p.keys, k)
		}
	}
	var u poller.Update
	if v := w.view; v != nil {
		u.RemovedClusters = []state.Cluster{v.Cluster}
		delete(p.clusters, v.Cluster.ID)
	}
	for id, pr := range w.shown {
		u.RemovedPrinters = append(u.RemovedPrinters, pr)
		delete(p.printers, id)
	}
	p.polled--
	p.mu.Unlock()
	p.log.Info().Str("host", w.host).Dur("unseen", p.cfg.ForgetAfter).Msg("printer found on the LAN neither answers nor is " +
		"announced any more: forgotten")
	w.client.CloseIdleConnections()
	if len(u.RemovedPrinters) > 0 || len(u.RemovedClusters) > 0 {
		p.applyMu.Lock()
		p.sink.Apply(ctx, u)
		p.applyMu.Unlock()
	}
	p.sendStats(ctx, true)
	return true
}

// statsEvery is how often the LAN's stats (and so last_poll) are sent
// when nothing else changes them.
const statsEvery = time.Minute

// sendStats sends the LAN's stats; force false sends them only when the
// number of answering printers changed or a minute has passed.
func (p *Poller) sendStats(ctx context.Context, force bool) {
	now := time.Now()
	p.mu.Lock()
	answering := 0
	for _, w := range p.watches {
		if w.reached {
			answering++
		}
	}
	if !force && answering == p.answering && now.Sub(p.statsAt) < statsEvery {
		p.mu.Unlock()
		return
	}
	p.answering, p.statsAt = answering, now
	st := poller.Stats{Ready: p.polled >= len(p.watches), LocalPrinters: len(p.watches), LocalAnswering: answering,
		Printers: len(p.printers), Clusters: len(p.clusters)}
	if answering > 0 {
		at := now.UTC().Truncate(time.Second)
		st.LastPoll = &at
	}
	p.mu.Unlock()
	p.applyMu.Lock()
	p.sink.Apply(ctx, poller.Update{Stats: &st})
	p.applyMu.Unlock()
}

// printerStatus maps the LAN's printer status to the cloud's words.
func printerStatus(s string) string {
	switch s {
	case "waiting_for_peripherals":
		return "booting"
	case "":
		return "unknown"
	}
	return s
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Lookup finds the watch of a printer or group by key or address.
func (p *Poller) lookup(printer string) (*watch, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.keys[printer]; ok {
		return w, true
	}
	w, ok := p.watches[printer]
	return w, ok
}

// Reach reports whether the printer (or group) with key id is read on the
// LAN, and whether the bridge is paired with it.
func (p *Poller) Reach(id string) (onLAN, paired bool) {
	w, ok := p.lookup(id)
	if !ok {
		return false, false
	}
	p.mu.Lock()
	reached := w.reached
	p.mu.Unlock()
	return reached, w.client.Paired()
}

// Picture takes a picture with the camera of the printer with key id, when
// the bridge reads that printer on the LAN and it has one (a group's
// host lists its members, but its camera is its own).
func (p *Poller) Picture(ctx context.Context, id string) ([]byte, error) {
	w, ok := p.lookup(id)
	if !ok {
		return nil, fmt.Errorf("printer %s is not on the LAN", id)
	}
	p.mu.Lock()
	has := w.camera0 == id
	p.mu.Unlock()
	if !has {
		return nil, fmt.Errorf("printer %s has no camera the bridge reads", id)
	}
	return w.client.Snapshot(ctx)
}

// JobState sends pause, print (resume) or abort to a paired printer.
func (p *Poller) JobState(ctx context.Context, id, target string) error {
	w, ok := p.lookup(id)
	if !ok {
		return fmt.Errorf("printer %s is not on the LAN", id)
	}
	err := w.client.SetJobState(ctx, target)
	p.signed(w, id, err)
	return err
}

// signed notes the outcome of a signed request: a refused credential
// shows as local_auth required until the bridge is paired again.
func (p *Poller) signed(w *watch, id string, err error) {
	if err == nil || errors.Is(err, ErrAuth) {
		p.reject(w, err != nil)
		p.Refresh(id)
	}
}

// QueueAction sends move_to_top, remove or force to a group's host.
func (p *Poller) QueueAction(ctx context.Context, id, jobUUID, action string) error {
	w, ok := p.lookup(id)
	if !ok {
		return fmt.Errorf("cluster %s is not on the LAN", id)
	}
	err := w.client.ClusterJobAction(ctx, jobUUID, action)
	p.signed(w, id, err)
	return err
}

// Pair pairs the bridge with a printer it reads (by key or address) and
// keeps the credential. Other addresses are refused: whoever may publish
// commands must not make the bridge send requests to any host
// (`ultimaker2mqtt pair HOST` is the terminal's way for a new one).
func (p *Poller) Pair(ctx context.Context, printer string, pending func()) error {
	w, ok := p.lookup(printer)
	if !ok {
		return fmt.Errorf("%w: %q (add it to LOCAL_PRINTERS, or use its topic id)", ErrNotWatched, printer)
	}
	cred, err := Pair(ctx, w.client, p.cfg.Pair, pending)
	if err != nil {
		return err
	}
	p.mu.Lock()
	key := w.key
	p.mu.Unlock()
	for _, k := range []string{w.host, key} {
		if k == "" {
			continue
		}
		if err := p.store.Put(k, cred); err != nil {
			return err
		}
	}
	w.client.SetCredential(cred)
	p.reject(w, false)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}
