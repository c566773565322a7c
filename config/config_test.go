package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const testToken = "umapi-test-secret-token|main"

func TestEmptyVariableTakesDefault(t *testing.T) {
	cfg, err := Load(map[string]string{"LOG_LEVEL": "", "POLL_INTERVAL": ""}, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevel != "info" || cfg.PollInterval != 10*time.Second {
		t.Errorf("defaults not applied: %q %s", cfg.LogLevel, cfg.PollInterval)
	}
}

func TestSecretFileIsTrimmed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	os.WriteFile(path, []byte("  "+testToken+"\n"), 0o600)
	cfg, err := Load(map[string]string{"ULTIMAKER_API_TOKEN_FILE": path}, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIToken.Reveal() != testToken {
		t.Errorf("token %q", cfg.APIToken.Reveal())
	}
	if fmt.Sprint(cfg.APIToken) != "[redacted]" || fmt.Sprintf("%+v", *cfg) == "" || strings.Contains(fmt.Sprintf("%+v", *cfg), testToken) {
		t.Errorf("secret prints: %+v", *cfg)
	}
}

// The example file lists every variable the code reads, and nothing else.
func TestConfigExampleMatches(t *testing.T) {
	b, err := os.ReadFile("../config.example.env")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^#?\s?([A-Z][A-Z0-9_]+)=`)
	var inFile []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		inFile = append(inFile, m[1])
	}
	var inCode []string
	for _, v := range Vars() {
		inCode = append(inCode, v.Name)
		if !slices.Contains(inFile, v.Name) {
			t.Errorf("config.example.env lacks %s", v.Name)
		}
	}
	for _, n := range inFile {
		if !slices.Contains(inCode, n) {
			t.Errorf("config.example.env lists %s, which the code does not read", n)
		}
	}
}

// TestProblemsChangesNothing: checking a configuration does not alter it
// (issue 10: validate without mutating).
func TestProblemsChangesNothing(t *testing.T) {
	cfg, err := Load(map[string]string{"ALLOWED_ACTIONS": " pause , ,resume", "CLUSTER_IDS": "a, b"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.AllowedActions, []string{"pause", "resume"}) || !slices.Equal(cfg.ClusterIDs, []string{"a", "b"}) {
		t.Errorf("lists not trimmed: %q %q", cfg.AllowedActions, cfg.ClusterIDs)
	}
	before := *cfg
	before.AllowedActions, before.ClusterIDs = slices.Clone(cfg.AllowedActions), slices.Clone(cfg.ClusterIDs)
	cfg.AllowedActions = append(cfg.AllowedActions, "explode")
	before.AllowedActions = append(before.AllowedActions, "explode")
	if p := cfg.Problems(); len(p) != 1 || !strings.Contains(p[0], "explode") {
		t.Errorf("problems %q", p)
	}
	if !reflect.DeepEqual(*cfg, before) {
		t.Errorf("Problems changed the configuration")
	}
}

// WEB_TOKEN is trimmed as WEB_TOKEN_FILE is: the same token either way.
func TestWebTokenTrimmed(t *testing.T) {
	cfg, err := Load(map[string]string{"WEB_TOKEN": "  0123456789abcdef0123\n", "LOCAL_PRINTERS": "192.0.2.1"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebToken.Reveal() != "0123456789abcdef0123" {
		t.Errorf("WEB_TOKEN %q, want it trimmed", cfg.WebToken.Reveal())
	}
	if p := cfg.TrustedProxies(); len(p) != 0 {
		t.Errorf("trusted proxies %v without WEB_TRUSTED_PROXIES", p)
	}
	cfg, err = Load(map[string]string{"WEB_TRUSTED_PROXIES": "127.0.0.1, 10.1.0.0/16", "LOCAL_PRINTERS": "192.0.2.1"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.TrustedProxies(); len(p) != 2 || p[0].String() != "127.0.0.1/32" || p[1].String() != "10.1.0.0/16" {
		t.Errorf("trusted proxies %v", p)
	}
}
