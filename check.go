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
		why := "no answer within 8s"
		if err := mq.LastConnectError(); err != nil {
			why = redact(err.Error())
		}
		return fmt.Errorf("broker %s: not reachable: %s (check MQTT_URL, credentials and TLS settings)", redact(cfg.MQTTURL), why)
	}
	fmt.Fprintf(stdout, "broker %s: ok\n", redact(cfg.MQTTURL))

	// Each sign-in line is printed only once the API accepted the token.
	var ts oauth2.TokenSource
	var signedIn []string
	if cfg.APIToken != "" {
		ts = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: cfg.APIToken.Reveal(), TokenType: "Bearer"})
		signedIn = append(signedIn, "sign-in: API token accepted")
	} else {
		src := auth.NewSource(auth.Config{OAuth: oauthConfig(cfg), TokenFile: cfg.TokenFile}, log)
		tok, err := src.Token()
		if err != nil {
			return fmt.Errorf("sign-in: %v", err)
		}
		ts = src
		signedIn = append(signedIn, fmt.Sprintf("sign-in: token file %s accepted", cfg.TokenFile))
		if who := whoAmI(ctx, cfg.AccountURL, tok.AccessToken); who != "" {
			signedIn = append(signedIn, who)
		}
	}
	api, err := connect.New(connect.Options{BaseURL: cfg.APIURL, TokenSource: ts, Timeout: cfg.APITimeout, UserAgent: "ultimaker2mqtt/" + buildVersion()})
	if err != nil {
		return &configError{"ULTIMAKER_API_URL: " + err.Error()}
	}
	clusters, err := api.Clusters(ctx)
	if err != nil {
		if connect.KindOf(err) == connect.KindAuth {
			return fmt.Errorf("sign-in: the Connect API refused the token: %w", err)
		}
		return fmt.Errorf("Connect API %s: %w", cfg.APIURL, err)
	}
	for _, l := range signedIn {
		fmt.Fprintln(stdout, l)
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
