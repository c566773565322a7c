package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// runSimulate serves the simulated Connect API (and optionally one printer's LAN API) until ctx ends.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), simulateUsage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve the Connect API on (8080 is the farm page's)")
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

const simulateUsage = `Usage: ultimaker2mqtt simulate [flags]

Serves the simulated Connect API (and, with -local, one printer's LAN API)
for building dashboards and flows without hardware. Point the bridge at it
with ULTIMAKER_API_URL=http://<listen>/connect/v1 and any token.

Flags:
`
