// Package bridge is the whole bridge as one value: built once from the configuration, run until its context ends, stopped in a fixed order.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/activity"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/auth"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/camera"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/group"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/merge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/monitor"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/reports"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/web"
)

// configsPerSecond paces Home Assistant device configs: a farm's first
// poll hands the broker and HA 250 a second (about 5 MB/s) instead of
// thousands at once.
const configsPerSecond = 250

// Options are what the configuration does not say.
type Options struct {
	Version string
	Log     zerolog.Logger
	// Wrap, when set, wraps the renderer as the poller's sink: the demo
	// prints each printer change through it.
	Wrap func(poller.Sink) poller.Sink
	// OnStop, when set, is told the name of each part as it has stopped,
	// in order (tests check the shutdown order).
	OnStop func(part string)
}

// Bridge is every part of a running bridge, wired once.
type Bridge struct {
	cfg     *config.Config
	opts    Options
	log     zerolog.Logger
	started time.Time
	tree    topics.Tree

	mq       *mqttpub.Client
	api      *connect.Client
	signIn   *auth.Source // nil with an API token
	render   *render.Renderer
	poll     *poller.Poller // nil without a cloud account
	lan      *local.Poller  // nil without LAN printers
	mdns     *local.Discovery
	cmd      *commands.Handler
	camera   *camera.Watcher
	feed     *activity.Feed
	web      *web.Server       // nil: no page (WEB_UI=false, or no HTTP_LISTEN)
	disc     *discovery.Config // nil: Home Assistant discovery off
	metrics  *monitor.Metrics  // nil without HTTP_LISTEN
	mon      *monitor.Server
	monLn    net.Listener
	auth     chan string // sign-in state changes
	sweeping sync.WaitGroup
	group    *group.Group  // nil alone (INSTANCE_GROUP empty)
	reshared chan struct{} // what this member owns may have changed

	membersMu   sync.Mutex
	membersSeen []string // the group's members seen this run
}

