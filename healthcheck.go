package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
)

// runHealthcheck asks the running bridge's /healthz, for Docker's
// HEALTHCHECK (the image has no curl): exit 0 when healthy.
func runHealthcheck(ctx context.Context, vars map[string]string, stdout io.Writer) error {
	cfg, err := config.Load(vars, false)
	if err != nil {
		return err
	}
	if cfg.HTTPListen == "" {
		return &config.Error{Msg: "healthcheck needs HTTP_LISTEN (the bridge's /healthz address)"}
	}
	host, port, _ := net.SplitHostPort(cfg.HTTPListen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s", body)
	if resp.StatusCode != http.StatusOK {
		return errors.New("healthcheck: unhealthy")
	}
	return nil
}
