package simulator

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The account server: OAuth2 authorization code with PKCE (S512, as the
// real one, and S256) and rotating refresh tokens, where reusing an old
// refresh token revokes the whole grant. /authorize approves at once, as
// if the user had signed in and consented.

type authCode struct {
	challenge, method, redirect, clientID, scope string
	expires                                      time.Time
}

type grant struct {
	id       string
	current  string          // the one valid refresh token
	used     map[string]bool // rotated-out refresh tokens
	revoked  bool
	clientID string
}

type accessToken struct {
	grant   *grant
	expires time.Time // simulated time
}

// AccountStats count what the account server saw.
type AccountStats struct {
	Logins, Refreshes, Replays, Refused int
}

func randomToken(prefix string) string {
	b := make([]byte, 24)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) accountRoutes() {
	s.mux.HandleFunc("GET /authorize", s.authorize)
	s.mux.HandleFunc("POST /token", s.token)
	s.mux.HandleFunc("GET /check-token", s.checkToken)
}

// AccountStats returns the account server's counters.
func (s *Server) AccountStats() AccountStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acct
}

// RevokeGrants revokes every grant, as when the user signs the
// application out of their account.
func (s *Server) RevokeGrants() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		g.revoked = true
	}
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme == "" || q.Get("response_type") != "code" || q.Get("client_id") == "" {
		http.Error(w, "invalid authorization request", http.StatusBadRequest)
		return
	}
	if s.opts.ClientID != "" && q.Get("client_id") != s.opts.ClientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	method := q.Get("code_challenge_method")
	if q.Get("code_challenge") == "" || (method != "S512" && method != "S256") {
		http.Error(w, "PKCE required: code_challenge with method S512 or S256", http.StatusBadRequest)
		return
	}
	code := randomToken("code-")
	s.mu.Lock()
	s.codes[code] = &authCode{challenge: q.Get("code_challenge"), method: method, redirect: q.Get("redirect_uri"),
		clientID: q.Get("client_id"), scope: q.Get("scope"), expires: s.opts.Now().Add(5 * time.Minute)}
	s.mu.Unlock()
	v := redirect.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// pkceMatches is lenient about encoding, as the real server is reported
// to be: standard or URL alphabet, padded or not.
func pkceMatches(method, challenge, verifier string) bool {
	var sum []byte
	switch method {
	case "S512":
		h := sha512.Sum512([]byte(verifier))
		sum = h[:]
	case "S256":
		h := sha256.Sum256([]byte(verifier))
		sum = h[:]
	default:
		return false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if subtle.ConstantTimeCompare([]byte(enc.EncodeToString(sum)), []byte(challenge)) == 1 {
			return true
		}
	}
	// Cura's variant: standard base64 with + and / swapped to _ and -.
	cura := strings.NewReplacer("+", "_", "/", "-").Replace(base64.StdEncoding.EncodeToString(sum))
	return subtle.ConstantTimeCompare([]byte(cura), []byte(challenge)) == 1
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "form body expected")
		return
	}
	f := r.PostForm
	clientID := f.Get("client_id")
	if cid, secret, ok := r.BasicAuth(); ok {
		clientID = cid
		f.Set("client_secret", secret)
	}
	if s.opts.ClientID != "" && clientID != s.opts.ClientID {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client")
		return
	}
	if s.opts.ClientSecret != "" && f.Get("client_secret") != s.opts.ClientSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "bad client secret")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var g *grant
	switch f.Get("grant_type") {
	case "authorization_code":
		c := s.codes[f.Get("code")]
		delete(s.codes, f.Get("code")) // single use
		if c == nil || s.opts.Now().After(c.expires) || c.redirect != f.Get("redirect_uri") || c.clientID != clientID {
			s.acct.Refused++
			oauthError(w, http.StatusBadRequest, "invalid_grant", "authorization code invalid or expired")
			return
		}
		if !pkceMatches(c.method, c.challenge, f.Get("code_verifier")) {
			s.acct.Refused++
			oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
			return
		}
		g = &grant{id: randomToken("grant-"), used: map[string]bool{}, clientID: clientID}
		s.grants[g.id] = g
		s.acct.Logins++
	case "refresh_token":
		rt := f.Get("refresh_token")
		for _, cand := range s.grants {
			if cand.current == rt || cand.used[rt] {
				g = cand
			}
		}
		switch {
		case g == nil || g.revoked:
			s.acct.Refused++
			oauthError(w, http.StatusBadRequest, "invalid_grant", "refresh token is not valid")
			return
		case g.used[rt]:
			// Replay of a rotated-out token: someone has a copy; revoke.
			g.revoked = true
			s.acct.Replays++
			oauthError(w, http.StatusBadRequest, "invalid_grant", "refresh token reused; grant revoked")
			return
		}
		g.used[rt] = true
		s.acct.Refreshes++
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	life := s.opts.AccessTokenLifetime
	if life <= 0 {
		life = 10 * time.Minute
	}
	at := randomToken("sim-access-")
	g.current = randomToken("sim-refresh-")
	s.access[at] = &accessToken{grant: g, expires: s.SimNow().Add(life)}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"token_type": "bearer", "access_token": at, "refresh_token": g.current,
		"expires_in": max(1, int(math.Ceil(life.Seconds()/s.opts.Speed))), "scope": "connect.cluster.read connect.cluster.write",
	})
}

func (s *Server) checkToken(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	a := s.access[tok]
	valid := a != nil && !a.grant.revoked && s.SimNow().Before(a.expires)
	s.mu.Unlock()
	if !valid && !s.apiToken(tok) {
		writeError(w, http.StatusUnauthorized, "invalidBearerToken", "The given bearer token is invalid", "")
		return
	}
	writeData(w, http.StatusOK, map[string]any{"user_id": s.world.userID, "username": "jdoe",
		"organization": map[string]any{"organization_id": cloudID("org:demo"), "organization_name": "Demo Lab"}})
}

// apiToken reports whether tok is an accepted API token (not an OAuth
// access token).
func (s *Server) apiToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tok != "" && !strings.HasPrefix(tok, "sim-access-") && (len(s.tokens) == 0 || s.tokens[tok])
}
