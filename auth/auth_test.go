package auth_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/auth"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/testclock"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

type rig struct {
	sim   *simulator.Server
	srv   *httptest.Server
	clock *testclock.Clock
	oc    *oauth2.Config
	file  string
	logs  *bytes.Buffer
}

const secret = "s3cr3t-client-secret"

func newRig(t *testing.T) *rig {
	t.Helper()
	clk := testclock.New(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	sim := simulator.New(simulator.Options{Now: clk.Now, ClientID: "bridge-client", ClientSecret: secret})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	r := &rig{sim: sim, srv: srv, clock: clk, file: filepath.Join(t.TempDir(), "token.json"), logs: &bytes.Buffer{},
		oc: &oauth2.Config{ClientID: "bridge-client", ClientSecret: secret, Endpoint: auth.Endpoint(srv.URL),
			RedirectURL: "http://localhost:32118/callback", Scopes: []string{"connect.cluster.read", "connect.cluster.write"}}}
	r.login(t)
	return r
}

// login runs the authorization-code flow with PKCE (S512) against the
// simulator, following its redirect by hand, and saves the token file.
func (r *rig) login(t *testing.T) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	u := r.oc.AuthCodeURL("st4te", oauth2.SetAuthURLParam("code_challenge", auth.Challenge("S512", verifier)),
		oauth2.SetAuthURLParam("code_challenge_method", "S512"))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("state") != "st4te" {
		t.Fatalf("redirect %s", loc)
	}
	tok, err := r.oc.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	tok.Expiry = r.clock.Now().Add(time.Duration(tok.ExpiresIn) * time.Second) // the simulated clock
	if err := auth.SaveToken(r.file, tok); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) source() *auth.Source {
	return auth.NewSource(auth.Config{OAuth: r.oc, TokenFile: r.file, Now: r.clock.Now}, zerolog.New(r.logs))
}

