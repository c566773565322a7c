package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/auth"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Check reaches the broker, the API and the LAN printers of cfg and
// writes what it sees to stdout; an error says what failed.
func Check(ctx context.Context, cfg *config.Config, version string, stdout io.Writer) error {
	log := cfg.Logger(io.Discard)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	mq, err := mqttpub.New(MQTTConfig(cfg, "check"), log)
	if err != nil {
		return config.Errorf("MQTT_URL: %v", err)
	}
	stop, err := Connect(ctx, mq, 8*time.Second)
	stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "broker %s: ok\n", mqttpub.RedactURL(cfg.MQTTURL))
	if cfg.UsesCloud() {
		if err := checkCloud(ctx, cfg, version, log, stdout); err != nil {
			return err
		}
	}
	return checkLAN(ctx, cfg, stdout)
}

// checkLAN reads each printer of LOCAL_PRINTERS once and says whether the
// bridge is paired with it.
func checkLAN(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	if len(cfg.LocalPrinters) == 0 {
		return nil
	}
	store, err := local.OpenStore(cfg.LocalAuthPath())
	if err != nil {
		return config.Errorf("LOCAL_AUTH_FILE: %v", err)
	}
	var failed []string
	for _, h := range cfg.LocalPrinters {
		host, _ := local.ParseHost(h) // checked by config.Load
		c := local.NewClient(host, 5*time.Second, nil)
		sys, err := c.System(ctx)
		switch {
		case errors.Is(err, local.ErrAuth):
			fmt.Fprintf(stdout, "LAN printer %s: answers, but refuses reads until paired\n", host)
		case err != nil:
			fmt.Fprintf(stdout, "LAN printer %s: %v\n", host, err)
			failed = append(failed, host)
			continue
		default:
			fmt.Fprintf(stdout, "LAN printer %s: %s (%s, firmware %s, %s)\n", host, sys.Name, sys.Variant, sys.Firmware, sys.Hostname)
		}
		cred, ok := store.Get(host)
		if !ok && sys != nil {
			cred, ok = store.Get(topics.Segment(sys.Hostname))
		}
		switch {
		case !ok:
			fmt.Fprintf(stdout, "  not paired: pause, resume and abort go to the cloud, if any (ultimaker2mqtt pair %s)\n", host)
		default:
			c.SetCredential(cred)
			if err := c.VerifyAuth(ctx); err != nil {
				fmt.Fprintf(stdout, "  paired, but the printer refuses the credential (%v): pair again\n", err)
			} else {
				fmt.Fprintln(stdout, "  paired: the printer accepts the bridge's credential")
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("LAN printers not answering: %s", strings.Join(failed, ", "))
	}
	return nil
}

// checkCloud signs in and reads the workspace's clusters.
func checkCloud(ctx context.Context, cfg *config.Config, version string, log zerolog.Logger, stdout io.Writer) error {
	// Each sign-in line is printed only once the API accepted the token.
	ts, src := TokenSource(cfg, log, nil)
	signedIn := []string{"sign-in: API token accepted"}
	if src != nil {
		tok, err := src.Token()
		if err != nil {
			return fmt.Errorf("sign-in: %v", err)
		}
		signedIn = []string{fmt.Sprintf("sign-in: token file %s accepted", cfg.TokenFile)}
		if who := auth.WhoAmI(ctx, cfg.AccountURL, tok.AccessToken); who != "" {
			signedIn = append(signedIn, who)
		}
	}
	api, err := API(cfg, ts, log, version, nil)
	if err != nil {
		return err
	}
	clusters, err := api.Clusters(ctx)
	if err != nil {
		if connect.KindOf(err) == connect.KindAuth {
			return fmt.Errorf("sign-in: the Connect API refused the token: %w", err)
		}
		return fmt.Errorf("Connect API %s: %w", cfg.APIURL, err)
	}
	for _, l := range signedIn {
		fmt.Fprintln(stdout, l)
	}
	if up, err := api.Root(ctx); err != nil {
		fmt.Fprintf(stdout, "API root: %v\n", err)
	} else {
		fmt.Fprintf(stdout, "API root: ok=%v, version %s, up %s\n", up.OK, up.Version, (time.Duration(up.Uptime) * time.Second).Round(time.Second))
	}
	var ids []string
	for _, c := range clusters {
		ids = append(ids, c.ClusterID)
	}
	if acc, err := api.AccessibleClusters(ctx, ids); err != nil {
		fmt.Fprintf(stdout, "access check: %v\n", err)
	} else {
		fmt.Fprintf(stdout, "access check: %d of %d clusters accessible with this token\n", len(acc), len(ids))
	}
	printers := 0
	org := ""
	for _, c := range clusters {
		printers += int(c.PrinterCount)
		if org == "" {
			org = c.OrganizationID
		}
	}
	fmt.Fprintf(stdout, "Connect API %s: ok, workspace %s, %d clusters, %d printers\n", cfg.APIURL, org, len(clusters), printers)
	return nil
}
