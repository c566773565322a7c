package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/monitor"
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

// runDemo runs the bridge against a simulated Digital Factory, its LAN
// printers and an embedded broker (or the user's MQTT_URL), printing one
// line per printer change.
func runDemo(ctx context.Context, vars map[string]string, stdout, stderr io.Writer) error {
	cfg, ownBroker, err := demoConfig(vars)
	if err != nil {
		return err
	}
	if !ownBroker {
		stop, err := startDemoBroker(cfg, vars, stdout)
		if err != nil {
			return err
		}
		defer stop()
	}
	sim, stopCloud, err := startDemoCloud(cfg)
	if err != nil {
		return err
	}
	defer stopCloud()
	lanHosts, stopLAN, err := startDemoLAN(sim, cfg, vars)
	if err != nil {
		return err
	}
	defer stopLAN()
	printDemoWelcome(stdout, cfg, vars, ownBroker, lanHosts)
	br, err := bridge.New(cfg, bridge.Options{Version: buildVersion(), Log: cfg.Logger(stderr), Wrap: printChanges(stdout)})
	if err != nil {
		return err
	}
	return br.Run(ctx)
}

// demoConfig is the configuration of vars over the demo's defaults;
// ownBroker is true when the user named a broker (MQTT_URL).
func demoConfig(vars map[string]string) (cfg *config.Config, ownBroker bool, err error) {
	merged := make(map[string]string, len(vars)+len(demoDefaults))
	for k, v := range demoDefaults {
		merged[k] = v
	}
	for k, v := range vars {
		merged[k] = v
	}
	_, ownBroker = vars["MQTT_URL"]
	if !ownBroker {
		merged["MQTT_URL"] = "tcp://" + merged["DEMO_MQTT_LISTEN"]
		if merged["DEMO_MQTT_LISTEN"] == "" {
			merged["MQTT_URL"] = "tcp://127.0.0.1:1883"
		}
	}
	cfg, err = config.Load(merged, false)
	if err != nil {
		return nil, false, err
	}
	if _, set := vars["HTTP_LISTEN"]; !set {
		cfg.HTTPListen = demoPageAddress()
	}
	return cfg, ownBroker, nil
}

// demoPageAddress is where the demo serves the farm's page: port 8080 on
// this machine, or a free port when that one is taken.
func demoPageAddress() string {
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:0"} {
		if ln, err := net.Listen("tcp", addr); err == nil {
			a := ln.Addr().String()
			ln.Close()
			return a
		}
	}
	return "127.0.0.1:8080"
}

// startDemoBroker starts the embedded broker on DEMO_MQTT_LISTEN, or on a
// free port when the default one is taken, and points cfg at it.
func startDemoBroker(cfg *config.Config, vars map[string]string, stdout io.Writer) (stop func(), err error) {
	broker, addr, err := startBroker(cfg.DemoMQTTListen)
	if err != nil && vars["DEMO_MQTT_LISTEN"] == "" {
		// The default port is often taken by a system mosquitto; any
		// free loopback port will do for a demo.
		fmt.Fprintf(stdout, "port %s is busy (%v); using a free port\n", cfg.DemoMQTTListen, errors.Unwrap(err))
		broker, addr, err = startBroker("127.0.0.1:0")
	}
	if err != nil {
		return nil, &config.Error{Msg: fmt.Sprintf("DEMO_MQTT_LISTEN %s: %v (set DEMO_MQTT_LISTEN to a free address, "+
			"or MQTT_URL to your broker)", cfg.DemoMQTTListen, err)}
	}
	cfg.MQTTURL = "tcp://" + addr
	return func() { broker.Close() }, nil
}

