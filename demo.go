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
	"os"
	"path/filepath"
	"slices"
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

	// Two printers also answer on the "LAN": the Lab S5 (paired on request,
	// approved on its screen after a few seconds) and the farm's group host.
	lanHosts, stopLAN, err := serveLocalPrinters(sim, demoLANPrinters)
	if err != nil {
		return fmt.Errorf("demo LAN printers: %w", err)
	}
	defer stopLAN()
	if _, set := vars["LOCAL_PRINTERS"]; !set {
		cfg.LocalPrinters = lanHosts
	}
	if cfg.LocalAuthFile == "" {
		dir, err := os.MkdirTemp("", "ultimaker2mqtt-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.LocalAuthFile = filepath.Join(dir, "local-auth.json")
	}

	host, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(cfg.MQTTURL, "tcp://"), "mqtt://"))
	fmt.Fprintf(stdout, "ultimaker2mqtt demo: simulated Digital Factory at %s (%gx speed)\n", cfg.APIURL, cfg.DemoSpeed)
	if ownBroker {
		fmt.Fprintf(stdout, "publishing to your broker %s\n", mqttpub.RedactURL(cfg.MQTTURL))
	} else {
		fmt.Fprintf(stdout, "embedded MQTT broker on %s\n", cfg.MQTTURL)
	}
	fmt.Fprintf(stdout, "watch it:  mosquitto_sub -h %s -p %s -t '%s/#' -v\n", host, port, cfg.MQTTBaseTopic)
	if len(lanHosts) > 0 {
		fmt.Fprintf(stdout, "LAN printers at %s; pair the Lab S5 (approved on its screen in 5 s):\n", strings.Join(lanHosts, ", "))
		fmt.Fprintf(stdout, "  mosquitto_pub -h %s -p %s -t '%s/bridge/request/pair' -m '{\"printer\": \"%s\"}'\n",
			host, port, cfg.MQTTBaseTopic, demoLANPrinters[0])
	}
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

// demoLANPrinters answer on the demo's LAN: a single S5 and a group host.
var demoLANPrinters = []string{"ultimakersystem-4b0fc38e95e3", "ultimakersystem-ccbdd30044ec"}

// serveLocalPrinters serves the LAN API of each named printer on a
// loopback port of its own and returns their addresses.
func serveLocalPrinters(sim *simulator.Server, names []string) ([]string, func(), error) {
	var hosts []string
	var servers []*http.Server
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	for _, name := range names {
		lp, err := sim.LocalPrinter(name, simulator.LocalOptions{ApproveAfter: 5 * time.Second})
		if err != nil {
			stop()
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		srv := &http.Server{Handler: lp, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		servers = append(servers, srv)
		hosts = append(hosts, ln.Addr().String())
	}
	return hosts, stop, nil
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
	if p.Source != state.SourceCloud {
		fmt.Fprintf(&b, "  [%s]", p.Source)
	}
	if len(p.Extruders) > 0 && p.Extruders[0].HotendTemperature != nil {
		fmt.Fprintf(&b, " hotend %.0f°C", *p.Extruders[0].HotendTemperature)
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
	localListen := fs.String("local", "", "also serve one printer's LAN API (/api/v1, /cluster-api/v1) on this address")
	localPrinter := fs.String("local-printer", "ultimakersystem-4b0fc38e95e3", "unique name of the printer -local serves")
	localAlgo := fs.String("local-digest", "MD5", "digest algorithm of the LAN API's challenge: MD5 or SHA-256")
	localGated := fs.Bool("local-gated", false, "the LAN printer refuses reads until paired (firmware from 2025)")
	localPairing := fs.String("local-pairing", simulator.PairApprove, "what the printer's screen answers to pairing: approve, refuse or ignore")
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
	sim := simulator.New(opts)
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	if *localListen != "" {
		if *localAlgo != "MD5" && *localAlgo != "SHA-256" || !slices.Contains([]string{simulator.PairApprove, simulator.PairRefuse, simulator.PairIgnore}, *localPairing) {
			ln.Close()
			return &config.Error{Msg: "simulate: -local-digest is MD5 or SHA-256; -local-pairing approve, refuse or ignore"}
		}
		lp, err := sim.LocalPrinter(*localPrinter, simulator.LocalOptions{Algorithm: *localAlgo, GatedReads: *localGated,
			Pairing: *localPairing, ApproveAfter: 5 * time.Second})
		if err != nil {
			ln.Close()
			return &config.Error{Msg: fmt.Sprintf("simulate -local-printer: %v (one of %s)", err, strings.Join(sim.LocalPrinterNames(), ", "))}
		}
		lln, err := net.Listen("tcp", *localListen)
		if err != nil {
			ln.Close()
			return &config.Error{Msg: fmt.Sprintf("simulate -local %s: %v", *localListen, err)}
		}
		lsrv := &http.Server{Handler: lp, ReadHeaderTimeout: 5 * time.Second}
		go lsrv.Serve(lln)
		defer lsrv.Close()
		fmt.Fprintf(stdout, "LAN API of %s on http://%s/api/v1 (pairing: %s after 5s)\n", *localPrinter, lln.Addr(), *localPairing)
		fmt.Fprintf(stdout, "point the bridge at it: LOCAL_PRINTERS=%s\n", lln.Addr())
	}
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
