package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// runCleanup removes everything the bridge ever published: every retained
// topic below the base topic and this bridge's Home Assistant devices.
// For users who uninstall; stop the bridge first, or it publishes again.
func runCleanup(ctx context.Context, vars map[string]string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(vars, false)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	tree := topics.Tree{Base: cfg.MQTTBaseTopic}
	disc := discovery.Config{Prefix: cfg.HADiscoveryPrefix, Tree: tree}
	// No state topic: this client must not announce itself as the bridge.
	mq, err := mqttpub.New(mqttpub.Config{
		URL: cfg.MQTTURL, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword.Reveal(),
		ClientID: clientID(cfg) + "-cleanup", CAFile: cfg.MQTTCAFile, CertFile: cfg.MQTTCertFile, KeyFile: cfg.MQTTKeyFile,
	}, log)
	if err != nil {
		return &configError{"MQTT_URL: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mq.Run(runCtx) }()
	defer func() { stop(); <-done }()
	for !mq.Connected() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cleanup: broker %s not reachable", redact(cfg.MQTTURL))
		case <-time.After(50 * time.Millisecond):
		}
	}
	found, err := mq.RetainedTopics(ctx, []string{tree.Base + "/#", disc.DeviceFilter()}, 2*time.Second)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	var clear []string
	for _, t := range found {
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
