package auth_test

import (
	"crypto/sha512"
	"encoding/base64"
)

// simulatorS512 is UltiMaker's S512 challenge: base64url of SHA-512, padded.
func simulatorS512(verifier string) string {
	sum := sha512.Sum512([]byte(verifier))
	return base64.URLEncoding.EncodeToString(sum[:])
}
