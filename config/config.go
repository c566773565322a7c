// Package config reads, checks and documents the bridge's settings, all from environment variables.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Secret is a string that never prints: logs and errors show [redacted].
type Secret string

func (s Secret) String() string { return "[redacted]" }

// MarshalText keeps secrets out of JSON and zerolog output.
func (s Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Reveal returns the secret's value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Config is every setting, read from the environment. The help tags feed
// -h and config.example.env.
type Config struct {
	MQTTURL       string        `env:"MQTT_URL" envDefault:"tcp://localhost:1883" help:"Broker URL: tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://host:port"`
	MQTTUsername  string        `env:"MQTT_USERNAME" help:"Broker user name"`
	MQTTPassword  Secret        `env:"MQTT_PASSWORD" help:"Broker password (or MQTT_PASSWORD_FILE)"`
	MQTTClientID  string        `env:"MQTT_CLIENT_ID" help:"MQTT client id; default ultimaker2mqtt-<base topic>-<host name>, unique per instance; in a group, -<INSTANCE_ID>-<random> is appended"`
	MQTTOutput    string        `env:"MQTT_OUTPUT" envDefault:"json" help:"json (each state as one JSON document), or attribute_and_json: also each value of the printer, cluster and workspace states retained on a topic of its own below the state topic (…/state/job/progress)"`
	MQTTBaseTopic string        `env:"MQTT_BASE_TOPIC" envDefault:"ultimaker" help:"Topic prefix of everything the bridge publishes"`
	MQTTCAFile    string        `env:"MQTT_CA_FILE" help:"PEM CA bundle to trust for ssl:// and wss:// (default: system roots)"`
	MQTTCertFile  string        `env:"MQTT_CERT_FILE" help:"PEM client certificate for TLS client authentication"`
	MQTTKeyFile   string        `env:"MQTT_KEY_FILE" help:"PEM private key of MQTT_CERT_FILE"`
	MQTTKeepAlive time.Duration `env:"MQTT_KEEPALIVE" envDefault:"30s" help:"MQTT keepalive: the broker sends a dead bridge's last will after 1.5 times it without a word; in a group, a member's share is taken over within 1.5 × MQTT_KEEPALIVE + POLL_INTERVAL + 2s (shorter: faster takeover, a ping more often)"`

	InstanceGroup string `env:"INSTANCE_GROUP" help:"Name of a group of bridges that share one account and MQTT_BASE_TOPIC, dealing its clusters and taking over for each other; empty: this bridge works alone"`
	InstanceID    string `env:"INSTANCE_ID" help:"This member's name in INSTANCE_GROUP, unique in the group (lower-case letters, digits, - and _); default: the host name"`

	APIURL       string        `env:"ULTIMAKER_API_URL" envDefault:"https://api.ultimaker.com/connect/v1" help:"Connect API root"`
	APIToken     Secret        `env:"ULTIMAKER_API_TOKEN" help:"Digital Factory API token, sent as a bearer token (or ULTIMAKER_API_TOKEN_FILE); required by run unless printers are read on the LAN only"`
	AccountURL   string        `env:"ULTIMAKER_ACCOUNT_URL" envDefault:"https://account.ultimaker.com" help:"UltiMaker account (OAuth2) server, for login and token refresh"`
	ClientID     string        `env:"ULTIMAKER_CLIENT_ID" help:"OAuth2 client id UltiMaker issued to you; needed by login and TOKEN_FILE sign-in"`
	ClientSecret Secret        `env:"ULTIMAKER_CLIENT_SECRET" help:"OAuth2 client secret, if your client has one (or ULTIMAKER_CLIENT_SECRET_FILE)"`
	TokenFile    string        `env:"TOKEN_FILE" help:"Where login stores the OAuth2 token and the bridge keeps it refreshed; used when ULTIMAKER_API_TOKEN is empty"`
	Scopes       string        `env:"ULTIMAKER_SCOPES" envDefault:"connect.cluster.read connect.cluster.write" help:"OAuth2 scopes login asks for, space-separated"`
	WorkspaceID  string        `env:"ULTIMAKER_WORKSPACE_ID" help:"login only: the workspace (organization_id) to sign in to; empty lets you pick"`
	LoginPort    int           `env:"LOGIN_CALLBACK_PORT" envDefault:"32118" help:"login only: port of the callback listener on 127.0.0.1"`
	LoginPKCE    string        `env:"LOGIN_PKCE_METHOD" envDefault:"S512" help:"login only: PKCE method, S512 (UltiMaker's) or S256"`
	AuthRecheck  time.Duration `env:"AUTH_RECHECK_INTERVAL" envDefault:"1m" help:"While sign-in is required, how often the token file is read again"`
	APITimeout   time.Duration `env:"ULTIMAKER_API_TIMEOUT" envDefault:"20s" help:"Timeout of one Connect API request"`

	PollInterval            time.Duration `env:"POLL_INTERVAL" envDefault:"10s" help:"Cluster status interval while printing or just after a command (the API asks for no more than one status call per 10s)"`
	PollIdleInterval        time.Duration `env:"POLL_IDLE_INTERVAL" envDefault:"60s" help:"Cluster status interval when nothing prints"`
	PollOfflineInterval     time.Duration `env:"POLL_OFFLINE_INTERVAL" envDefault:"5m" help:"Cluster status interval when the cluster is offline"`
	PollClustersInterval    time.Duration `env:"POLL_CLUSTERS_INTERVAL" envDefault:"5m" help:"Interval of the cluster list (new and removed clusters)"`
	PollMaintenanceInterval time.Duration `env:"POLL_MAINTENANCE_INTERVAL" envDefault:"1h" help:"Interval of pending and completed maintenance per cluster"`
	PollReportsInterval     time.Duration `env:"POLL_REPORTS_INTERVAL" envDefault:"1h" help:"Interval of the workspace's usage and the 30-day print-job reports (statistics)"`
	PollBackoffMax          time.Duration `env:"POLL_BACKOFF_MAX" envDefault:"10m" help:"Longest wait between retries of a failing cluster"`
	PollMaxInFlight         int           `env:"POLL_MAX_IN_FLIGHT" envDefault:"4" help:"Most Connect API requests at once"`
	ClusterIDs              []string      `env:"CLUSTER_IDS" help:"Comma-separated cluster ids to bridge; empty bridges every cluster (split big accounts across instances)"`

	LocalPrinters     []string      `env:"LOCAL_PRINTERS" help:"Comma-separated printers to read on the LAN: IP or host name, optionally :port (e.g. 192.168.1.40,ultimakersystem-ccbdd30044ec.local); with only these set, no cloud account is needed"`
	LocalDiscovery    bool          `env:"LOCAL_DISCOVERY" envDefault:"false" help:"Find UltiMaker printers on the LAN by mDNS (_ultimaker._tcp) and read them too (true or false)"`
	LocalPollInterval time.Duration `env:"LOCAL_POLL_INTERVAL" envDefault:"5s" help:"Status interval of each printer on the LAN (one request, two while a job runs)"`
	LocalAuthFile     string        `env:"LOCAL_AUTH_FILE" help:"Where the LAN pairings (digest credentials) are kept, 0600; default local-auth.json beside TOKEN_FILE, else in the working directory (/data/local-auth.json in the image)"`
	LocalPairTimeout  time.Duration `env:"LOCAL_PAIR_TIMEOUT" envDefault:"5m" help:"How long pairing waits for someone to press ALLOW on the printer's screen"`
	LocalForgetAfter  time.Duration `env:"LOCAL_FORGET_AFTER" envDefault:"24h" help:"A printer found by mDNS that neither answers nor is announced for this long is removed (topics and device); LOCAL_PRINTERS are never removed"`

	ReadOnly       bool          `env:"READ_ONLY" envDefault:"false" help:"Answer every command read_only and never send one to the cloud (true or false)"`
	AllowedActions []string      `env:"ALLOWED_ACTIONS" help:"Comma-separated commands to accept (e.g. pause,resume,snapshot); empty accepts all but the destructive delete and delete_team, which run only when listed"`
	CommandTimeout time.Duration `env:"COMMAND_TIMEOUT" envDefault:"60s" help:"How long an asynchronous command may take to settle before it is answered timeout"`
	CommandPoll    time.Duration `env:"COMMAND_POLL_INTERVAL" envDefault:"1s" help:"How often the status of an asynchronous command is checked (the official SDK uses 1s)"`
	MaterialsDir   string        `env:"MATERIALS_DIR" help:"Folder of material profiles that upload_material may send by file name (nothing outside it); empty: content only"`

	HADiscovery       bool          `env:"HA_DISCOVERY" envDefault:"true" help:"Publish Home Assistant MQTT discovery (true or false)"`
	HADiscoveryPrefix string        `env:"HA_DISCOVERY_PREFIX" envDefault:"homeassistant" help:"Home Assistant discovery prefix"`
	HAStatusTopic     string        `env:"HA_STATUS_TOPIC" envDefault:"homeassistant/status" help:"Home Assistant birth topic; on 'online' configs and states are republished"`
	HABirthDelay      time.Duration `env:"HA_BIRTH_DELAY" envDefault:"5s" help:"Wait after Home Assistant's birth message before republishing (HA drops what arrives too early)"`
	HADeviceTriggers  bool          `env:"HA_DEVICE_TRIGGERS" envDefault:"true" help:"Offer a Home Assistant device trigger per print event (true or false); the event entity is there either way"`

	CameraInterval time.Duration `env:"CAMERA_INTERVAL" envDefault:"30s" help:"While a printer whose own camera is read on the LAN prints, a picture is taken this often (0: never; never while idle); one is taken whenever a print ends either way"`

	HTTPListen string `env:"HTTP_LISTEN" help:"Address for the farm's page, its API, /healthz and Prometheus /metrics; unset: 127.0.0.1:8080 (this machine only); :8080 for every address; set empty (or off) to turn them off"`
	WebUI      bool   `env:"WEB_UI" envDefault:"true" help:"Serve the farm's page and its API on HTTP_LISTEN (true or false); /healthz and /metrics stay either way"`
	WebToken   Secret `env:"WEB_TOKEN" help:"Token that unlocks the page's controls and the API's actions (Authorization: Bearer …; or WEB_TOKEN_FILE), at least 16 characters (openssl rand -hex 24 makes one); without it the page is read-only"`
	// The page on a LAN: which names it answers to, whose forwarded
	// address it believes.
	WebAllowedHosts   []string `env:"WEB_ALLOWED_HOSTS" help:"Host names the page and API answer to besides IP addresses, localhost, this machine's name (and <name>.local) and HTTP_LISTEN's host, comma-separated (e.g. printers.lab.example, or *.lab.example for its subdomains): any other Host header gets 421, so a web page cannot reach the bridge by DNS rebinding"`
	WebTrustedProxies []string `env:"WEB_TRUSTED_PROXIES" help:"Reverse proxies in front of the page, comma-separated addresses or CIDR ranges (e.g. 127.0.0.1,10.0.0.0/8): only for requests from them is X-Forwarded-For read for the client's address (rate limits, stream slots); empty: the connection's address"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" help:"trace, debug, info, warn or error"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"auto" help:"auto (console on a terminal, else JSON), json or console"`

	DemoMQTTListen string  `env:"DEMO_MQTT_LISTEN" envDefault:"127.0.0.1:1883" help:"demo only: address of the embedded broker, used unless MQTT_URL is set"`
	DemoSpeed      float64 `env:"DEMO_SPEED" envDefault:"30" help:"demo only: simulated seconds per real second"`
}

// secretVars may also be given as <NAME>_FILE, a path to read.
var secretVars = []string{"MQTT_PASSWORD", "ULTIMAKER_API_TOKEN", "ULTIMAKER_CLIENT_SECRET", "WEB_TOKEN"}

// NothingToBridge is what run says with no way in configured: the three
// ways, the LAN first (it needs no account), and the demo.
const NothingToBridge = `nothing to bridge yet: say where the printers are, one of
  1. printers on your LAN (no account needed):  LOCAL_PRINTERS=192.168.1.40,192.168.1.41  (or LOCAL_DISCOVERY=true)
  2. a Digital Factory API token:                ULTIMAKER_API_TOKEN='umapi-…|main'
  3. signing in to UltiMaker:                    ULTIMAKER_CLIENT_ID=… TOKEN_FILE=… ultimaker2mqtt login
or try it first with simulated printers: ultimaker2mqtt demo    (ultimaker2mqtt -h lists every setting)`

// Error is a bad setting, or bad usage; the process exits 2.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error.
func Errorf(format string, args ...any) error { return &Error{fmt.Sprintf(format, args...)} }

// Load reads the configuration from environ, checks every value (and that
// an API token is given, when requireToken) and returns one error naming
// each bad variable.
func Load(environ map[string]string, requireToken bool) (*Config, error) {
	vars := make(map[string]string, len(environ))
	for k, v := range environ {
		vars[k] = v
	}
	var problems []string
	for _, name := range secretVars {
		path, ok := vars[name+"_FILE"]
		if !ok || path == "" {
			continue
		}
		if vars[name] != "" {
			problems = append(problems, fmt.Sprintf("%s and %s_FILE are both set; use one", name, name))
			continue
		}
		b, err := readSecretFile(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s_FILE: %v", name, err))
			continue
		}
		vars[name] = b
	}
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: vars})
	if err != nil {
		problems = append(problems, envProblems(err)...)
	}
	// HTTP_LISTEN is on unless turned off: unset it takes its default, set
	// empty it is off (the rule "an empty variable takes the default" would
	// leave no way to turn it off).
	switch v, set := vars["HTTP_LISTEN"]; {
	case !set:
		cfg.HTTPListen = DefaultHTTPListen
	case strings.TrimSpace(v) == "" || strings.EqualFold(strings.TrimSpace(v), "off"):
		cfg.HTTPListen = ""
	}
	cfg.normalize()
	// A variable that did not parse holds its zero value: do not report
	// it twice.
	for _, p := range cfg.Problems() {
		name, _, _ := strings.Cut(p, ":")
		if !slices.ContainsFunc(problems, func(q string) bool { return strings.HasPrefix(q, name+":") }) {
			problems = append(problems, p)
		}
	}
	if requireToken && !cfg.UsesLAN() && cfg.APIToken == "" && cfg.TokenFile == "" && !slices.ContainsFunc(problems, func(q string) bool { return strings.HasPrefix(q, "ULTIMAKER_API_TOKEN") }) {
		if len(problems) == 0 && cfg.ClientID == "" {
			return nil, &Error{NothingToBridge}
		}
		problems = append(problems, "ULTIMAKER_API_TOKEN (or ULTIMAKER_API_TOKEN_FILE), or TOKEN_FILE after `ultimaker2mqtt login`, is required")
	}
	if requireToken && !cfg.UsesLAN() && cfg.APIToken == "" && cfg.TokenFile != "" && cfg.ClientID == "" {
		problems = append(problems, "set ULTIMAKER_API_TOKEN, or ULTIMAKER_CLIENT_ID to sign in with TOKEN_FILE (see `ultimaker2mqtt login`)")
	}
	if len(problems) > 0 {
		return nil, &Error{"configuration: " + strings.Join(problems, "; ")}
	}
	return &cfg, nil
}