// New builds the bridge from cfg: every client, the renderer, poller and
// command handler, and the HTTP endpoint's listener. It connects nothing;
// a bad setting found here is a *config.Error.
func New(cfg *config.Config, opts Options) (*Bridge, error) {
	b := &Bridge{cfg: cfg, opts: opts, log: opts.Log, started: time.Now().UTC().Truncate(time.Second),
		tree: topics.Tree{Base: cfg.MQTTBaseTopic}, auth: make(chan string, 4), reshared: make(chan struct{}, 1)}
	if cfg.HTTPListen != "" {
		b.metrics = monitor.NewMetrics(monitor.Sources{
			Published: func() float64 { return float64(b.mq.Published()) },
			Refreshes: func() float64 {
				if b.signIn == nil {
					return 0
				}
				return float64(b.signIn.Refreshes())
			},
			Clusters: func() float64 { return float64(b.render.Stats().Clusters) },
			Printers: func() float64 { return float64(b.render.Stats().Printers) },
			LastPoll: func() float64 {
				if lp := b.render.Stats().LastPoll; lp != nil {
					return float64(lp.Unix())
				}
				return 0
			},
			MQTTConnected: func() float64 {
				if b.mq.Connected() {
					return 1
				}
				return 0
			},
			EventsHeld: func() float64 {
				n, _ := b.mq.Held()
				return float64(n)
			},
			EventsDropped: func() float64 { return float64(b.mq.Dropped()) },
		})
	}
	var ts oauth2.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{}) // LAN only: the cloud is never called
	var signIn *auth.Source
	if cfg.UsesCloud() {
		ts, signIn = TokenSource(cfg, b.log, func(s string) {
			select {
			case b.auth <- s:
			default:
			}
		})
	}
	b.signIn = signIn
	var err error
	if b.api, err = API(cfg, ts, b.log, opts.Version, b.metrics); err != nil {
		return nil, err
	}
	mqcfg := MQTTConfig(cfg, "")
	if cfg.Grouped() {
		mqcfg.OfflineOnStop = func() bool { return b.group.LastOut() }
		mqcfg.InboxSize = groupInbox
	}
	if b.mq, err = mqttpub.New(mqcfg, b.log); err != nil {
		return nil, config.Errorf("MQTT_URL: %v", err)
	}
	// The events of the first poll are derived against the states the
	// broker held from the last run (or another member's): read first.
	ropts := render.Options{BirthDelay: cfg.HABirthDelay, OnReady: b.sweepLater, ConfigsPerSecond: configsPerSecond,
		Leaves: cfg.MQTTOutput == config.OutputAttributes, Recall: true}
	var lanOwns func(string) bool
	if cfg.Grouped() {
		b.group = group.New(group.Config{Tree: b.tree, Name: cfg.InstanceGroup, ID: cfg.Instance(), Version: opts.Version,
			KeepAlive: cfg.MQTTKeepAlive}, b.mq, b.log)
		ropts.Leads, ropts.Group, ropts.Members = b.group.Leads, b.groupInfo, b.members
		lanOwns = b.ownsLAN
	}
	if cfg.HADiscovery {
		b.disc = Discovery(cfg, opts.Version)
	}
	b.render = render.New(b.tree, b.mq, render.Info{
		Version: opts.Version, StartedAt: b.started, APIURL: cfg.APIURL, Auth: authState(cfg, signIn), ReadOnly: cfg.ReadOnly,
		Intervals: map[string]string{
			"status": cfg.PollInterval.String(), "idle": cfg.PollIdleInterval.String(),
			"offline": cfg.PollOfflineInterval.String(), "clusters": cfg.PollClustersInterval.String(),
			"maintenance": cfg.PollMaintenanceInterval.String(), "reports": cfg.PollReportsInterval.String(),
		},
	}, b.disc, ropts, b.log)
	// The renderer renews states and device configs on a reconnect: the
	// client keeps their sums, not the payloads.
	b.mq.SetSource(b.render.Retained)
	b.mq.Recall([]string{b.tree.PrinterStates()}, b.render.Recalled)
	// The activity feed lives on the broker: a restart reads it back, and
	// the members of a group share theirs (the leader keeps the copy).
	fcfg := activity.Config{Tree: b.tree}
	if b.group != nil {
		fcfg.Instance, fcfg.Share, fcfg.Keeps = cfg.Instance(), true, b.group.Leads
	}
	b.feed = activity.New(fcfg, b.mq, b.log)
	b.mq.Recall([]string{b.tree.BridgeActivity()}, b.feed.Recalled)
	b.render.Watch(func(u poller.Update) { b.feed.Events(u.Events) })
	var sink poller.Sink = b.render
	if opts.Wrap != nil {
		sink = opts.Wrap(b.render)
	}
	// Two sources need the merger (one state per printer); one source
	// feeds the renderer directly, at no cost per update.
	cloudSink, lanSink := sink, sink
	var knownAs func(string) (string, bool)
	if cfg.UsesCloud() && cfg.UsesLAN() {
		merger := merge.New(sink)
		cloudSink, lanSink, knownAs = merger.Cloud(), merger.Local(), merger.CloudKey
	}
	if cfg.UsesLAN() {
		if b.lan, err = LAN(cfg, lanSink, knownAs, lanOwns, b.log, b.metrics); err != nil {
			return nil, err
		}
		if cfg.LocalDiscovery {
			b.mdns = local.NewDiscovery(b.lan.Add, b.log)
		}
	}
	if cfg.UsesCloud() {
		pcfg := poller.Config{
			Interval: cfg.PollInterval, IdleInterval: cfg.PollIdleInterval, OfflineInterval: cfg.PollOfflineInterval,
			ClustersInterval: cfg.PollClustersInterval, MaintenanceInterval: cfg.PollMaintenanceInterval,
			ReportsInterval: cfg.PollReportsInterval,
			BackoffMax:      cfg.PollBackoffMax, MaxInFlight: cfg.PollMaxInFlight, ClusterIDs: cfg.ClusterIDs,
			Hold:   func() bool { return signIn != nil && signIn.State() == auth.StateAuthRequired },
			OnPoll: b.metrics.ObservePoll,
		}
		if g := b.group; g != nil {
			pcfg.Owns, pcfg.Leads, pcfg.OnList, pcfg.FarmPrinters = g.Owns, g.Leads, b.publishClusterList, b.render.Printers
		}
		b.poll = poller.New(pcfg, b.api, cloudSink, b.log)
	}
	ccfg := commands.Config{Tree: b.tree, ReadOnly: cfg.ReadOnly, AllowedActions: cfg.AllowedActions,
		Timeout: cfg.CommandTimeout, PollEvery: cfg.CommandPoll, Prober: b.mq, Manager: b.api, MaterialsDir: cfg.MaterialsDir,
		OnAnswer: b.metrics.ObserveCommand, NoCloud: !cfg.UsesCloud(), Pictures: b.render, OnAnswered: b.feed.Answered}
	if b.group != nil {
		ccfg.Group, ccfg.Acked = b.group, b.mq
	}
	if b.lan != nil {
		ccfg.LAN = b.lan
	}
	b.cmd = commands.New(ccfg, b.api, b.render, b.mq, refresher{b.poll, b.lan}, b.log)
	b.render.WatchFarm(func(poller.Update) { b.cmd.StateChanged() })
	b.camera = camera.New(b.cmd, cfg.CameraInterval, b.log)
	b.render.Watch(b.camera.Observe)
	for _, f := range b.cmd.Filters() {
		b.mq.Subscribe(mqttpub.Subscription{Filter: f, Handle: b.cmd.Handle, Busy: b.cmd.Busy, MaxPayload: b.cmd.MaxPayloadFor})
	}
	if b.group != nil {
		b.subscribeGroup()
	}
	if b.disc != nil {
		b.mq.Subscribe(mqttpub.Subscription{Filter: cfg.HAStatusTopic, QoS: 1,
			Handle: func(ctx context.Context, m bus.Inbound) { b.render.HAStatus(ctx, m.Payload) }})
	}
	if cfg.HTTPListen != "" && cfg.WebUI {
		var images web.Images
		if cfg.UsesCloud() {
			images = b.api
		}
		b.web = web.New(web.Config{Tree: b.tree, Token: cfg.WebToken.Reveal(), CommandTimeout: cfg.CommandTimeout,
			Health: func() any { return b.health() }, Feed: b.feed, TrustedProxies: cfg.TrustedProxies(),
			Reports: b.jobLog()}, b.render, b.cmd, images, b.log)
		b.render.WatchFarm(b.web.Observe)
		b.feed.Watch(b.web.Activity)
		b.render.WatchPictures(b.web.Pictured)
	}
	if cfg.HTTPListen != "" {
		b.mon = monitor.New(cfg.HTTPListen, b.metrics, b.health, monitor.Options{Hosts: PageHosts(cfg)}, b.log)
		if b.web != nil {
			b.mon.Page(b.web.Handler())
		}
		if b.monLn, err = b.mon.Listen(); err != nil {
			return nil, config.Errorf("HTTP_LISTEN %s: %v", cfg.HTTPListen, err)
		}
	}
	return b, nil
}

