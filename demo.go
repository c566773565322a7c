package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

const demoToken = "umapi-demo|main"

// demoDefaults make the demo lively; a variable the user set wins.
var demoDefaults = map[string]string{
	"POLL_INTERVAL":          "2s",
	"POLL_IDLE_INTERVAL":     "10s",
	"POLL_OFFLINE_INTERVAL":  "30s",
	"POLL_CLUSTERS_INTERVAL": "1m",
	"LOG_LEVEL":              "warn",
}

func runDemo(ctx context.Context, vars map[string]string, stdout, stderr io.Writer) error {
	merged := make(map[string]string, len(vars)+len(demoDefaults))
	for k, v := range demoDefaults {
		merged[k] = v
	}
	for k, v := range vars {
		merged[k] = v
	}
	_, ownBroker := vars["MQTT_URL"]
	if !ownBroker {
		merged["MQTT_URL"] = "tcp://" + merged["DEMO_MQTT_LISTEN"]
		if merged["DEMO_MQTT_LISTEN"] == "" {
			merged["MQTT_URL"] = "tcp://127.0.0.1:1883"
		}
	}
	cfg, err := config.Load(merged, false)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)

	if !ownBroker {
		broker, addr, err := startBroker(cfg.DemoMQTTListen)
		if err != nil && vars["DEMO_MQTT_LISTEN"] == "" {
			// The default port is often taken by a system mosquitto; any
			// free loopback port will do for a demo.
			fmt.Fprintf(stdout, "port %s is busy (%v); using a free port\n", cfg.DemoMQTTListen, errors.Unwrap(err))
			broker, addr, err = startBroker("127.0.0.1:0")
		}
		if err != nil {
			return &config.Error{Msg: fmt.Sprintf("DEMO_MQTT_LISTEN %s: %v (set DEMO_MQTT_LISTEN to a free address, or MQTT_URL to your broker)", cfg.DemoMQTTListen, err)}
		}
		defer broker.Close()
		cfg.MQTTURL = "tcp://" + addr
	}

	sim := simulator.New(simulator.Options{Speed: cfg.DemoSpeed, Seed: uint64(time.Now().UnixNano()), Tokens: []string{demoToken}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	cfg.APIURL = "http://" + ln.Addr().String() + simulator.BasePath
	cfg.APIToken = config.Secret(demoToken)

	host, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(cfg.MQTTURL, "tcp://"), "mqtt://"))
	fmt.Fprintf(stdout, "ultimaker2mqtt demo: simulated Digital Factory at %s (%gx speed)\n", cfg.APIURL, cfg.DemoSpeed)
	if ownBroker {
		fmt.Fprintf(stdout, "publishing to your broker %s\n", mqttpub.RedactURL(cfg.MQTTURL))
	} else {
		fmt.Fprintf(stdout, "embedded MQTT broker on %s\n", cfg.MQTTURL)
	}
	fmt.Fprintf(stdout, "watch it:  mosquitto_sub -h %s -p %s -t '%s/#' -v\n", host, port, cfg.MQTTBaseTopic)
	fmt.Fprintln(stdout, "Ctrl-C stops. Printer status changes:")

	var mu sync.Mutex
	changes := func(next poller.Sink) poller.Sink {
		return &render.PrinterChanges{Next: next, OnChange: func(p state.Printer, previous string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(stdout, describeChange(time.Now(), p, previous))
		}}
	}
	br, err := bridge.New(cfg, bridge.Options{Version: buildVersion(), Log: log, Wrap: changes})
	if err != nil {
		return err
	}
	return br.Run(ctx)
}

func describeChange(now time.Time, p state.Printer, previous string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-12s %-28s ", now.Format(time.TimeOnly), p.FriendlyName, p.ID)
	if previous != "" {
		fmt.Fprintf(&b, "%s -> ", previous)
	}
	b.WriteString(p.Status)
	if j := p.Job; j != nil {
		fmt.Fprintf(&b, "  %s %.0f%%", j.Name, j.Progress)
	}
	return b.String()
}

// startBroker starts the embedded broker: anonymous, loopback, and with
// retained messages that never expire (mochi expires them after a day by
// default, even for MQTT 3 clients).
func startBroker(addr string) (*mochi.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0
	srv := mochi.New(&mochi.Options{Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		ln.Close()
		return nil, "", err
	}
	if err := srv.AddListener(listeners.NewNet("demo", ln)); err != nil {
		ln.Close()
		return nil, "", err
	}
	if err := srv.Serve(); err != nil {
		ln.Close()
		return nil, "", err
	}
	return srv, ln.Addr().String(), nil
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve the Connect API on")
	speed := fs.Float64("speed", 1, "simulated seconds per real second")
	printers := fs.Int("printers", 0, "extra single-printer clusters beside the scripted world")
	onlyExtra := fs.Bool("only-extra", false, "serve only the extra printers, not the scripted world")
	seed := fs.Uint64("seed", 1, "seed of job names, durations, pauses and aborts")
	token := fs.String("token", "", "the only bearer token accepted (default: any)")
	latency := fs.Duration("latency", 0, "delay of every answer")
	errorRate := fs.Float64("error-rate", 0, "probability (0-1) of a random 500 answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &config.Error{Msg: "simulate: " + err.Error()}
	}
	if *speed <= 0 || *printers < 0 || *errorRate < 0 || *errorRate > 1 || *latency < 0 {
		return &config.Error{Msg: "simulate: -speed must be positive, -printers and -latency not negative, -error-rate within 0-1"}
	}
	opts := simulator.Options{Speed: *speed, Seed: *seed, ExtraPrinters: *printers, OnlyExtra: *onlyExtra,
		Latency: *latency, ErrorRate: *errorRate}
	if *token != "" {
		opts.Tokens = []string{*token}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return &config.Error{Msg: fmt.Sprintf("simulate -listen %s: %v", *listen, err)}
	}
	srv := &http.Server{Handler: simulator.New(opts), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "simulated Connect API on http://%s%s\n", ln.Addr(), simulator.BasePath)
	fmt.Fprintf(stdout, "point the bridge at it: ULTIMAKER_API_URL=http://%s%s ULTIMAKER_API_TOKEN=%s\n", ln.Addr(), simulator.BasePath, tokenHint(*token))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		return err
	}
}

func tokenHint(t string) string {
	if t == "" {
		return "anything"
	}
	return "<the -token value>"
}
