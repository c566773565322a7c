// Package auth supplies bearer tokens: a fixed API token, or OAuth2 tokens refreshed and rotated through a token file.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// Auth states, as shown in <base>/bridge/info.
const (
	StateAPIToken     = "api_token"     // a fixed Digital Factory API token
	StateOK           = "ok"            // OAuth tokens that refresh
	StateAuthRequired = "auth_required" // the grant is gone: run login again
)

// ErrAuthRequired is returned while the sign-in is gone; it clears by
// itself when a new login writes the token file.
var ErrAuthRequired = errors.New("sign-in required: run `ultimaker2mqtt login`")

// Endpoints of the account server below its base URL.
func Endpoint(accountURL string) oauth2.Endpoint {
	base := strings.TrimRight(accountURL, "/")
	return oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}
}

// Config configures a Source.
type Config struct {
	OAuth     *oauth2.Config // client id and secret, endpoints, scopes
	TokenFile string
	// HTTPClient bounds token requests; nil means a client with a 30 s
	// timeout.
	HTTPClient *http.Client
	// OnState is called (from the goroutine that saw it) when the state
	// changes between StateOK and StateAuthRequired.
	OnState func(state string)
	Now     func() time.Time
}

// Source is an oauth2.TokenSource over a token file with rotating refresh
// tokens: the server kills the old refresh token on every refresh, so the
// new token is on disk before anyone uses it, and only one refresh runs
// at a time however many requests wait.
type Source struct {
	cfg Config
	log zerolog.Logger

	mu        sync.Mutex
	tok       *oauth2.Token
	state     string
	failures  int    // refreshes in a row the server refused (not network)
	deadToken string // refresh token that got invalid_grant
	refreshes int
}

// maxRefusals is how many refused refreshes in a row (other than
// invalid_grant) mean the sign-in is gone.
const maxRefusals = 3

// NewSource loads the token file. A missing or corrupt file, like a
// revoked grant, starts it in StateAuthRequired, logged once with the fix.
func NewSource(cfg Config, log zerolog.Logger) *Source {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = HTTPClient(30 * time.Second)
	}
	s := &Source{cfg: cfg, state: StateOK, log: log.With().Str("component", "auth").Logger()}
	tok, err := LoadToken(cfg.TokenFile)
	if err != nil {
		// Not fatal: the bridge waits, visibly, for a login to write it.
		s.state = StateAuthRequired
		s.log.Error().Err(err).Msg("sign-in required: run `ultimaker2mqtt login` (the bridge picks up the token file by itself)")
		return s
	}
	s.tok = tok
	return s
}

// State is StateOK or StateAuthRequired.
func (s *Source) State() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Refreshes counts successful refreshes since start.
func (s *Source) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// Token returns a valid access token, refreshing it first when it is
// about to expire.
func (s *Source) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateAuthRequired {
		return nil, ErrAuthRequired
	}
	if !s.fresh(s.cfg.Now()) {
		if err := s.refreshLocked(); err != nil {
			return nil, err
		}
	}
	t := *s.tok // a copy: Invalidate changes ours
	return &t, nil
}

// fresh reports whether the access token outlives a safety margin: a
// minute, or a fifth of its life for short-lived tokens, so a request
// never goes out with a token about to die.
func (s *Source) fresh(now time.Time) bool {
	t := s.tok
	if t.AccessToken == "" || t.Expiry.IsZero() {
		return false
	}
	life := 10 * time.Minute
	if t.ExpiresIn > 0 {
		life = time.Duration(t.ExpiresIn) * time.Second
	}
	return now.Add(min(time.Minute, life/5)).Before(t.Expiry)
}

// Invalidate marks accessToken as rejected by the API (401, or 403
// tokenExpired): the next Token call refreshes. A token already replaced
// by another request's refresh is left alone.
func (s *Source) Invalidate(accessToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == accessToken {
		s.tok.Expiry = time.Unix(1, 0)
	}
}

func (s *Source) refreshLocked() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	// A token with only the refresh token makes the library refresh.
	next, err := s.cfg.OAuth.TokenSource(ctx, &oauth2.Token{RefreshToken: s.tok.RefreshToken}).Token()
	if err != nil {
		return s.refreshFailed(err)
	}
	// The library dates expiry by the wall clock; ours may be simulated.
	if next.ExpiresIn > 0 {
		next.Expiry = s.cfg.Now().Add(time.Duration(next.ExpiresIn) * time.Second)
	}
	// Persist before use: the old refresh token is already dead on the
	// server, so a crash after this point must find the new one on disk.
	if err := SaveToken(s.cfg.TokenFile, next); err != nil {
		s.log.Error().Err(err).Msg("cannot save the refreshed token; it is kept in memory and saved again at the next refresh")
	}
	s.tok, s.failures, s.refreshes = next, 0, s.refreshes+1
	s.log.Debug().Time("expiry", next.Expiry).Msg("token refreshed")
	return nil
}

func (s *Source) refreshFailed(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// No answer from the account server: transient, try again later.
		s.log.Debug().Err(scrub(err)).Msg("token refresh failed; will retry")
		return fmt.Errorf("refresh token: account server unreachable: %w", scrub(err))
	}
	code := re.ErrorCode
	if code == "" && re.Response != nil {
		code = fmt.Sprintf("HTTP %d", re.Response.StatusCode)
	}
	s.failures++
	if re.ErrorCode == "invalid_grant" || s.failures >= maxRefusals {
		s.deadToken = s.tok.RefreshToken
		s.tok = nil
		s.setState(StateAuthRequired)
		s.log.Error().Str("error", code).Str("token_file", s.cfg.TokenFile).
			Msg("sign-in expired or revoked: run `ultimaker2mqtt login` (the bridge picks up the new token file by itself)")
		return ErrAuthRequired
	}
	return fmt.Errorf("refresh token: account server refused: %s", code)
}

func (s *Source) setState(state string) {
	if s.state == state {
		return
	}
	s.state = state
	if s.cfg.OnState != nil {
		go s.cfg.OnState(state)
	}
}

// Run re-reads the token file every interval while sign-in is required,
// so a new login takes effect without a restart. It returns when ctx ends.
func (s *Source) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Reload()
		}
	}
}

// Reload reads the token file again if sign-in is required, and recovers
// when it holds a new grant.
func (s *Source) Reload() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateAuthRequired {
		return
	}
	tok, err := LoadToken(s.cfg.TokenFile)
	if err != nil || tok.RefreshToken == s.deadToken {
		return
	}
	s.tok, s.failures, s.deadToken = tok, 0, ""
	s.setState(StateOK)
	s.log.Info().Msg("new sign-in found in the token file; resuming")
}

// scrub drops URLs from errors: the token endpoint gets no query, but be
// sure nothing token-like reaches a log.
func scrub(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