// Run runs the bridge until ctx ends, then stops it in this order: the
// poller (no new state), the helpers (HTTP endpoint, sign-in, pictures), the stale
// sweep, the commands under way, and last the broker connection, so
// "offline" is the last thing published. It returns nil after a clean stop.
func (b *Bridge) Run(ctx context.Context) error {
	api := b.cfg.APIURL
	if !b.cfg.UsesCloud() {
		api = "none (LAN only)"
	}
	b.log.Info().Str("version", b.opts.Version).Str("broker", mqttpub.RedactURL(b.cfg.MQTTURL)).Str("api", api).
		Int("lan_printers", len(b.cfg.LocalPrinters)).Bool("lan_discovery", b.cfg.LocalDiscovery).
		Str("base_topic", b.cfg.MQTTBaseTopic).Msg("starting")
	// The broker connection outlives everything else.
	mqCtx, stopMQ := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMQ()
	mqDone := make(chan error, 1)
	go func() { mqDone <- b.mq.Run(mqCtx) }()

	// A duplicate INSTANCE_ID in the group ends the bridge with its error.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	b.render.Start(ctx)
	var helpers sync.WaitGroup
	if b.group != nil {
		helpers.Go(func() { b.runGroup(ctx, fail) })
	}
	helpers.Go(func() { b.render.Run(ctx) })
	helpers.Go(func() { b.camera.Run(ctx) })
	helpers.Go(func() { b.feed.Run(ctx) })
	if b.mon != nil {
		helpers.Go(func() {
			if err := b.mon.Serve(ctx, b.monLn); err != nil {
				b.log.Error().Err(err).Msg("http endpoint stopped")
			}
		})
	} else if b.monLn != nil {
		b.monLn.Close()
	}
	if b.signIn != nil {
		helpers.Go(func() { b.signIn.Run(ctx, b.cfg.AuthRecheck) })
		helpers.Go(func() { b.relayAuth(ctx) })
	}

	pollErr := b.runPollers(ctx)
	b.stopped("poller")
	helpers.Wait()
	b.stopped("helpers")
	b.sweeping.Wait()
	b.stopped("sweep")
	b.cmd.Wait()
	b.stopped("commands")
	stopMQ()
	mqErr := <-mqDone
	b.stopped("mqtt")
	b.log.Info().Msg("stopped")
	if err := context.Cause(ctx); errors.Is(err, group.ErrDuplicate) {
		return err
	}
	if pollErr != nil {
		return pollErr
	}
	return mqErr
}

