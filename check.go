package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
)

// runCheck validates the configuration, then reaches the broker, the API
// and the LAN printers and says what it sees (bridge.Check). Any failure
// exits non-zero with the reason.
func runCheck(ctx context.Context, vars map[string]string, stdout io.Writer) error {
	cfg, err := config.Load(vars, true)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "configuration: ok")
	return bridge.Check(ctx, cfg, buildVersion(), stdout)
}
