package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestExpiresInOfAnyNumberShape refreshes against a token endpoint that
// sends expires_in as an integer, a float or a string: every shape signs
// in, with the expiry it says (issue 9.10).
func TestExpiresInOfAnyNumberShape(t *testing.T) {
	tests := []struct {
		name, expiresIn string
		want            time.Duration
	}{
		{"integer", `600`, 600 * time.Second},
		{"float", `600.0`, 600 * time.Second},
		{"fraction", `599.7`, 599 * time.Second},
		{"string", `"600"`, 600 * time.Second},
		{"float string", `"600.5"`, 600 * time.Second},
		{"garbage string", `"soon"`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"access_token":"a","token_type":"bearer","refresh_token":"r2","expires_in":%s}`, tt.expiresIn)
			}))
			defer srv.Close()
			cfg := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, HTTPClient(5*time.Second))
			start := time.Now()
			tok, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: "r1"}).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if tok.AccessToken != "a" || tok.RefreshToken != "r2" {
				t.Errorf("token %+v", tok)
			}
			if tt.want == 0 {
				if !tok.Expiry.IsZero() {
					t.Errorf("expiry %v, want none", tok.Expiry)
				}
				return
			}
			if got := tok.Expiry.Sub(start); got < tt.want-time.Second || got > tt.want+time.Second {
				t.Errorf("expires in %s, want %s", got, tt.want)
			}
		})
	}
}
