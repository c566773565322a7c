package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

const clientSecret = "client-s3cret"

// loginWorld is a simulator that is also the account server.
func loginWorld(t *testing.T) (*simulator.Server, string, []string) {
	t.Helper()
	sim := simulator.New(simulator.Options{Seed: 3, ClientID: "u2m-test", ClientSecret: clientSecret})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	env := []string{"ULTIMAKER_ACCOUNT_URL=" + srv.URL, "ULTIMAKER_API_URL=" + srv.URL + simulator.BasePath,
		"ULTIMAKER_CLIENT_ID=u2m-test", "ULTIMAKER_CLIENT_SECRET=" + clientSecret,
		"TOKEN_FILE=" + filepath.Join(t.TempDir(), "token.json"), "LOGIN_CALLBACK_PORT=" + strconv.Itoa(port)}
	return sim, srv.URL, env
}

var authURLRe = regexp.MustCompile(`(?m)^\s+(http\S+/authorize\?\S+)$`)

// login runs `ultimaker2mqtt login` and plays the browser: it opens the
// printed address, and either follows the redirect to the callback
// listener or pastes the final address, as a headless user would.
func login(t *testing.T, env []string, paste bool) string {
	t.Helper()
	out := &syncBuffer{}
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	done := make(chan error, 1)
	go func() { done <- cli(context.Background(), env, pr, out, "login") }()
	var authURL string
	deadline := time.Now().Add(5 * time.Second)
	for authURL == "" && time.Now().Before(deadline) {
		if m := authURLRe.FindStringSubmatch(out.String()); m != nil {
			authURL = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if authURL == "" {
		t.Fatalf("login printed no address:\n%s", out.String())
	}
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	final := resp.Header.Get("Location")
	if paste {
		io.WriteString(pw, "not a url\n"+final+"\n")
	} else if resp, err := http.Get(final); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "Signed in") {
			t.Errorf("callback page: %s", body)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("login: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("login did not finish")
	}
	return out.String()
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestLoginFlow(t *testing.T) {
	for _, paste := range []bool{false, true} {
		t.Run(map[bool]string{false: "Callback", true: "PastedURL"}[paste], func(t *testing.T) {
			sim, _, env := loginWorld(t)
			if paste {
				env = append(env, "LOGIN_PKCE_METHOD=S256")
			}
			out := login(t, env, paste)
			file := envValue(env, "TOKEN_FILE")
			fi, err := os.Stat(file)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("token file: %v %v", err, fi)
			}
			var tok map[string]any
			b, _ := os.ReadFile(file)
			json.Unmarshal(b, &tok)
			for _, k := range []string{"access_token", "token_type", "refresh_token", "expiry"} {
				if tok[k] == nil || tok[k] == "" {
					t.Errorf("token file lacks %s", k)
				}
			}
			if !strings.Contains(out, "User jdoe, workspace Demo Lab") {
				t.Errorf("login output:\n%s", out)
			}
			if strings.Contains(out, clientSecret) || strings.Contains(out, tok["refresh_token"].(string)) {
				t.Error("login printed a secret")
			}
			if st := sim.AccountStats(); st.Logins != 1 {
				t.Errorf("account server saw %+v", st)
			}
		})
	}
}

func TestLoginRejectsForeignState(t *testing.T) {
	_, _, env := loginWorld(t)
	out := &syncBuffer{}
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan error, 1)
	go func() { done <- cli(context.Background(), env, pr, out, "login") }()
	for !strings.Contains(out.String(), "/authorize?") {
		time.Sleep(10 * time.Millisecond)
	}
	io.WriteString(pw, "http://localhost/callback?code=abc&state=forged\n")
	if err := <-done; err == nil || !strings.Contains(err.Error(), "state") {
		t.Fatalf("forged state: %v", err)
	}
}

// The bridge on a token file: a revoked grant shows as auth_required in
// bridge/info and HA's problem entity, polling pauses, and a new login
// brings it back without a restart.
func TestBridgeAuthRequiredAndRecovery(t *testing.T) {
	sim, _, env := loginWorld(t)
	login(t, env, false)
	b := mqtttest.Start(t)
	env = append(slices.Clone(env), "HTTP_LISTEN=", "MQTT_URL="+b.URL(), "MQTT_BASE_TOPIC=oa", "POLL_INTERVAL=1s", "POLL_IDLE_INTERVAL=1s",
		"POLL_CLUSTERS_INTERVAL=1s", "AUTH_RECHECK_INTERVAL=1s", "LOG_FORMAT=json", "LOG_LEVEL=debug")
	watch := mqtttest.Watch(t, b.URL(), "oa/bridge/info")
	_, logs := startBridge(t, env)
	auth := func(m map[string]mqtttest.Message) string {
		var info struct{ Auth string }
		json.Unmarshal([]byte(m["oa/bridge/info"].Payload), &info)
		return info.Auth
	}
	watch.WaitFor(10*time.Second, "signed in", func(m map[string]mqtttest.Message) bool { return auth(m) == "ok" })

	sim.RevokeGrants()
	watch.WaitFor(15*time.Second, "auth_required", func(m map[string]mqtttest.Message) bool { return auth(m) == "auth_required" })
	requests := sim.Requests("")
	time.Sleep(2 * time.Second)
	if n := sim.Requests("") - requests; n != 0 {
		t.Errorf("polling went on while sign-in is required: %d requests", n)
	}
	login(t, env, false)
	watch.WaitFor(10*time.Second, "recovered", func(m map[string]mqtttest.Message) bool { return auth(m) == "ok" })
	deadline := time.Now().Add(10 * time.Second)
	for sim.Requests("") == requests && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if sim.Requests("") == requests {
		t.Error("polling did not resume after the new login")
	}
	tok, _ := os.ReadFile(envValue(env, "TOKEN_FILE"))
	var v struct{ AccessToken, RefreshToken string }
	json.Unmarshal(tok, &struct {
		A *string `json:"access_token"`
		R *string `json:"refresh_token"`
	}{&v.AccessToken, &v.RefreshToken})
	for _, s := range []string{v.AccessToken, v.RefreshToken, clientSecret} {
		if s != "" && strings.Contains(logs.String(), s) {
			t.Error("bridge logs contain a token or the client secret")
		}
	}
	if n := strings.Count(logs.String(), "sign-in expired or revoked"); n != 1 {
		t.Errorf("auth failure logged %d times, want once", n)
	}
}

func TestCheckCommand(t *testing.T) {
	w := newWorld(t, "chk")
	var out syncBuffer
	if err := cli(context.Background(), w.env, nil, &out, "check"); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{"configuration: ok", "broker", "4 clusters, 6 printers", "API root: ok=true", "access check: 4 of 4"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(out.String(), "API token accepted") {
		t.Errorf("check does not say the token was accepted:\n%s", out.String())
	}
	// A wrong token: non-zero, with the reason, and never "accepted"
	// (issue 9.18).
	env := append(slices.Clone(w.env), "ULTIMAKER_API_TOKEN=wrong")
	var wrong syncBuffer
	err := cli(context.Background(), env, nil, &wrong, "check")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "refused the token") {
		t.Errorf("check with a wrong token: %v", err)
	}
	if strings.Contains(wrong.String(), "accepted") {
		t.Errorf("check says a refused token was accepted:\n%s", wrong.String())
	}
	// No broker: non-zero, saying why.
	env = append(slices.Clone(w.env), "MQTT_URL=tcp://127.0.0.1:1")
	if err := cli(context.Background(), env, nil, nil, "check"); err == nil ||
		!strings.Contains(err.Error(), "not reachable") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("check without a broker: %v", err)
	}
}
