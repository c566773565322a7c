// Package secretfile writes files that hold secrets: mode 0600, atomically, durably.
package secretfile

import (
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
