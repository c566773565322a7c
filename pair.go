package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// runPair pairs the bridge with a printer on the LAN from a terminal and
// keeps the credential in LOCAL_AUTH_FILE, where the bridge (running or
// not) finds it.
func runPair(ctx context.Context, args []string, vars map[string]string, stdout io.Writer) error {
	if len(args) != 1 || args[0] == "" || args[0][0] == '-' {
		return &config.Error{Msg: "usage: ultimaker2mqtt pair HOST (the printer's IP or host name, optionally :port)"}
	}
	host, err := local.ParseHost(args[0])
	if err != nil {
		return &config.Error{Msg: "pair: " + err.Error()}
	}
	cfg, err := config.Load(vars, false)
	if err != nil {
		return err
	}
	store, err := local.OpenStore(cfg.LocalAuthPath())
	if err != nil {
		return &config.Error{Msg: "LOCAL_AUTH_FILE: " + err.Error()}
	}
	c := local.NewClient(host, 5*time.Second, nil)
	key := ""
	if sys, err := c.System(ctx); err == nil {
		key = topics.Segment(sys.Hostname)
		fmt.Fprintf(stdout, "%s is %s (%s, firmware %s)\n", host, sys.Name, sys.Variant, sys.Firmware)
	} else if !errors.Is(err, local.ErrAuth) {
		return fmt.Errorf("pair: the printer at %s does not answer: %w", host, err)
	}
	req := bridge.PairRequest(cfg)
	cred, err := local.Pair(ctx, c, req, func() {
		fmt.Fprintf(stdout, "Confirm on the printer's screen: press ALLOW for %s (%s). Waiting up to %s…\n",
			req.Application, req.User, req.Timeout)
	})
	if err != nil {
		return err
	}
	for _, k := range []string{host, key} {
		if k != "" {
			if err := store.Put(k, cred); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(stdout, "Paired with %s; the credential is in %s (a running bridge picks it up at its next poll).\n",
		host, store.Path())
	return nil
}