// runPollers runs the cloud poller, the LAN poller and mDNS discovery,
// those in use, until ctx ends.
func (b *Bridge) runPollers(ctx context.Context) error {
	var wg sync.WaitGroup
	var cloudErr error
	if b.poll != nil {
		wg.Go(func() { cloudErr = b.poll.Run(ctx) })
	}
	if b.lan != nil {
		wg.Go(func() { b.lan.Run(ctx) })
	}
	if b.mdns != nil {
		wg.Go(func() { b.mdns.Run(ctx) })
	}
	wg.Wait()
	return cloudErr
}

func (b *Bridge) stopped(part string) {
	if b.opts.OnStop != nil {
		b.opts.OnStop(part)
	}
}

// relayAuth shows sign-in changes in bridge/info and Home Assistant at
// once; a new sign-in polls everything now.
func (b *Bridge) relayAuth(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-b.auth:
			b.render.SetAuth(ctx, s)
			if s == auth.StateOK && b.poll != nil {
				b.poll.Refresh("")
			}
		}
	}
}

// sweepLater clears, in the background, what an earlier run left for
// printers and clusters that are gone; the renderer calls it once every
// cluster has been polled.
func (b *Bridge) sweepLater(ctx context.Context) {
	b.sayWhatIsServed()
	b.sweeping.Go(func() { b.sweepStale(ctx) })
}

// sayWhatIsServed logs, once every source has had its first round, what
// the bridge found and where to look: the line a person starting it
// waits for.
func (b *Bridge) sayWhatIsServed() {
	cloud, lan := 0, 0
	printers := b.render.Printers()
	for _, p := range printers {
		switch p.Source {
		case state.SourceCloud:
			cloud++
		case state.SourceLocal:
			lan++
		case state.SourceBoth:
			cloud++
			lan++
		}
	}
	ev := b.log.Info().Int("clusters", len(b.render.Clusters())).Int("printers", len(printers)).Int("from_cloud", cloud).
		Int("on_lan", lan)
	page := "no page (HTTP_LISTEN is off)"
	if b.web != nil {
		page = "the farm page is on " + monitor.PageURL(b.monLn.Addr().String())
		ev = ev.Str("page", monitor.PageURL(b.monLn.Addr().String()))
	}
	ev.Msg(fmt.Sprintf("bridging %d printers in %d clusters (%d from the cloud, %d on the LAN); %s", len(printers),
		len(b.render.Clusters()), cloud, lan, page))
}