func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", fmt.Errorf("cannot read %s", path)
	}
	// Files written with echo end in a newline that is not the secret.
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// envProblems turns env's aggregate error into one phrase per variable,
// never echoing a value (it might be a secret).
func envProblems(err error) []string {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			out = append(out, fmt.Sprintf("%s: not a valid %s", varOfField(pe.Name), typeWord(pe.Type)))
			continue
		}
		out = append(out, e.Error())
	}
	return out
}

func varOfField(field string) string {
	if f, ok := reflect.TypeFor[Config]().FieldByName(field); ok {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		return name
	}
	return field
}

func typeWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration (e.g. 10s, 5m, 1h)"
	case t.Kind() == reflect.Int:
		return "whole number"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Bool:
		return "boolean (true or false)"
	}
	return t.String()
}

// normalize trims the list settings: spaces around items and empty items
// are not settings.
func (c *Config) normalize() {
	trim := func(list []string) []string {
		out := list[:0]
		for _, s := range list {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	c.AllowedActions, c.ClusterIDs, c.LocalPrinters = trim(c.AllowedActions), trim(c.ClusterIDs), trim(c.LocalPrinters)
	c.WebAllowedHosts, c.WebTrustedProxies = trim(c.WebAllowedHosts), trim(c.WebTrustedProxies)
	for i, h := range c.WebAllowedHosts {
		c.WebAllowedHosts[i] = strings.TrimSuffix(strings.ToLower(h), ".")
	}
	// Trimmed as WEB_TOKEN_FILE is: a token pasted with a space or a
	// newline is the same token.
	c.WebToken = Secret(strings.TrimSpace(string(c.WebToken)))
}

// DefaultHTTPListen is where the page is served when HTTP_LISTEN is not
// set: this machine only (the container image sets :8080).
const DefaultHTTPListen = "127.0.0.1:8080"

// MinWebToken is the shortest WEB_TOKEN accepted: 16 characters of a
// random hex string are 64 bits, beyond guessing over HTTP.
const MinWebToken = 16

// TrustedProxies parses WEB_TRUSTED_PROXIES (checked by Problems).
func (c *Config) TrustedProxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.WebTrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads an address (a range of one) or a CIDR range.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// MQTT_OUTPUT's values.
const (
	OutputJSON       = "json"
	OutputAttributes = "attribute_and_json"
)

// UsesLAN reports whether printers are read on the LAN.
func (c *Config) UsesLAN() bool { return len(c.LocalPrinters) > 0 || c.LocalDiscovery }

// UsesCloud reports whether the cloud is polled: an API token, or a token
// file with the OAuth client to refresh it.
func (c *Config) UsesCloud() bool { return c.APIToken != "" || c.TokenFile != "" && c.ClientID != "" }

// LocalAuthPath is where the LAN pairings are kept.
func (c *Config) LocalAuthPath() string {
	switch {
	case c.LocalAuthFile != "":
		return c.LocalAuthFile
	case c.TokenFile != "":
		return filepath.Join(filepath.Dir(c.TokenFile), "local-auth.json")
	}
	return "local-auth.json"
}

// Problems lists what is wrong with c, one phrase per variable; it
// changes nothing.
func (c *Config) Problems() []string {
	var p []string
	if err := checkBrokerURL(c.MQTTURL); err != "" {
		p = append(p, "MQTT_URL: "+err)
	}
	if c.MQTTOutput != OutputJSON && c.MQTTOutput != OutputAttributes {
		p = append(p, "MQTT_OUTPUT: json or attribute_and_json")
	}
	if c.MQTTKeepAlive < 2*time.Second || c.MQTTKeepAlive > 10*time.Minute {
		p = append(p, "MQTT_KEEPALIVE: must be between 2s and 10m")
	}
	if len(c.InstanceGroup) > 64 || strings.ContainsFunc(c.InstanceGroup, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		p = append(p, "INSTANCE_GROUP: at most 64 printable characters")
	}
	if c.InstanceID != "" && (topics.Segment(c.InstanceID) != c.InstanceID || len(c.InstanceID) > 64) {
		p = append(p, "INSTANCE_ID: lower-case letters, digits, - and _ only, at most 64")
	}
	if !topics.ValidBase(c.MQTTBaseTopic) {
		p = append(p, "MQTT_BASE_TOPIC: must be non-empty, without + # or empty levels, not starting with $")
	}
	known := slices.Concat(commands.PrinterActions, commands.ClusterActions, commands.BridgeActions, commands.WorkspaceActions)
	for _, a := range c.AllowedActions {
		if !slices.Contains(known, a) {
			p = append(p, fmt.Sprintf("ALLOWED_ACTIONS: unknown action %q (known: %s)", a, strings.Join(known, ", ")))
		}
	}
	if c.CommandTimeout < time.Second || c.CommandTimeout > 10*time.Minute {
		p = append(p, "COMMAND_TIMEOUT: must be between 1s and 10m")
	}
	if c.CommandPoll < 10*time.Millisecond || c.CommandPoll > time.Minute {
		p = append(p, "COMMAND_POLL_INTERVAL: must be between 10ms and 1m")
	}
	if u, err := url.Parse(c.AccountURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p = append(p, "ULTIMAKER_ACCOUNT_URL: want http(s)://host")
	}
	if c.LoginPort < 1 || c.LoginPort > 65535 {
		p = append(p, "LOGIN_CALLBACK_PORT: must be 1 to 65535")
	}
	if c.LoginPKCE != "S512" && c.LoginPKCE != "S256" {
		p = append(p, "LOGIN_PKCE_METHOD: want S512 or S256")
	}
	if c.AuthRecheck < time.Second || c.AuthRecheck > time.Hour {
		p = append(p, "AUTH_RECHECK_INTERVAL: must be between 1s and 1h")
	}
	if !topics.ValidBase(c.HADiscoveryPrefix) {
		p = append(p, "HA_DISCOVERY_PREFIX: must be non-empty, without + # or empty levels, not starting with $")
	}
	if !topics.ValidBase(c.HAStatusTopic) {
		p = append(p, "HA_STATUS_TOPIC: must be a topic without wildcards or empty levels")
	}
	if c.HABirthDelay < 0 || c.HABirthDelay > 5*time.Minute {
		p = append(p, "HA_BIRTH_DELAY: must be between 0s and 5m")
	}
	if (c.MQTTCertFile == "") != (c.MQTTKeyFile == "") {
		p = append(p, "MQTT_CERT_FILE and MQTT_KEY_FILE: set both or neither")
	}
	for _, f := range []struct{ name, path string }{{"MQTT_CA_FILE", c.MQTTCAFile}, {"MQTT_CERT_FILE", c.MQTTCertFile}, {"MQTT_KEY_FILE", c.MQTTKeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				p = append(p, f.name+": cannot read "+f.path)
			}
		}
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p = append(p, "ULTIMAKER_API_URL: want http(s)://host/path")
	}
	durations := []struct {
		name string
		d    time.Duration
		min  time.Duration
	}{
		{"ULTIMAKER_API_TIMEOUT", c.APITimeout, time.Second},
		{"POLL_INTERVAL", c.PollInterval, 100 * time.Millisecond},
		{"POLL_IDLE_INTERVAL", c.PollIdleInterval, 100 * time.Millisecond},
		{"POLL_OFFLINE_INTERVAL", c.PollOfflineInterval, 100 * time.Millisecond},
		{"POLL_CLUSTERS_INTERVAL", c.PollClustersInterval, 100 * time.Millisecond},
		{"POLL_MAINTENANCE_INTERVAL", c.PollMaintenanceInterval, 100 * time.Millisecond},
		{"POLL_REPORTS_INTERVAL", c.PollReportsInterval, time.Second},
		{"POLL_BACKOFF_MAX", c.PollBackoffMax, 100 * time.Millisecond},
	}
	for _, d := range durations {
		if d.d < d.min {
			p = append(p, fmt.Sprintf("%s: must be at least %s", d.name, d.min))
		}
	}
	if c.PollMaxInFlight < 1 || c.PollMaxInFlight > 64 {
		p = append(p, "POLL_MAX_IN_FLIGHT: must be 1 to 64")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		p = append(p, "LOG_LEVEL: "+err.Error())
	}
	if !slices.Contains([]string{"auto", "json", "console"}, c.LogFormat) {
		p = append(p, "LOG_FORMAT: want auto, json or console")
	}
	if c.MaterialsDir != "" {
		if fi, err := os.Stat(c.MaterialsDir); err != nil || !fi.IsDir() {
			p = append(p, "MATERIALS_DIR: "+c.MaterialsDir+" is not a readable folder")
		}
	}
	if c.CameraInterval != 0 && c.CameraInterval < time.Second {
		p = append(p, "CAMERA_INTERVAL: 0 (off) or at least 1s")
	}
	if c.HTTPListen != "" {
		if _, port, err := net.SplitHostPort(c.HTTPListen); err != nil || port == "" {
			p = append(p, "HTTP_LISTEN: want host:port or :port")
		}
	}
	if n := len([]rune(string(c.WebToken))); n > 0 && n < MinWebToken {
		p = append(p, fmt.Sprintf("WEB_TOKEN: at least %d characters, it has %d (make one with: openssl rand -hex 24)",
			MinWebToken, n))
	}
	for _, h := range c.WebAllowedHosts {
		if !validHostPattern(h) {
			p = append(p, fmt.Sprintf("WEB_ALLOWED_HOSTS: %q is not a host name (letters, digits, - and ., or *.name)", h))
		}
	}
	for _, s := range c.WebTrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			p = append(p, fmt.Sprintf("WEB_TRUSTED_PROXIES: %q is not an address or CIDR range", s))
		}
	}
	for _, h := range c.LocalPrinters {
		if _, err := local.ParseHost(h); err != nil {
			p = append(p, "LOCAL_PRINTERS: "+err.Error())
		}
	}
	if c.LocalPollInterval < 100*time.Millisecond || c.LocalPollInterval > time.Hour {
		p = append(p, "LOCAL_POLL_INTERVAL: must be between 100ms and 1h")
	}
	if c.LocalForgetAfter < time.Second {
		p = append(p, "LOCAL_FORGET_AFTER: must be at least 1s")
	}
	if c.LocalPairTimeout < time.Second || c.LocalPairTimeout > time.Hour {
		p = append(p, "LOCAL_PAIR_TIMEOUT: must be between 1s and 1h")
	}
	if c.DemoSpeed <= 0 || c.DemoSpeed > 10000 {
		p = append(p, "DEMO_SPEED: must be above 0 and at most 10000")
	}
	return p
}

