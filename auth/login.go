package auth

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// LoginConfig is what a sign-in with the authorization-code flow needs.
type LoginConfig struct {
	OAuth       *oauth2.Config // client, endpoints, scopes, redirect URL
	PKCEMethod  string         // S512 (UltiMaker's) or S256
	WorkspaceID string         // optional organization_id
	Port        int            // the callback listener, on 127.0.0.1
	TokenFile   string         // where the token goes (0600, atomic)
	AccountURL  string         // for WhoAmI
	// Input is where a pasted redirect address is read, on machines whose
	// browser cannot reach the listener (a terminal's standard input).
	Input io.Reader
	// Timeout bounds the wait for the browser; default 10 minutes.
	Timeout time.Duration
}

// callbackResult is the code a browser brought back, or why not.
type callbackResult struct {
	code string
	err  error
}

// Login signs in: it prints an address to open, takes the code from the
// browser's return to the listener or from a pasted address, exchanges it
// (with the PKCE verifier) and writes the token file. It prints its steps
// to out and returns the token.
func Login(ctx context.Context, cfg LoginConfig, out io.Writer) (*oauth2.Token, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	verifier := oauth2.GenerateVerifier()
	state := randomState()
	authURL := authCodeURL(cfg, state, verifier)
	results := make(chan callbackResult, 2)
	check := func(q url.Values) callbackResult { return checkCallback(q, state) }

	stopListener, lnErr := listenCallback(cfg.Port, check, results)
	if lnErr == nil {
		defer stopListener()
	}
	readPasted(cfg.Input, check, results, out)

	fmt.Fprintf(out, "Open this address in a browser and sign in to UltiMaker:\n\n  %s\n\n", authURL)
	if lnErr == nil {
		fmt.Fprintf(out, "Waiting for the browser to come back to http://localhost:%d/callback …\n", cfg.Port)
		fmt.Fprintln(out, "On a machine without a browser, sign in elsewhere and paste the address the browser ends on here:")
	} else {
		fmt.Fprintf(out, "(cannot listen on 127.0.0.1:%d: %v)\nAfter signing in, paste the address the browser ends on here:\n",
			cfg.Port, lnErr)
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return nil, fmt.Errorf("login: no answer from the browser within %s", cfg.Timeout)
	}
	if res.err != nil {
		return nil, fmt.Errorf("login: %w", res.err)
	}
	tok, err := exchange(ctx, cfg.OAuth, res.code, verifier)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if err := SaveToken(cfg.TokenFile, tok); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return tok, nil
}

// randomState is the state parameter that ties the browser's answer to
// this login.
func randomState() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// authCodeURL is the address the person opens: the authorization request
// with its PKCE challenge.
func authCodeURL(cfg LoginConfig, state, verifier string) string {
	opts := []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("code_challenge", Challenge(cfg.PKCEMethod, verifier)),
		oauth2.SetAuthURLParam("code_challenge_method", cfg.PKCEMethod),
	}
	if cfg.WorkspaceID != "" {
		opts = append(opts, oauth2.SetAuthURLParam("organization_id", cfg.WorkspaceID))
	}
	return cfg.OAuth.AuthCodeURL(state, opts...)
}

// checkCallback reads the browser's answer: a code for this login's
// state, or the account server's refusal.
func checkCallback(q url.Values, state string) callbackResult {
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

// listenCallback serves /callback on 127.0.0.1:port until stop, handing
// each answer to results (the first one counts).
func listenCallback(port int, check func(url.Values) callbackResult, results chan<- callbackResult) (stop func(), err error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
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
	return func() { srv.Close() }, nil
}

// readPasted reads, in the background, the address a person pastes from
// a browser on another machine. The goroutine may outlive Login, blocked
// on a terminal read; the process ends right after.
func readPasted(in io.Reader, check func(url.Values) callbackResult, results chan<- callbackResult, out io.Writer) {
	if in == nil {
		return
	}
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			u, err := url.Parse(strings.TrimSpace(sc.Text()))
			if err != nil || u.RawQuery == "" {
				fmt.Fprintln(out, "That is not the redirect URL; paste the whole address from the browser's address bar.")
				continue
			}
			select {
			case results <- check(u.Query()):
			default:
			}
			return
		}
	}()
}

// exchange trades the code for tokens; a token without a refresh token is
// refused, as the bridge could not stay signed in with it.
func exchange(ctx context.Context, oc *oauth2.Config, code, verifier string) (*oauth2.Token, error) {
	xctx := context.WithValue(ctx, oauth2.HTTPClient, HTTPClient(30*time.Second))
	tok, err := oc.Exchange(xctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("the account server refused the code: %s %s", re.ErrorCode, re.ErrorDescription)
		}
		return nil, err
	}
	if tok.RefreshToken == "" {
		return nil, errors.New("the account server gave no refresh token; the bridge could not stay signed in")
	}
	return tok, nil
}

// WhoAmI asks the account server who an access token belongs to: a line
// naming the user and workspace, or "" when it cannot tell.
func WhoAmI(ctx context.Context, accountURL, accessToken string) string {
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
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v) != nil ||
		v.Data.Username == "" {
		return ""
	}
	return fmt.Sprintf("User %s, workspace %s (%s)", v.Data.Username, v.Data.Organization.Name, v.Data.Organization.ID)
}
