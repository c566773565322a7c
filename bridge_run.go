package main

import (
	"context"
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
	"golang.org/x/term"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/auth"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/monitor"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

func newLogger(cfg *Config, w io.Writer) zerolog.Logger {
	lvl, _ := parseLevel(cfg.LogLevel) // validated in loadConfig
	console := cfg.LogFormat == "console"
	if cfg.LogFormat == "auto" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			console = true
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

func runBridge(ctx context.Context, vars map[string]string, stderr io.Writer) error {
	cfg, err := loadConfig(vars, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	return serve(ctx, cfg, log, nil)
}

// serve runs the bridge until ctx ends. sink, when not nil, wraps the
// bridge's sink (the demo prints changes through it).
func serve(ctx context.Context, cfg *Config, log zerolog.Logger, wrap func(poller.Sink) poller.Sink) error {
	started := time.Now().UTC().Truncate(time.Second)
	tree := topics.Tree{Base: cfg.MQTTBaseTopic}
	// Declared first: the metrics read them at scrape time.
	var (
		mq     *mqttpub.Client
		br     *render.Renderer
		signIn *auth.Source
	)
	var metrics *monitor.Metrics
	var mon *monitor.Server
	var monLn net.Listener
	if cfg.HTTPListen != "" {
		metrics = monitor.NewMetrics(monitor.Sources{
			Published: func() float64 { return float64(mq.Published()) },
			Refreshes: func() float64 {
				if signIn == nil {
					return 0
				}
				return float64(signIn.Refreshes())
			},
			Clusters: func() float64 { return float64(br.Stats().Clusters) },
			Printers: func() float64 { return float64(br.Stats().Printers) },
			LastPoll: func() float64 {
				if lp := br.Stats().LastPoll; lp != nil {
					return float64(lp.Unix())
				}
				return 0
			},
			MQTTConnected: func() float64 {
				if mq.Connected() {
					return 1
				}
				return 0
			},
		})
		mon = monitor.New(cfg.HTTPListen, metrics.Registry, func() monitor.Health {
			return health(cfg, started, mq, br, signIn)
		}, log)
		var err error
		if monLn, err = mon.Listen(); err != nil {
			return &configError{fmt.Sprintf("HTTP_LISTEN %s: %v", cfg.HTTPListen, err)}
		}
		defer monLn.Close()
	}
	var ts oauth2.TokenSource
	authState := make(chan string, 4)
	if cfg.APIToken != "" {
		ts = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: cfg.APIToken.Reveal(), TokenType: "Bearer"})
	} else {
		signIn = auth.NewSource(auth.Config{OAuth: oauthConfig(cfg), TokenFile: cfg.TokenFile,
			OnState: func(s string) {
				select {
				case authState <- s:
				default:
				}
			}}, log)
		ts = signIn
	}
	api, err := connect.New(connect.Options{
		BaseURL:     cfg.APIURL,
		TokenSource: ts,
		Timeout:     cfg.APITimeout,
		UserAgent:   "ultimaker2mqtt/" + buildVersion(),
		Observe:     observeAPI(metrics),
		Log:         log,
	})
	if err != nil {
		return &configError{"ULTIMAKER_API_URL: " + err.Error()}
	}
	mq, err = mqttpub.New(mqttpub.Config{
		URL: cfg.MQTTURL, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword.Reveal(),
		ClientID: clientID(cfg), CAFile: cfg.MQTTCAFile, CertFile: cfg.MQTTCertFile, KeyFile: cfg.MQTTKeyFile,
		StateTopic: tree.BridgeState(), ProbeTopic: tree.BridgeProbe(clientID(cfg)),
	}, log)
	if err != nil {
		return &configError{"MQTT_URL: " + err.Error()}
	}
	var disc *discovery.Config
	if cfg.HADiscovery {
		disc = &discovery.Config{Prefix: cfg.HADiscoveryPrefix, Tree: tree, Version: buildVersion()}
		// Offer only buttons that can work: none when read-only.
		for _, a := range commands.PrinterActions {
			if !cfg.ReadOnly && (len(cfg.AllowedActions) == 0 || slices.Contains(cfg.AllowedActions, a)) {
				disc.Buttons = append(disc.Buttons, a)
			}
		}
	}
	br = render.New(tree, mq, render.Info{
		Version: buildVersion(), StartedAt: started, APIURL: cfg.APIURL, Auth: initialAuth(signIn), ReadOnly: cfg.ReadOnly,
		Intervals: map[string]string{
			"status": cfg.PollInterval.String(), "idle": cfg.PollIdleInterval.String(),
			"offline": cfg.PollOfflineInterval.String(), "clusters": cfg.PollClustersInterval.String(),
			"maintenance": cfg.PollMaintenanceInterval.String(),
		},
	}, disc, log)
	br.BirthDelay = cfg.HABirthDelay
	var sweeps sync.WaitGroup
	if disc != nil {
		mq.Handle(cfg.HAStatusTopic, func(ctx context.Context, m bus.Inbound) { br.HAStatus(ctx, m.Payload) })
	}
	// Once every cluster has been polled, whatever this bridge left on the
	// broker in an earlier run for printers that are gone is stale.
	br.OnReady = func(ctx context.Context) {
		sweeps.Add(1)
		go func() {
			defer sweeps.Done()
			sweepStale(ctx, mq, br, tree, disc, log)
		}()
	}
	var sink poller.Sink = br
	if wrap != nil {
		sink = wrap(br)
	}
	pl := poller.New(poller.Config{
		Interval: cfg.PollInterval, IdleInterval: cfg.PollIdleInterval, OfflineInterval: cfg.PollOfflineInterval,
		ClustersInterval: cfg.PollClustersInterval, MaintenanceInterval: cfg.PollMaintenanceInterval,
		BackoffMax: cfg.PollBackoffMax, MaxInFlight: cfg.PollMaxInFlight, ClusterIDs: cfg.ClusterIDs,
		Hold:   func() bool { return signIn != nil && signIn.State() == auth.StateAuthRequired },
		OnPoll: observePoll(metrics),
	}, api, sink, log)

	cmd := commands.New(commands.Config{Tree: tree, ReadOnly: cfg.ReadOnly, AllowedActions: cfg.AllowedActions,
		Timeout: cfg.CommandTimeout, PollEvery: cfg.CommandPoll, OnAnswer: observeCommand(metrics), Prober: mq},
		api, br, mq, pl, log)
	for _, f := range cmd.Filters() {
		mq.Subscribe(mqttpub.Subscription{Filter: f, Handle: cmd.Handle, Busy: cmd.Busy, MaxPayload: commands.MaxPayload})
	}

	log.Info().Str("version", buildVersion()).Str("broker", redact(cfg.MQTTURL)).Str("api", cfg.APIURL).
		Str("base_topic", cfg.MQTTBaseTopic).Msg("starting")

	// The broker connection outlives the poller: on shutdown the poller
	// stops first, so "offline" is the last thing published.
	mqCtx, stopMQ := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMQ()
	mqDone := make(chan error, 1)
	go func() { mqDone <- mq.Run(mqCtx) }()

	br.Start(ctx)
	var helpers sync.WaitGroup
	if mon != nil {
		helpers.Add(1)
		go func() {
			defer helpers.Done()
			if err := mon.Serve(ctx, monLn); err != nil {
				log.Error().Err(err).Msg("http endpoint stopped")
			}
		}()
	}
	if signIn != nil {
		helpers.Add(2)
		go func() {
			defer helpers.Done()
			signIn.Run(ctx, cfg.AuthRecheck)
		}()
		go func() {
			// Sign-in changes show in bridge/info and HA at once; a new
			// sign-in polls everything now.
			defer helpers.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case s := <-authState:
					br.SetAuth(ctx, s)
					if s == auth.StateOK {
						pl.Refresh("")
					}
				}
			}
		}()
	}
	pollErr := pl.Run(ctx)
	helpers.Wait()
	sweeps.Wait()
	stopMQ()
	mqErr := <-mqDone
	cmd.Wait()
	log.Info().Msg("stopped")
	if pollErr != nil {
		return pollErr
	}
	return mqErr
}