// sweepStale clears retained topics this bridge published in an earlier
// run for printers and clusters that no longer exist: their state,
// availability and discovery configs.
func (b *Bridge) sweepStale(ctx context.Context) {
	if b.group != nil {
		// The leader sweeps for the group, once the others' states have
		// had time to arrive; only a printer or cluster no member shows
		// loses its topics (the configs and leaves of the others are not
		// in this member's memory: `cleanup` takes those).
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.cfg.MQTTKeepAlive):
		}
		if !b.group.Leads() {
			return
		}
	}
	filters := b.tree.DeviceFilters()
	if b.disc != nil {
		filters = append(filters, b.disc.DeviceFilter())
	}
	found, err := b.mq.Retained(ctx, filters, 2*time.Second)
	if err != nil {
		b.log.Debug().Err(err).Msg("stale topic sweep skipped")
		return
	}
	var stale []string
	for t := range found {
		if b.group == nil && b.disc != nil && b.disc.Ours(t) {
			stale = append(stale, t) // cleared unless published this run
			continue
		}
		// The retained topics of printers and clusters that are gone; a
		// live printer keeps its snapshot and preview.
		a, ok := b.tree.Parse(t)
		if ok && a.Leaf != "" && b.group == nil {
			stale = append(stale, t) // cleared unless published this run
			continue
		}
		if !ok || !topics.IsRetained(a) {
			continue
		}
		_, printer := b.render.Printer(a.ID)
		_, cluster := b.render.Cluster(a.ID)
		if (a.Kind == topics.Printer && !printer) || (a.Kind == topics.Cluster && !cluster) {
			stale = append(stale, t)
		}
	}
	n, err := b.mq.ClearUnknown(ctx, stale)
	if err != nil && ctx.Err() == nil {
		b.log.Warn().Err(err).Msg("clearing stale topics incomplete")
	}
	if n > 0 {
		b.log.Info().Int("topics", n).Msg("cleared retained topics of printers and clusters that are gone")
	}
}

// health is what /healthz reports: the broker is connected, a poll
// succeeded recently (or the bridge is still starting), and the bridge is
// signed in.
func (b *Bridge) health() monitor.Health {
	broker := monitor.Check{Name: "broker", OK: b.mq.Connected(), Detail: "connected"}
	if !broker.OK {
		broker.Detail = "not connected to " + mqttpub.RedactURL(b.cfg.MQTTURL)
	}
	// The slowest regular poll is an idle or offline cluster's; allow
	// three of those.
	window := 3 * max(b.cfg.PollIdleInterval, b.cfg.PollOfflineInterval, b.cfg.PollClustersInterval)
	poll := monitor.Check{Name: "poll"}
	switch lp := b.render.Stats().LastPoll; {
	case b.group != nil && b.group.Joined() && !b.group.Leads() && b.render.Stats().Clusters == 0:
		poll.OK, poll.Detail = true, "standby: this member of the group owns no cluster now"
	case lp != nil && time.Since(*lp) < window:
		poll.OK, poll.Detail = true, "last successful poll "+lp.Format(time.RFC3339)
	case lp != nil:
		poll.Detail = "no successful poll since " + lp.Format(time.RFC3339)
	case time.Since(b.started) < window:
		poll.OK, poll.Detail = true, "starting"
	default:
		poll.Detail = "no successful poll since the start at " + b.started.Format(time.RFC3339)
	}
	signedIn := monitor.Check{Name: "sign_in", OK: true, Detail: authState(b.cfg, nil)}
	if b.signIn != nil {
		signedIn.Detail = b.signIn.State()
		signedIn.OK = signedIn.Detail != auth.StateAuthRequired
	}
	checks := []monitor.Check{broker, poll, signedIn}
	if g := b.group; g != nil {
		// A member that has not joined owns nothing: the others poll its
		// share meanwhile, so it is not unhealthy for that.
		checks = append(checks, monitor.Check{Name: "group", OK: true, Detail: fmt.Sprintf(
			"member %s of %s: joined %t, leader %s, %d live", g.ID(), g.Name(), g.Joined(), g.Owner(group.AccountKey),
			len(g.Live()))})
	}
	return monitor.Evaluate(checks...)
}

// jobLog is the job log and utilisation over the sources in use, with
// the waits to clear the bridge sees from now.
func (b *Bridge) jobLog() *reports.Log {
	var cloud reports.Cloud
	if b.cfg.UsesCloud() {
		cloud = b.api
	}
	var lan reports.LAN
	if b.lan != nil {
		lan = b.lan
	}
	clears := reports.NewClears()
	b.render.Watch(clears.Observe)
	return reports.New(reports.Config{}, cloud, lan, b.render, clears)
}

