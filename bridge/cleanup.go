package bridge

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Cleanup removes everything a bridge with cfg ever published: every
// retained topic below the base topic and its Home Assistant devices. It
// refuses while such a bridge says it is online (it would publish it all
// again at once), unless force. It logs to stderr and reports to stdout.
func Cleanup(ctx context.Context, cfg *config.Config, force bool, stdout, stderr io.Writer) error {
	log := cfg.Logger(stderr)
	tree := topics.Tree{Base: cfg.MQTTBaseTopic}
	disc := discovery.Config{Prefix: cfg.HADiscoveryPrefix, Tree: tree}
	// Not the bridge's own client: it must not announce itself as the bridge.
	mq, err := mqttpub.New(MQTTConfig(cfg, "cleanup"), log)
	if err != nil {
		return config.Errorf("MQTT_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stop, err := Connect(ctx, mq, 10*time.Second)
	defer stop()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	found, err := mq.Retained(ctx, []string{tree.All(), disc.DeviceFilter()}, 2*time.Second)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	// A running bridge would publish everything again at once, and its
	// users would lose their devices for nothing.
	if string(found[tree.BridgeState()]) == topics.Online && !force {
		return fmt.Errorf("cleanup: a bridge with base topic %s is online (%s says so); stop it first, or run cleanup -force",
			tree.Base, tree.BridgeState())
	}
	var clear []string
	for t := range found {
		if strings.HasPrefix(t, tree.Base+"/") || disc.Ours(t) {
			clear = append(clear, t)
		}
	}
	n, err := mq.ClearUnknown(ctx, clear)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Fprintf(stdout, "cleared %d retained topics below %s/ and %s/device/\n", n, tree.Base, cfg.HADiscoveryPrefix)
	return nil
}
