package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/secretfile"
)

// maxAuthFile bounds what is read of LOCAL_AUTH_FILE: a pairing is about
// a hundred bytes, a farm's some hundred KB.
const maxAuthFile = 4 << 20

// Store keeps the pairings, by printer key, in LOCAL_AUTH_FILE (0600,
// written atomically). An empty path keeps them in memory only.
type Store struct {
	path string
	mu   sync.Mutex
	m    map[string]Credential
	// seen is the file as last read: another process (the pair command
	// beside a running bridge) may write it, and both must keep the
	// other's pairings.
	seen os.FileInfo
}

type storeFile struct {
	Printers map[string]Credential `json:"printers"`
}

// OpenStore reads the pairings at path; a missing file is empty. A file
// that is not ours is an error naming the file, never its content.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, m: map[string]Credential{}}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// reload reads the file again when it changed since last read. Called
// with s.mu held (or before s is shared).
func (s *Store) reload() error {
	if s.path == "" {
		return nil
	}
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) || err == nil && s.seen != nil && os.SameFile(fi, s.seen) &&
		fi.ModTime().Equal(s.seen.ModTime()) && fi.Size() == s.seen.Size() {
		return nil
	}
	m, err := readStore(s.path)
	if err != nil {
		return err
	}
	s.m, s.seen = m, fi
	return nil
}

func readStore(path string) (map[string]Credential, error) {
	m := map[string]Credential{}
	b, err := secretfile.Read(path, maxAuthFile)
	switch {
	case errors.Is(err, secretfile.ErrTooLarge):
		return nil, fmt.Errorf("local auth file %s: larger than %d bytes; not a pairing file", path, maxAuthFile)
	case err != nil:
		return nil, fmt.Errorf("local auth file %s: %w", path, err)
	}
	var sf storeFile
	if err := json.Unmarshal(b, &sf); err != nil {
		// The JSON error could quote a key: name the file only.
		return nil, fmt.Errorf("local auth file %s: not valid JSON (pair the printers again after removing it)", path)
	}
	for k, c := range sf.Printers {
		if k != "" && c.ID != "" && c.Key != "" {
			m[k] = c
		}
	}
	return m, nil
}

// Get is the pairing of a printer.
func (s *Store) Get(printer string) (*Credential, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reload() // a file gone bad keeps the pairings read before
	c, ok := s.m[printer]
	if !ok {
		return nil, false
	}
	return &c, true
}

// Put saves a printer's pairing; nil forgets it.
func (s *Store) Put(printer string, c *Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(); err != nil {
		return err
	}
	if c == nil {
		delete(s.m, printer)
	} else {
		s.m[printer] = *c
	}
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(storeFile{Printers: s.m}, "", "  ")
	if err != nil {
		return err
	}
	if err := secretfile.Write(s.path, append(b, '\n')); err != nil {
		return fmt.Errorf("write local auth file %s: %w", s.path, err)
	}
	s.seen, _ = os.Stat(s.path)
	return nil
}

// Path is where the pairings are kept ("" in memory).
func (s *Store) Path() string { return s.path }
