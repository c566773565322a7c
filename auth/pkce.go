package auth

import (
	"crypto/sha512"
	"encoding/base64"

	"golang.org/x/oauth2"
)

// Challenge derives a PKCE code challenge from verifier: method S512 is
// UltiMaker's (base64url of SHA-512, padding kept, as Cura sends it); S256
// is RFC 7636's.
func Challenge(method, verifier string) string {
	if method == "S256" {
		return oauth2.S256ChallengeFromVerifier(verifier)
	}
	sum := sha512.Sum512([]byte(verifier))
	return base64.URLEncoding.EncodeToString(sum[:])
}