// startDemoCloud serves the simulated Connect API on a loopback port and
// points cfg at it, with the demo's token.
func startDemoCloud(cfg *config.Config) (*simulator.Server, func(), error) {
	sim := simulator.New(simulator.Options{Speed: cfg.DemoSpeed, Seed: uint64(time.Now().UnixNano()), Tokens: []string{demoToken}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("demo simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	cfg.APIURL = "http://" + ln.Addr().String() + simulator.BasePath
	cfg.APIToken = config.Secret(demoToken)
	return sim, func() { srv.Close() }, nil
}

// startDemoLAN serves the LAN API of two printers, the Lab S5 (paired on
// request, approved on its screen after a few seconds) and the farm's
// group host, and has the bridge read them (unless LOCAL_PRINTERS says
// otherwise), with its pairings in a temporary file unless
// LOCAL_AUTH_FILE names one.
func startDemoLAN(sim *simulator.Server, cfg *config.Config, vars map[string]string) ([]string, func(), error) {
	hosts, stopLAN, err := serveLocalPrinters(sim, demoLANPrinters)
	if err != nil {
		return nil, nil, fmt.Errorf("demo LAN printers: %w", err)
	}
	if _, set := vars["LOCAL_PRINTERS"]; !set {
		cfg.LocalPrinters = hosts
	}
	if cfg.LocalAuthFile != "" {
		return hosts, stopLAN, nil
	}
	dir, err := os.MkdirTemp("", "ultimaker2mqtt-demo-")
	if err != nil {
		stopLAN()
		return nil, nil, fmt.Errorf("demo: %w", err)
	}
	cfg.LocalAuthFile = filepath.Join(dir, "local-auth.json")
	return hosts, func() { stopLAN(); os.RemoveAll(dir) }, nil
}

// printDemoWelcome says where everything is and how to watch it, the
// farm's page first.
func printDemoWelcome(stdout io.Writer, cfg *config.Config, vars map[string]string, ownBroker bool, lanHosts []string) {
	if _, set := vars["HTTP_LISTEN"]; !set && cfg.HTTPListen != config.DefaultHTTPListen {
		fmt.Fprintf(stdout, "port %s is busy; the farm page is on another port\n", config.DefaultHTTPListen)
	}
	if cfg.HTTPListen != "" && cfg.WebUI {
		url := monitor.PageURL(cfg.HTTPListen)
		fmt.Fprintf(stdout, "farm page:  %s  (wall mode: %[1]s?view=wall)\n", url)
	}
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(cfg.MQTTURL, "tcp://"), "mqtt://"))
	fmt.Fprintf(stdout, "ultimaker2mqtt demo: simulated Digital Factory at %s (%gx speed)\n", cfg.APIURL, cfg.DemoSpeed)
	if ownBroker {
		fmt.Fprintf(stdout, "publishing to your broker %s\n", mqttpub.RedactURL(cfg.MQTTURL))
	} else {
		fmt.Fprintf(stdout, "embedded MQTT broker on %s\n", cfg.MQTTURL)
	}
	// The pictures are JPEG bytes: left out of a terminal.
	fmt.Fprintf(stdout, "watch it:  mosquitto_sub -h %s -p %s -t '%s/#' -T '%[3]s/printers/+/picture' -v\n", host, port, cfg.MQTTBaseTopic)
	if len(lanHosts) > 0 {
		fmt.Fprintf(stdout, "LAN printers at %s; pair the Lab S5 (approved on its screen in 5 s):\n", strings.Join(lanHosts, ", "))
		fmt.Fprintf(stdout, "  mosquitto_pub -h %s -p %s -t '%s/bridge/request/pair' -m '{\"printer\": \"%s\"}'\n",
			host, port, cfg.MQTTBaseTopic, demoLANPrinters[0])
	}
	fmt.Fprintln(stdout, "Ctrl-C stops. Printer status changes:")
}

// printChanges wraps the bridge's sink so each printer status change is
// printed as a line (describeChange).
func printChanges(stdout io.Writer) func(poller.Sink) poller.Sink {
	var mu sync.Mutex
	return func(next poller.Sink) poller.Sink {
		return &render.PrinterChanges{Next: next, OnChange: func(p state.Printer, previous string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(stdout, describeChange(time.Now(), p, previous))
		}}
	}
}

// demoLANPrinters answer on the demo's LAN and are read there: a single
// S5 and a group's host. The group's other printers answer too
// (demoLANMembers); the bridge reads their temperatures through the host.
var (
	demoLANPrinters = []string{"ultimakersystem-4b0fc38e95e3", "ultimakersystem-ccbdd30044ec"}
	demoLANMembers  = map[string][]string{"ultimakersystem-ccbdd30044ec": {"ultimakersystem-ccbdd3005a11",
		"ultimakersystem-ccbdd3007c42"}}
)

// serveLocalPrinters serves the LAN API of each named printer, and of
// the members of the groups they host, on a loopback port of its own,
// and returns the addresses of the named ones.
func serveLocalPrinters(sim *simulator.Server, names []string) ([]string, func(), error) {
	var servers []*http.Server
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	serve := func(name string, opts simulator.LocalOptions) (string, error) {
		lp, err := sim.LocalPrinter(name, opts)
		if err != nil {
			return "", err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		srv := &http.Server{Handler: lp, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		servers = append(servers, srv)
		return ln.Addr().String(), nil
	}
	var hosts []string
	for _, name := range names {
		opts := simulator.LocalOptions{ApproveAfter: 5 * time.Second, Members: map[string]string{}}
		for _, m := range demoLANMembers[name] {
			addr, err := serve(m, simulator.LocalOptions{ApproveAfter: 5 * time.Second})
			if err != nil {
				stop()
				return nil, nil, err
			}
			opts.Members[m] = addr
		}
		addr, err := serve(name, opts)
		if err != nil {
			stop()
			return nil, nil, err
		}
		hosts = append(hosts, addr)
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
