package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/oauth2"
)

// maxTokenFile bounds what we read: a token file is a few KiB at most.
const maxTokenFile = 1 << 20

// ErrNoTokenFile means the token file does not exist yet: run login.
var ErrNoTokenFile = errors.New("no token file: run `ultimaker2mqtt login` first")

// LoadToken reads a token file written by SaveToken. A missing, corrupt or
// incomplete file is an error that says so, never a panic.
func LoadToken(path string) (*oauth2.Token, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("token file %s: %w", path, ErrNoTokenFile)
	}
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return nil, fmt.Errorf("token file %s: larger than %d bytes; not a token file", path, maxTokenFile)
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

// SaveToken writes tok to path with mode 0600 through a temporary file in
// the same directory and a rename, so a crash leaves the old file or the
// new one, never half of one. The directory is synced too: the rename
// must survive a power cut, or the rotated refresh token is lost while
// the old one is already dead on the server.
func SaveToken(path string, tok *oauth2.Token) error {
	b, err := json.MarshalIndent(tok, "", "  ")
	if err != nil {
		return fmt.Errorf("encode token: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