func (r *rig) client(t *testing.T, ts oauth2.TokenSource) *connect.Client {
	t.Helper()
	c, err := connect.New(connect.Options{BaseURL: r.srv.URL + simulator.BasePath, TokenSource: ts, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *rig) noSecretsLogged(t *testing.T) {
	t.Helper()
	tok, err := auth.LoadToken(r.file)
	if err != nil {
		return
	}
	for _, s := range []string{tok.AccessToken, tok.RefreshToken, secret, "sim-refresh-", "sim-access-"} {
		if s != "" && strings.Contains(r.logs.String(), s) {
			t.Errorf("logs contain a token or secret (%.12s…)", s)
		}
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.json")
	tok := &oauth2.Token{AccessToken: "a", RefreshToken: "r", TokenType: "bearer", Expiry: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := auth.SaveToken(path, tok); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := auth.LoadToken(path)
	if err != nil || got.RefreshToken != "r" || !got.Expiry.Equal(tok.Expiry) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	b, _ := os.ReadFile(path)
	for _, k := range []string{`"access_token"`, `"token_type"`, `"refresh_token"`, `"expiry": "2026-01-01T00:00:00Z"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("file lacks %s: %s", k, b)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	for name, body := range map[string]string{"corrupt": `{"access_token": "SECRET-A`, "norefresh": `{"access_token":"SECRET-A"}`, "array": `[]`} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		_, err := auth.LoadToken(p)
		if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "login") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := auth.LoadToken(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "login") {
		t.Errorf("missing: %v", err)
	}
}

// A day of 10-minute tokens, with a restart half-way: every period the
// bridge polls once. No refresh may fail or reuse a token.
func TestDayOfRefreshes(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	refreshes := 0
	for half := range 2 {
		src := r.source() // a restart: the file carries over
		c := r.client(t, src)
		for range 72 {
			r.clock.Add(10 * time.Minute)
			if _, err := c.Clusters(ctx); err != nil {
				t.Fatalf("half %d: %v", half, err)
			}
		}
		refreshes += src.Refreshes()
		if src.State() != auth.StateOK {
			t.Fatalf("state %s", src.State())
		}
	}
	st := r.sim.AccountStats()
	if refreshes != 144 || st.Refreshes != 144 || st.Replays != 0 || st.Refused != 0 {
		t.Errorf("bridge refreshed %d times; server saw %+v; want 144 refreshes, no replay, none refused", refreshes, st)
	}
	t.Logf("24 h of 10-minute tokens: %d refreshes, %d refused, %d replayed", st.Refreshes, st.Refused, st.Replays)
	r.noSecretsLogged(t)
}

func TestConcurrentRequestsShareOneRefresh(t *testing.T) {
	r := newRig(t)
	src := r.source()
	c := r.client(t, src)
	ctx := context.Background()
	if _, err := c.Clusters(ctx); err != nil {
		t.Fatal(err)
	}
	before := r.sim.AccountStats().Refreshes
	r.clock.Add(10 * time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Clusters(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := r.sim.AccountStats(); st.Refreshes-before != 1 || st.Replays != 0 {
		t.Errorf("20 concurrent requests made %d refreshes (%+v), want 1", st.Refreshes-before, st)
	}
}

func TestTokenExpiringMidPoll(t *testing.T) {
	r := newRig(t)
	src := r.source()
	c := r.client(t, src)
	ctx := context.Background()
	tok, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	// The API declares the token expired before its time (403 tokenExpired):
	// one refresh, one retry, success.
	r.sim.ExpireToken(tok.AccessToken)
	if _, err := c.Clusters(ctx); err != nil {
		t.Fatalf("request after early expiry: %v", err)
	}
	if n := src.Refreshes(); n != 1 { // the login's token was fresh; the retry refreshed
		t.Errorf("%d refreshes, want 1", n)
	}
}

func TestReplayedRefreshTokenRevokes(t *testing.T) {
	r := newRig(t)
	stolen, _ := auth.LoadToken(r.file)
	src := r.source()
	r.clock.Add(10 * time.Minute)
	if _, err := src.Token(); err != nil { // rotates: stolen.RefreshToken is now old
		t.Fatal(err)
	}
	// Someone replays the old refresh token: the server revokes the grant.
	if _, err := r.oc.TokenSource(context.Background(), &oauth2.Token{RefreshToken: stolen.RefreshToken}).Token(); err == nil {
		t.Fatal("replayed refresh token accepted")
	}
	r.clock.Add(10 * time.Minute)
	if _, err := src.Token(); err != auth.ErrAuthRequired {
		t.Fatalf("after revocation: %v, want ErrAuthRequired", err)
	}
	if st := r.sim.AccountStats(); st.Replays != 1 {
		t.Errorf("server saw %d replays", st.Replays)
	}
}

func TestRevokedGrantThenNewLogin(t *testing.T) {
	r := newRig(t)
	states := make(chan string, 4)
	src := auth.NewSource(auth.Config{OAuth: r.oc, TokenFile: r.file, Now: r.clock.Now, OnState: func(s string) { states <- s }}, zerolog.New(r.logs))
	c := r.client(t, src)
	ctx := context.Background()
	if _, err := c.Clusters(ctx); err != nil {
		t.Fatal(err)
	}
	r.sim.RevokeGrants()
	r.clock.Add(10 * time.Minute)
	_, err := c.Clusters(ctx)
	if connect.KindOf(err) != connect.KindAuth || src.State() != auth.StateAuthRequired {
		t.Fatalf("after revocation: %v, state %s", err, src.State())
	}
	if s := <-states; s != auth.StateAuthRequired {
		t.Errorf("state change %s", s)
	}
	if n := strings.Count(r.logs.String(), "sign-in expired or revoked"); n != 1 {
		t.Errorf("logged %d times, want once", n)
	}
	// Further requests fail fast without calling the account server.
	before := r.sim.AccountStats()
	for range 5 {
		c.Clusters(ctx)
	}
	if after := r.sim.AccountStats(); after != before {
		t.Errorf("auth_required still hits the account server: %+v -> %+v", before, after)
	}
	src.Reload() // the same dead file: nothing changes
	if src.State() != auth.StateAuthRequired {
		t.Fatal("recovered from the dead token file")
	}
	r.login(t) // the user signs in again
	src.Reload()
	if s := <-states; s != auth.StateOK || src.State() != auth.StateOK {
		t.Fatalf("after a new login: %s", src.State())
	}
	if _, err := c.Clusters(ctx); err != nil {
		t.Fatalf("after a new login: %v", err)
	}
	r.noSecretsLogged(t)
}

func TestMissingFileWaitsForLogin(t *testing.T) {
	r := newRig(t)
	os.Remove(r.file)
	src := r.source()
	if src.State() != auth.StateAuthRequired {
		t.Fatalf("state %s", src.State())
	}
	r.login(t)
	src.Reload()
	if _, err := src.Token(); err != nil || src.State() != auth.StateOK {
		t.Fatalf("%v %s", err, src.State())
	}
}

// Refreshes the server keeps refusing (here: a wrong client secret) end in
// auth_required after three tries, not in a retry loop.
func TestRefusedRefreshesRequireSignIn(t *testing.T) {
	r := newRig(t)
	bad := *r.oc
	bad.ClientSecret = "wrong"
	src := auth.NewSource(auth.Config{OAuth: &bad, TokenFile: r.file, Now: r.clock.Now}, zerolog.New(r.logs))
	r.clock.Add(10 * time.Minute)
	for i := 1; i <= 3; i++ {
		_, err := src.Token()
		if err == nil {
			t.Fatal("refresh with a wrong secret succeeded")
		}
		if want := i == 3; (err == auth.ErrAuthRequired) != want {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if src.State() != auth.StateAuthRequired {
		t.Errorf("state %s", src.State())
	}
	if strings.Contains(r.logs.String(), "wrong") || strings.Contains(r.logs.String(), secret) {
		t.Error("a client secret reached the log")
	}
}

func FuzzLoadToken(f *testing.F) {
	f.Add([]byte(`{"access_token":"a","token_type":"bearer","refresh_token":"r","expiry":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"refresh_token":""}`))
	f.Add([]byte(`{"expiry":"yesterday"}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "t.json")
		os.WriteFile(path, b, 0o600)
		tok, err := auth.LoadToken(path)
		if err == nil && tok.RefreshToken == "" {
			t.Fatal("accepted a token file without a refresh token")
		}
		if err != nil && len(b) > 8 && strings.Contains(err.Error(), string(b)) {
			t.Fatal("error quotes the file")
		}
	})
}
