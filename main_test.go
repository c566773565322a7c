package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testlog"
)

// syncBuffer is where a test reads what a command writes while it runs.
type syncBuffer = testlog.Buffer

const testToken = "umapi-test-secret-token|main"

func TestConfigErrors(t *testing.T) {
	// A listener that must never see a connection: config errors are
	// reported before anything connects.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	okEnv := []string{"MQTT_URL=tcp://" + ln.Addr().String(), "ULTIMAKER_API_TOKEN=" + testToken}
	secretFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(secretFile, []byte(testToken+"\n"), 0o600)
	tests := []struct {
		name  string
		env   []string
		names []string // variables the message must name
	}{
		{"MissingTokenWithAClientID", []string{"MQTT_URL=tcp://" + ln.Addr().String(), "ULTIMAKER_CLIENT_ID=x"},
			[]string{"ULTIMAKER_API_TOKEN"}},
		{"DurationWithoutUnit", append(slices.Clone(okEnv), "POLL_INTERVAL=5"), []string{"POLL_INTERVAL"}},
		{"OpaqueBrokerURL", append(slices.Clone(okEnv), "MQTT_URL=localhost:1883"), []string{"MQTT_URL"}},
		{"HTTPBroker", append(slices.Clone(okEnv), "MQTT_URL=http://localhost:1883"), []string{"MQTT_URL"}},
		{"BadLevel", append(slices.Clone(okEnv), "LOG_LEVEL=verbose"), []string{"LOG_LEVEL"}},
		{"BadFormat", append(slices.Clone(okEnv), "LOG_FORMAT=xml"), []string{"LOG_FORMAT"}},
		{"WildcardBase", append(slices.Clone(okEnv), "MQTT_BASE_TOPIC=a/#"), []string{"MQTT_BASE_TOPIC"}},
		{"BadAPIURL", append(slices.Clone(okEnv), "ULTIMAKER_API_URL=api.ultimaker.com"), []string{"ULTIMAKER_API_URL"}},
		{"NotANumber", append(slices.Clone(okEnv), "POLL_MAX_IN_FLIGHT=many"), []string{"POLL_MAX_IN_FLIGHT"}},
		{"TooSmall", append(slices.Clone(okEnv), "POLL_INTERVAL=1ms"), []string{"POLL_INTERVAL"}},
		{"MissingSecretFile", []string{"MQTT_URL=tcp://" + ln.Addr().String(), "ULTIMAKER_API_TOKEN_FILE=/nonexistent/token"}, []string{"ULTIMAKER_API_TOKEN_FILE"}},
		{"BothSecretAndFile", append(slices.Clone(okEnv), "ULTIMAKER_API_TOKEN_FILE="+secretFile), []string{"ULTIMAKER_API_TOKEN"}},
		{"CertWithoutKey", append(slices.Clone(okEnv), "MQTT_CERT_FILE="+secretFile), []string{"MQTT_CERT_FILE", "MQTT_KEY_FILE"}},
		{"ShortWebToken", append(slices.Clone(okEnv), "WEB_TOKEN=a"), []string{"WEB_TOKEN", "16", "openssl rand"}},
		{"ShortWebTokenPadded", append(slices.Clone(okEnv), "WEB_TOKEN=  short token \n"), []string{"WEB_TOKEN"}},
		{"BadAllowedHost", append(slices.Clone(okEnv), "WEB_ALLOWED_HOSTS=ok.example,http://x/"), []string{"WEB_ALLOWED_HOSTS"}},
		{"BadTrustedProxy", append(slices.Clone(okEnv), "WEB_TRUSTED_PROXIES=10.0.0.0/33"), []string{"WEB_TRUSTED_PROXIES"}},
		{"UnknownCommand", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := []string{"ultimaker2mqtt", "run"}
			if tt.name == "UnknownCommand" {
				args = []string{"ultimaker2mqtt", "frobnicate"}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := run(ctx, args, tt.env, &bytes.Buffer{}, &stderr)
			code := exitCode(err, &stderr)
			if code != 2 {
				t.Fatalf("exit code %d, want 2 (err %v)", code, err)
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Count(out, "\n") != 0 {
				t.Errorf("want one line, got:\n%s", out)
			}
			for _, n := range tt.names {
				if !strings.Contains(out, n) {
					t.Errorf("message does not name %s: %s", n, out)
				}
			}
			if strings.Contains(out, testToken) {
				t.Errorf("message leaks the token: %s", out)
			}
		})
	}
	select {
	case <-accepted:
		t.Error("something connected to the broker despite a configuration error")
	case <-time.After(100 * time.Millisecond):
	}
}

// With no way in configured, run says the three ways (the LAN first: it
// needs no account) and the demo, and connects nothing.
func TestNothingConfiguredSaysTheWaysIn(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"ultimaker2mqtt"}, []string{"MQTT_URL=tcp://127.0.0.1:1"}, &bytes.Buffer{}, &stderr)
	if code := exitCode(err, &stderr); code != 2 {
		t.Fatalf("exit %d (%v)", code, err)
	}
	out := stderr.String()
	lan, token, login, demo := strings.Index(out, "LOCAL_PRINTERS"), strings.Index(out, "ULTIMAKER_API_TOKEN"),
		strings.Index(out, "login"), strings.Index(out, "demo")
	if lan < 0 || token < lan || login < token || demo < login {
		t.Errorf("want the LAN, the token, login and the demo, in that order:\n%s", out)
	}
}

// Every subcommand answers -h and --help with its usage, exit 0, and does
// nothing else (nothing listens, nothing connects).
func TestEverySubcommandHasHelp(t *testing.T) {
	for _, cmd := range []string{"run", "demo", "simulate", "login", "pair", "check", "healthcheck", "cleanup", "version"} {
		for _, flag := range []string{"-h", "--help"} {
			t.Run(cmd+flag, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				// A broker and an address that would fail if anything were tried.
				err := run(ctx, []string{"ultimaker2mqtt", cmd, flag}, []string{"MQTT_URL=tcp://127.0.0.1:1", "HTTP_LISTEN=127.0.0.1:1"},
					&stdout, &stderr)
				if code := exitCode(err, &bytes.Buffer{}); code != 0 {
					t.Errorf("exit %d: %v", code, err)
				}
				if !strings.Contains(stdout.String(), "Usage: ultimaker2mqtt "+map[string]string{"run": "[run]"}[cmd]) &&
					!strings.Contains(stdout.String(), "Usage: ultimaker2mqtt "+cmd) {
					t.Errorf("stdout %q, want its usage", stdout.String())
				}
				if stderr.Len() > 0 {
					t.Errorf("stderr %q", stderr.String())
				}
			})
		}
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"ultimaker2mqtt", "-h"}, nil, &out, &bytes.Buffer{})
	if exitCode(err, &bytes.Buffer{}) != 0 {
		t.Fatalf("-h: %v", err)
	}
	for _, v := range config.Vars() {
		if !strings.Contains(out.String(), v.Name) {
			t.Errorf("-h does not mention %s", v.Name)
		}
	}
}
