package main

import (
	"context"
	"io"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
)

// runPair pairs the bridge with a printer on the LAN from a terminal
// (local.PairHost) and keeps the credential in LOCAL_AUTH_FILE, where the
// bridge (running or not) finds it.
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
	return local.PairHost(ctx, host, store, bridge.PairRequest(cfg), stdout)
}
