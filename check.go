package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/auth"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
)

func decodeLimited(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(v)
}

// runCheck validates the configuration, reaches the broker and the API,
// and says what it sees. Any failure exits non-zero with the reason.
func runCheck(ctx context.Context, vars map[string]string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(vars, true)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "configuration: ok")
	log := newLogger(cfg, io.Discard)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	mq, err := mqttpub.New(mqttpub.Config{URL: cfg.MQTTURL, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword.Reveal(),
		ClientID: clientID(cfg) + "-check", CAFile: cfg.MQTTCAFile, CertFile: cfg.MQTTCertFile, KeyFile: cfg.MQTTKeyFile,
		ConnectTimeout: 5 * time.Second}, log)
	if err != nil {
		return &configError{"MQTT_URL: " + err.Error()}
	}
	mctx, stop := context.WithTimeout(ctx, 8*time.Second)
	done := make(chan error, 1)
	go func() { done <- mq.Run(mctx) }()
	for !mq.Connected() && mctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	connected := mq.Connected()
	stop()
	<-done
	if !connected {
		return fmt.Errorf("broker %s: not reachable (check MQTT_URL, credentials and TLS settings)", redact(cfg.MQTTURL))
	}
	fmt.Fprintf(stdout, "broker %s: ok\n", redact(cfg.MQTTURL))

	var ts oauth2.TokenSource
	if cfg.APIToken != "" {
		ts = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: cfg.APIToken.Reveal()})
		fmt.Fprintln(stdout, "sign-in: API token")
	} else {
		src := auth.NewSource(auth.Config{OAuth: oauthConfig(cfg), TokenFile: cfg.TokenFile}, log)
		tok, err := src.Token()
		if err != nil {
			return fmt.Errorf("sign-in: %v", err)
		}
		ts = src
		fmt.Fprintf(stdout, "sign-in: token file %s\n", cfg.TokenFile)
		if who := whoAmI(ctx, cfg.AccountURL, tok.AccessToken); who != "" {
			fmt.Fprintln(stdout, who)
		}
	}
	api, err := connect.New(connect.Options{BaseURL: cfg.APIURL, TokenSource: ts, Timeout: cfg.APITimeout, UserAgent: "ultimaker2mqtt/" + buildVersion()})
	if err != nil {
		return &configError{"ULTIMAKER_API_URL: " + err.Error()}
	}
	clusters, err := api.Clusters(ctx)
	if err != nil {
		return fmt.Errorf("Connect API %s: %w", cfg.APIURL, err)
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