// clientID is stable across restarts and distinct per host and base
// topic, so two instances never kick each other off the broker.
func clientID(cfg *Config) string {
	if cfg.MQTTClientID != "" {
		return cfg.MQTTClientID
	}
	host, _ := os.Hostname()
	id := "ultimaker2mqtt-" + topics.Segment(cfg.MQTTBaseTopic) + "-" + topics.Segment(host)
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}

func redact(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + raw[i+1:]
		}
	}
	return raw
}

// sweepStale clears retained topics this bridge published in an earlier
// run for printers and clusters that no longer exist: their state,
// availability and discovery configs.
func sweepStale(ctx context.Context, mq *mqttpub.Client, br *render.Renderer, tree topics.Tree, disc *discovery.Config, log zerolog.Logger) {
	filters := tree.DeviceFilters()
	if disc != nil {
		filters = append(filters, disc.DeviceFilter())
	}
	found, err := mq.Retained(ctx, filters, 2*time.Second)
	if err != nil {
		log.Debug().Err(err).Msg("stale topic sweep skipped")
		return
	}
	var stale []string
	for t := range found {
		if disc != nil && disc.Ours(t) {
			stale = append(stale, t) // cleared unless published this run
			continue
		}
		// The retained topics of printers and clusters that are gone; a
		// live printer keeps its snapshot and preview.
		a, ok := tree.Parse(t)
		if !ok || !topics.IsRetained(a) {
			continue
		}
		_, printer := br.Printer(a.ID)
		_, cluster := br.Cluster(a.ID)
		if (a.Kind == topics.Printer && !printer) || (a.Kind == topics.Cluster && !cluster) {
			stale = append(stale, t)
		}
	}
	n, err := mq.ClearUnknown(ctx, stale)
	if err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Msg("clearing stale topics incomplete")
	}
	if n > 0 {
		log.Info().Int("topics", n).Msg("cleared retained topics of printers and clusters that are gone")
	}
}

