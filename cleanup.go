package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), cleanupUsage)
		fs.PrintDefaults()
	}
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

const cleanupUsage = `Usage: ultimaker2mqtt cleanup [-force]

Removes everything the bridge published: every retained topic below
MQTT_BASE_TOPIC and its Home Assistant devices. Stop the bridge first.

Flags:
`