// validHostPattern reports whether h is a host name, or *. and one.
func validHostPattern(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func checkBrokerURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "want scheme://host:port"
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps", "ws", "wss":
		return ""
	}
	return "scheme " + u.Scheme + " not supported"
}

// ParseLevel accepts the five levels we document. zerolog's own parser
// maps "" to NoLevel, which silently drops every message.
func ParseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "trace", "debug", "info", "warn", "error":
		return zerolog.ParseLevel(s)
	}
	return zerolog.NoLevel, errors.New("want trace, debug, info, warn or error")
}

// Var describes one variable for -h and the example file.
type Var struct{ Name, Default, Help string }

// Vars lists every variable, from the struct tags, secrets' _FILE forms
// included.
func Vars() []Var {
	var out []Var
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		out = append(out, Var{name, f.Tag.Get("envDefault"), f.Tag.Get("help")})
		if slices.Contains(secretVars, name) {
			out = append(out, Var{name + "_FILE", "", "Path of a file holding " + name + " (Docker secrets)"})
		}
	}
	return out
}

// Help writes every variable with its meaning and default, for -h.
func Help(w io.Writer) {
	fmt.Fprintln(w, "Environment variables:")
	for _, v := range Vars() {
		def := v.Default
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(w, "  %-26s %s\n  %-26s default: %s\n", v.Name, v.Help, "", def)
	}
}