func oauthConfig(cfg *Config) *oauth2.Config {
	return &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret.Reveal(),
		Endpoint: auth.Endpoint(cfg.AccountURL), Scopes: strings.Fields(cfg.Scopes),
		RedirectURL: fmt.Sprintf("http://localhost:%d/callback", cfg.LoginPort)}
}

func initialAuth(s *auth.Source) string {
	if s == nil {
		return auth.StateAPIToken
	}
	return s.State()
}

func observeAPI(m *monitor.Metrics) func(string, string, int, time.Duration) {
	if m == nil {
		return nil
	}
	return m.ObserveAPI
}

func observePoll(m *monitor.Metrics) func(string, string) {
	if m == nil {
		return nil
	}
	return m.ObservePoll
}

func observeCommand(m *monitor.Metrics) func(string, string) {
	if m == nil {
		return nil
	}
	return m.ObserveCommand
}

// health is what /healthz reports: the broker is connected, a poll
// succeeded recently (or the bridge is still starting), and the bridge is
// signed in.
func health(cfg *Config, started time.Time, mq *mqttpub.Client, br *render.Renderer, signIn *auth.Source) monitor.Health {
	broker := monitor.Check{Name: "broker", OK: mq.Connected(), Detail: "connected"}
	if !broker.OK {
		broker.Detail = "not connected to " + redact(cfg.MQTTURL)
	}
	// The slowest regular poll is an idle or offline cluster's; allow
	// three of those.
	window := 3 * max(cfg.PollIdleInterval, cfg.PollOfflineInterval, cfg.PollClustersInterval)
	poll := monitor.Check{Name: "poll"}
	switch lp := br.Stats().LastPoll; {
	case lp != nil && time.Since(*lp) < window:
		poll.OK, poll.Detail = true, "last successful poll "+lp.Format(time.RFC3339)
	case lp != nil:
		poll.Detail = "no successful poll since " + lp.Format(time.RFC3339)
	case time.Since(started) < window:
		poll.OK, poll.Detail = true, "starting"
	default:
		poll.Detail = "no successful poll since the start at " + started.Format(time.RFC3339)
	}
	signedIn := monitor.Check{Name: "sign_in", OK: true, Detail: auth.StateAPIToken}
	if signIn != nil {
		signedIn.Detail = signIn.State()
		signedIn.OK = signedIn.Detail != auth.StateAuthRequired
	}
	return monitor.Evaluate(broker, poll, signedIn)
}