// PageHosts are the Host names the HTTP endpoint answers to besides IP
// addresses and localhost: WEB_ALLOWED_HOSTS, this machine's name (and
// its mDNS name, <name>.local) and HTTP_LISTEN's host when it is a name.
func PageHosts(cfg *config.Config) monitor.Hosts {
	names := slices.Clone(cfg.WebAllowedHosts)
	if h, err := os.Hostname(); err == nil && h != "" {
		short, _, _ := strings.Cut(h, ".")
		names = append(names, h, short, short+".local")
	}
	if host, _, err := net.SplitHostPort(cfg.HTTPListen); err == nil && host != "" {
		names = append(names, host)
	}
	return monitor.NewHosts(names...)
}

// MQTTConfig is the broker connection of cfg. role is "" for the bridge
// itself (with its state topic, last will and probe) and names any other
// client ("check", "cleanup"), which must not announce itself as the
// bridge.
func MQTTConfig(cfg *config.Config, role string) mqttpub.Config {
	c := mqttpub.Config{URL: cfg.MQTTURL, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword.Reveal(),
		ClientID: cfg.BrokerClientID(), CAFile: cfg.MQTTCAFile, CertFile: cfg.MQTTCertFile, KeyFile: cfg.MQTTKeyFile,
		KeepAlive: cfg.MQTTKeepAlive}
	if role != "" {
		c.ClientID += "-" + role
		c.ConnectTimeout = 5 * time.Second
		return c
	}
	tree := topics.Tree{Base: cfg.MQTTBaseTopic}
	c.StateTopic, c.ProbeTopic = tree.BridgeState(), tree.BridgeProbe(c.ClientID)
	if cfg.Grouped() {
		// A member's will clears its announcement; the bridge's "offline"
		// is the last member's (group.Group.Alone, HoldWill).
		c.WillTopic = tree.BridgeMember(cfg.Instance())
	}
	return c
}

// Connect runs mq until ctx ends and waits, up to within, for its first
// connection. The returned stop ends it and waits; call it in any case.
func Connect(ctx context.Context, mq *mqttpub.Client, within time.Duration) (stop func(), err error) {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mq.Run(runCtx) }()
	stop = func() { cancel(); <-done }
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !mq.Connected() {
		select {
		case <-ctx.Done():
			return stop, ctx.Err()
		case <-deadline.C:
			why := fmt.Sprintf("no connection within %s", within)
			if err := mq.LastConnectError(); err != nil {
				why = mqttpub.RedactURL(err.Error())
			}
			return stop, fmt.Errorf("broker %s: not reachable: %s (check MQTT_URL, credentials and TLS settings)",
				mqttpub.RedactURL(mq.URL()), why)
		case <-tick.C:
		}
	}
	return stop, nil
}

// TokenSource is how the bridge signs in: the API token, or the OAuth2
// token file kept fresh by an *auth.Source (returned too; nil with an API
// token). onState hears of sign-in changes.
func TokenSource(cfg *config.Config, log zerolog.Logger, onState func(string)) (oauth2.TokenSource, *auth.Source) {
	if cfg.APIToken != "" {
		return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: cfg.APIToken.Reveal(), TokenType: "Bearer"}), nil
	}
	src := auth.NewSource(auth.Config{OAuth: OAuth(cfg), TokenFile: cfg.TokenFile, OnState: onState}, log)
	return src, src
}

// OAuth is the OAuth2 client of cfg, for login and the token file.
func OAuth(cfg *config.Config) *oauth2.Config {
	return &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret.Reveal(),
		Endpoint: auth.Endpoint(cfg.AccountURL), Scopes: strings.Fields(cfg.Scopes),
		RedirectURL: fmt.Sprintf("http://localhost:%d/callback", cfg.LoginPort)}
}

// Login is the sign-in of cfg for the login command; a pasted redirect
// address is read from in.
func Login(cfg *config.Config, in io.Reader) auth.LoginConfig {
	return auth.LoginConfig{OAuth: OAuth(cfg), PKCEMethod: cfg.LoginPKCE, WorkspaceID: cfg.WorkspaceID, Port: cfg.LoginPort,
		TokenFile: cfg.TokenFile, AccountURL: cfg.AccountURL, Input: in}
}

