// Command ultimaker2mqtt bridges UltiMaker Digital Factory printers to MQTT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
)

// version is set at build time with -ldflags "-X main.version=…"; without
// it the module version from the build info is used.
var version = ""

func main() {
	// Collect at 1.5 times the live heap, not Go's 2: a farm's bridge holds
	// little per printer but makes a lot of short-lived garbage per poll,
	// and memory is what small hosts lack (10,000 printers: 104 MiB
	// instead of 135; 1,000: 24 instead of 27, for a sixth more CPU;
	// bench/farm.sh). GOGC set in the environment still decides.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore default handling so a second one
		// kills a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args, os.Environ(), os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err once and maps it to the process exit code: 2 for
// bad usage or configuration, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "ultimaker2mqtt:", err)
	var ce *config.Error
	if errors.As(err, &ce) {
		return 2
	}
	return 1
}

const usage = `ultimaker2mqtt bridges UltiMaker printers, through the Digital Factory (Connect API) and on the LAN, to MQTT.

Usage:
  ultimaker2mqtt [run]       poll the cloud and the LAN printers, publish to the broker (default)
  ultimaker2mqtt demo        simulated printers + embedded broker, no account needed
  ultimaker2mqtt simulate    serve the simulated Connect API (see simulate -h)
  ultimaker2mqtt login       sign in to UltiMaker (OAuth2 with PKCE) and write TOKEN_FILE
  ultimaker2mqtt pair HOST   pair with a printer on the LAN (press ALLOW on its screen); keeps
                             the credential in LOCAL_AUTH_FILE
  ultimaker2mqtt check       check the configuration, the broker and the API, and say what is seen
  ultimaker2mqtt healthcheck ask a running bridge's /healthz (HTTP_LISTEN); exit 0 when healthy
  ultimaker2mqtt cleanup     remove everything the bridge published (retained topics,
                             Home Assistant devices); stop the bridge first, or -force
  ultimaker2mqtt version     print the version
  ultimaker2mqtt -h          this help

`

// commandHelp is each subcommand's -h (simulate and cleanup add their
// flags).
var commandHelp = map[string]string{
	"run": `Usage: ultimaker2mqtt [run]

Polls the Digital Factory and the printers on the LAN and publishes them to
the MQTT broker, serves the farm page on HTTP_LISTEN (127.0.0.1:8080), and
answers commands. It needs one way in: LOCAL_PRINTERS (or LOCAL_DISCOVERY),
ULTIMAKER_API_TOKEN, or TOKEN_FILE after login. Every setting is an
environment variable: ultimaker2mqtt -h lists them.
`,
	"demo": `Usage: ultimaker2mqtt demo

Runs simulated printers (a fake Digital Factory and one printer's LAN API)
and an embedded MQTT broker on DEMO_MQTT_LISTEN (127.0.0.1:1883), with the
bridge between them and the farm page on http://127.0.0.1:8080/ (the next
free port when 8080 is taken; the demo says which). No account needed.
WEB_TOKEN unlocks the page's controls; DEMO_SPEED sets the simulated time;
MQTT_URL uses your own broker instead. Ctrl-C stops it.
`,
	"login": `Usage: ultimaker2mqtt login

Signs in to UltiMaker (OAuth2 with PKCE) in a browser and writes TOKEN_FILE,
which the bridge then keeps fresh. Needs ULTIMAKER_CLIENT_ID (from
UltiMaker) and TOKEN_FILE; LOGIN_CALLBACK_PORT is the local callback port.
`,
	"pair": `Usage: ultimaker2mqtt pair HOST

Pairs with the printer at HOST on the LAN: press ALLOW on its screen when
it asks. The credential is kept in LOCAL_AUTH_FILE (0600); the bridge then
reads what the printer gates and can send it commands.
`,
	"check": `Usage: ultimaker2mqtt check

Checks the configuration, the broker and the Connect API (or the LAN
printers), says what it sees and what to fix, and exits 0 when all is well.
`,
	"healthcheck": `Usage: ultimaker2mqtt healthcheck

Asks a running bridge's /healthz on HTTP_LISTEN and exits 0 when it is
healthy, 1 when not: Docker's HEALTHCHECK without curl.
`,
	"version": `Usage: ultimaker2mqtt version

Prints the version.
`,
}

// wantsHelp reports whether a subcommand's arguments ask for its help.
func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
}

// run is the whole program; main only wires signals and exit codes.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	vars := envMap(environ)
	cmd, rest := "run", []string(nil)
	if len(args) > 1 {
		cmd, rest = args[1], args[2:]
	}
	if text, ok := commandHelp[cmd]; ok && wantsHelp(rest) {
		fmt.Fprint(stdout, text)
		return flag.ErrHelp
	}
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		config.Help(stdout)
		return flag.ErrHelp
	case "version", "--version":
		fmt.Fprintln(stdout, "ultimaker2mqtt", buildVersion())
		return nil
	case "run":
		if len(rest) > 0 {
			return &config.Error{Msg: "run takes no arguments; configure it with environment variables (see -h)"}
		}
		cfg, err := config.Load(vars, true)
		if err != nil {
			return err
		}
		br, err := bridge.New(cfg, bridge.Options{Version: buildVersion(), Log: cfg.Logger(stderr)})
		if err != nil {
			return err
		}
		return br.Run(ctx)
	case "demo":
		if len(rest) > 0 {
			return &config.Error{Msg: "demo takes no arguments; configure it with environment variables (see -h)"}
		}
		return runDemo(ctx, vars, stdout, stderr)
	case "simulate":
		return runSimulate(ctx, rest, stdout, stderr)
	case "cleanup":
		return runCleanup(ctx, rest, vars, stdout, stderr)
	case "login":
		return runLogin(ctx, vars, os.Stdin, stdout)
	case "pair":
		return runPair(ctx, rest, vars, stdout)
	case "check":
		return runCheck(ctx, vars, stdout)
	case "healthcheck":
		return runHealthcheck(ctx, vars, stdout)
	}
	return &config.Error{Msg: fmt.Sprintf("unknown command %q (want run, demo, simulate, login, pair, check, healthcheck, cleanup or version; -h for help)", cmd)}
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
