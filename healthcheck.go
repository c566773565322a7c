package main

import (
	"context"
	"io"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/monitor"
)

// runHealthcheck asks the running bridge's /healthz (monitor.Probe), for
// Docker's HEALTHCHECK (the image has no curl): exit 0 when healthy.
func runHealthcheck(ctx context.Context, vars map[string]string, stdout io.Writer) error {
	cfg, err := config.Load(vars, false)
	if err != nil {
		return err
	}
	if cfg.HTTPListen == "" {
		return &config.Error{Msg: "healthcheck needs HTTP_LISTEN (the bridge's /healthz address)"}
	}
	return monitor.Probe(ctx, cfg.HTTPListen, stdout)
}