// API is the Connect client of cfg; metrics may be nil.
func API(cfg *config.Config, ts oauth2.TokenSource, log zerolog.Logger, version string, metrics *monitor.Metrics) (*connect.Client, error) {
	c, err := connect.New(connect.Options{BaseURL: cfg.APIURL, TokenSource: ts, Timeout: cfg.APITimeout,
		UserAgent: "ultimaker2mqtt/" + version, Observe: metrics.ObserveAPI, Log: log})
	if err != nil {
		return nil, config.Errorf("ULTIMAKER_API_URL: %v", err)
	}
	return c, nil
}

// Discovery is the Home Assistant discovery of cfg, offering only the
// buttons that can work: none when read-only.
func Discovery(cfg *config.Config, version string) *discovery.Config {
	d := &discovery.Config{Prefix: cfg.HADiscoveryPrefix, Tree: topics.Tree{Base: cfg.MQTTBaseTopic}, Version: version,
		DeviceTriggers: cfg.HADeviceTriggers}
	allowed := func(a string) bool {
		return !cfg.ReadOnly && (len(cfg.AllowedActions) == 0 || slices.Contains(cfg.AllowedActions, a))
	}
	for _, a := range []string{"pause", "resume", "abort", "snapshot"} {
		if allowed(a) {
			d.Buttons = append(d.Buttons, a)
		}
	}
	for _, a := range []string{"settings", "note"} {
		if allowed(a) {
			d.Controls = append(d.Controls, a)
		}
	}
	return d
}

// LAN is the LAN poller of cfg, with its pairings read from
// LOCAL_AUTH_FILE; knownAs (may be nil) gives the cloud's id of a printer
// by its GUID; metrics (may be nil) count its requests as polls of target
// "lan".
func LAN(cfg *config.Config, sink poller.Sink, knownAs func(string) (string, bool), owns func(string) bool, log zerolog.Logger,
	metrics *monitor.Metrics) (*local.Poller, error) {
	store, err := local.OpenStore(cfg.LocalAuthPath())
	if err != nil {
		return nil, config.Errorf("LOCAL_AUTH_FILE: %v", err)
	}
	hosts := make([]string, 0, len(cfg.LocalPrinters))
	for _, h := range cfg.LocalPrinters {
		host, err := local.ParseHost(h)
		if err != nil {
			return nil, config.Errorf("LOCAL_PRINTERS: %v", err)
		}
		hosts = append(hosts, host)
	}
	return local.New(local.Config{Hosts: hosts, Interval: cfg.LocalPollInterval, Pair: PairRequest(cfg), KnownAs: knownAs,
		ForgetAfter: cfg.LocalForgetAfter, Owns: owns,
		OnRequest: func(_, class string) { metrics.ObservePoll("lan", class) }}, store, sink, log), nil
}

// PairRequest is how the bridge introduces itself to a printer when
// pairing: one exclusion key per bridge instance, so pairing again
// replaces the old pairing instead of piling up.
func PairRequest(cfg *config.Config) local.PairRequest {
	host, _ := os.Hostname()
	return local.PairRequest{Application: "ultimaker2mqtt", User: "bridge@" + nonEmpty(host, "ultimaker2mqtt"),
		ExclusionKey: "ultimaker2mqtt-" + cfg.BrokerClientID(), Timeout: cfg.LocalPairTimeout}
}

func nonEmpty(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// refresher asks the pollers in use for a fresh poll.
type refresher struct {
	cloud *poller.Poller
	lan   *local.Poller
}

func (r refresher) Refresh(id string) {
	if r.cloud != nil {
		r.cloud.Refresh(id)
	}
	if r.lan != nil {
		r.lan.Refresh(id)
	}
}

func (r refresher) RefreshMaintenance(id string) {
	if r.cloud != nil {
		r.cloud.RefreshMaintenance(id)
	}
}

func (r refresher) RefreshWorkspace() {
	if r.cloud != nil {
		r.cloud.RefreshWorkspace()
	}
}

// authLANOnly is the sign-in state of a bridge without a cloud account.
const authLANOnly = "lan_only"

func authState(cfg *config.Config, s *auth.Source) string {
	if !cfg.UsesCloud() {
		return authLANOnly
	}
	if s == nil {
		return auth.StateAPIToken
	}
	return s.State()
}
