package main

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
)

// runCleanup removes everything the bridge ever published: every retained
// topic below the base topic and this bridge's Home Assistant devices.
// For users who uninstall; stop the bridge first, or it publishes again.
func runCleanup(ctx context.Context, args []string, vars map[string]string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	force := fs.Bool("force", false, "clear even while a bridge with this base topic says it is online")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &config.Error{Msg: "cleanup: " + err.Error()}
	}
	cfg, err := config.Load(vars, false)
	if err != nil {
		return err
	}
	return bridge.Cleanup(ctx, cfg, *force, stdout, stderr)
}