// Logger is the root logger these settings ask for: JSON, or readable
// lines on a terminal (LOG_FORMAT), at LOG_LEVEL.
func (c *Config) Logger(w io.Writer) zerolog.Logger {
	lvl, _ := ParseLevel(c.LogLevel) // checked in Load
	console := c.LogFormat == "console"
	if c.LogFormat == "auto" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			console = true
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// Grouped reports whether this bridge is a member of an INSTANCE_GROUP.
func (c *Config) Grouped() bool { return c.InstanceGroup != "" }

// Instance is INSTANCE_ID, or the host name made a topic segment.
func (c *Config) Instance() string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	host, _ := os.Hostname()
	if id := topics.Segment(host); id != "" {
		return id[:min(len(id), 64)]
	}
	return "bridge"
}

// processTag tells this process's broker connections from another's
// with the same INSTANCE_ID.
var processTag = func() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

// BrokerClientID is MQTT_CLIENT_ID, or one stable across restarts and
// distinct per host (per member, in a group) and base topic, so two
// instances never kick each other off the broker (in a group, one per
// process).
func (c *Config) BrokerClientID() string {
	if c.MQTTClientID != "" {
		if c.Grouped() {
			// The members share their settings: each its own client. Two
			// processes given one INSTANCE_ID must not take each other's
			// connection either (the group refuses the second one).
			return c.MQTTClientID + "-" + c.Instance() + "-" + processTag
		}
		return c.MQTTClientID
	}
	host, _ := os.Hostname()
	host = topics.Segment(host)
	if c.Grouped() {
		host = c.Instance() + "-" + processTag
	}
	id := "ultimaker2mqtt-" + topics.Segment(c.MQTTBaseTopic) + "-" + host
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}
