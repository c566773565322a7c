// Package secretfile writes files that hold secrets: mode 0600, atomically, durably.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write writes b to path with mode 0600 through a temporary file in the
// same directory and a rename, so a crash leaves the old file or the new
// one, never half of one. The directory is synced too: the rename must
// survive a power cut (a rotated refresh token or a new pairing would
// otherwise be lost while the old one is already dead).
func Write(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ErrTooLarge is Read's answer for a file over its limit: not ours.
var ErrTooLarge = errors.New("larger than expected")

// Read reads the file at path, at most limit bytes: a secret file is small,
// and a huge one is not ours. Errors name neither the file nor its content;
// the caller names the file.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return nil, pe.Err // still errors.Is(os.ErrNotExist) when missing
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}
