package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"

	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/auth"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
)

// loginInput is where login reads a pasted redirect URL on machines whose
// browser cannot reach the callback listener; tests replace it.
var loginInput io.Reader = os.Stdin

type callbackResult struct {
	code string
	err  error
}

// runLogin signs in with the authorization-code flow and PKCE and writes
// TOKEN_FILE.
func runLogin(ctx context.Context, vars map[string]string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(vars, false)
	if err != nil {
		return err
	}
	var missing []string
	if cfg.ClientID == "" {
		missing = append(missing, "ULTIMAKER_CLIENT_ID (ask UltiMaker for an OAuth client; see the README)")
	}
	if cfg.TokenFile == "" {
		missing = append(missing, "TOKEN_FILE (where to store the sign-in)")
	}
	if len(missing) > 0 {
		return &config.Error{Msg: "login needs " + strings.Join(missing, " and ")}
	}
	oc := bridge.OAuth(cfg)
	verifier := oauth2.GenerateVerifier()
	stateBytes := make([]byte, 16)
	rand.Read(stateBytes)
	state := hex.EncodeToString(stateBytes)
	opts := []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("code_challenge", auth.Challenge(cfg.LoginPKCE, verifier)),
		oauth2.SetAuthURLParam("code_challenge_method", cfg.LoginPKCE),
	}
	if cfg.WorkspaceID != "" {
		opts = append(opts, oauth2.SetAuthURLParam("organization_id", cfg.WorkspaceID))
	}
	authURL := oc.AuthCodeURL(state, opts...)

	results := make(chan callbackResult, 2)
	check := func(q url.Values) callbackResult {
		switch {
		case q.Get("error") != "":
			return callbackResult{err: fmt.Errorf("the account server refused: %s %s", q.Get("error"), q.Get("error_description"))}
		case q.Get("state") != state:
			return callbackResult{err: errors.New("the answer's state does not match this login; start again")}
		case q.Get("code") == "":
			return callbackResult{err: errors.New("the answer carries no code")}
		}
		return callbackResult{code: q.Get("code")}
	}
	ln, lnErr := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.LoginPort)))
	if lnErr == nil {
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/callback" {
				http.NotFound(w, r)
				return
			}
			res := check(r.URL.Query())
			if res.err != nil {
				http.Error(w, "Sign-in failed: "+res.err.Error(), http.StatusBadRequest)
			} else {
				fmt.Fprintln(w, "Signed in. You can close this window; ultimaker2mqtt has what it needs.")
			}
			select {
			case results <- res:
			default:
			}
		})}
		go srv.Serve(ln)
		defer srv.Close()
	}
	input := loginInput
	go func() {
		// Headless machines: the user pastes the URL the browser ended on.
		// This goroutine may outlive login, blocked on a terminal read;
		// the process ends right after.
		sc := bufio.NewScanner(input)
		for sc.Scan() {
			u, err := url.Parse(strings.TrimSpace(sc.Text()))
			if err != nil || u.RawQuery == "" {
				fmt.Fprintln(stdout, "That is not the redirect URL; paste the whole address from the browser's address bar.")
				continue
			}
			select {
			case results <- check(u.Query()):
			default:
			}
			return
		}
	}()

	fmt.Fprintf(stdout, "Open this address in a browser and sign in to UltiMaker:\n\n  %s\n\n", authURL)
	if lnErr == nil {
		fmt.Fprintf(stdout, "Waiting for the browser to come back to http://localhost:%d/callback …\n", cfg.LoginPort)
		fmt.Fprintln(stdout, "On a machine without a browser, sign in elsewhere and paste the address the browser ends on here:")
	} else {
		fmt.Fprintf(stdout, "(cannot listen on 127.0.0.1:%d: %v)\nAfter signing in, paste the address the browser ends on here:\n", cfg.LoginPort, lnErr)
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return errors.New("login: no answer from the browser within 10 minutes")
	}
	if res.err != nil {
		return fmt.Errorf("login: %w", res.err)
	}
	xctx := context.WithValue(ctx, oauth2.HTTPClient, auth.HTTPClient(30*time.Second))
	tok, err := oc.Exchange(xctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return fmt.Errorf("login: the account server refused the code: %s %s", re.ErrorCode, re.ErrorDescription)
		}
		return fmt.Errorf("login: %w", err)
	}
	if tok.RefreshToken == "" {
		return errors.New("login: the account server gave no refresh token; the bridge could not stay signed in")
	}
	if err := auth.SaveToken(cfg.TokenFile, tok); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	fmt.Fprintf(stdout, "Signed in. The token is in %s (mode 0600); a running bridge picks it up within %s.\n", cfg.TokenFile, cfg.AuthRecheck)
	if who := whoAmI(ctx, cfg.AccountURL, tok.AccessToken); who != "" {
		fmt.Fprintln(stdout, who)
	}
	return nil
}

// whoAmI asks the account server who the token belongs to.
func whoAmI(ctx context.Context, accountURL, accessToken string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(accountURL, "/")+"/check-token", nil)
	if err != nil {
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		Data struct {
			Username     string `json:"username"`
			Organization struct {
				ID   string `json:"organization_id"`
				Name string `json:"organization_name"`
			} `json:"organization"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || decodeLimited(resp.Body, &v) != nil || v.Data.Username == "" {
		return ""
	}
	return fmt.Sprintf("User %s, workspace %s (%s)", v.Data.Username, v.Data.Organization.Name, v.Data.Organization.ID)
}
