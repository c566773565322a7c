package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/secretfile"
)

// maxTokenFile bounds what we read: a token file is a few KiB at most.
const maxTokenFile = 1 << 20

// ErrNoTokenFile means the token file does not exist yet: run login.
var ErrNoTokenFile = errors.New("no token file: run `ultimaker2mqtt login` first")

// LoadToken reads a token file written by SaveToken. A missing, corrupt or
// incomplete file is an error that says so, never a panic.
func LoadToken(path string) (*oauth2.Token, error) {
	b, err := secretfile.Read(path, maxTokenFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("token file %s: %w", path, ErrNoTokenFile)
	case errors.Is(err, secretfile.ErrTooLarge):
		return nil, fmt.Errorf("token file %s: larger than %d bytes; not a token file", path, maxTokenFile)
	case err != nil:
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	var tok oauth2.Token
	if err := json.Unmarshal(b, &tok); err != nil {
		// The JSON error would quote the file; keep tokens out of logs.
		return nil, fmt.Errorf("token file %s: not valid JSON; run `ultimaker2mqtt login` again", path)
	}
	if tok.RefreshToken == "" {
		return nil, fmt.Errorf("token file %s: no refresh_token; run `ultimaker2mqtt login` again", path)
	}
	return &tok, nil
}

// SaveToken writes tok to path with mode 0600, atomically and durably
// (secretfile.Write).
func SaveToken(path string, tok *oauth2.Token) error {
	b, err := json.MarshalIndent(tok, "", "  ")
	if err != nil {
		return fmt.Errorf("encode token: %w", err)
	}
	if err := secretfile.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	return nil
}
