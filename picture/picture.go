// Package picture checks printers' camera pictures and keeps the latest of each, bounded in memory.
package picture

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// MaxSize bounds one picture: a printer camera's JPEG is 50–300 KB.
const MaxSize = 4 << 20

// Sources of a picture.
const (
	ViaLocal = "local" // the printer's own camera, read on the LAN
	ViaCloud = "cloud" // the cloud's webcam snapshot action
)

// Picture is one picture of a printer.
type Picture struct {
	Printer string // its topic id
	JPEG    []byte
	TakenAt time.Time
	Via     string // ViaLocal or ViaCloud
	// URL is where the cloud keeps the picture; "" for one from the LAN.
	URL string
	// Event and Job say what the picture was taken for: an event such as
	// print_finished and that job's uuid; both "" for one taken on request.
	Event, Job string
}

// ErrNoCamera is the answer for a printer of which no picture can be
// taken (as asked): it has no camera the bridge reaches.
var ErrNoCamera = errors.New("no camera to take a picture with")

// ErrNotJPEG is the answer for a body that is not a JPEG picture.
var ErrNotJPEG = errors.New("not a JPEG picture")

// Read reads a picture from r: a JPEG of at most MaxSize bytes.
func Read(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	switch {
	case err != nil:
		return nil, err
	case len(b) > MaxSize:
		return nil, fmt.Errorf("picture over %d bytes", MaxSize)
	case !IsJPEG(b):
		return nil, ErrNotJPEG
	}
	return b, nil
}

// IsJPEG reports whether b starts as a JPEG does (SOI and a marker).
func IsJPEG(b []byte) bool { return len(b) > 3 && bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}) }

// ErrNotImage is the answer for a body that is neither a JPEG nor a PNG.
var ErrNotImage = errors.New("not a JPEG or PNG picture")

// ReadImage reads a JPEG or a PNG (a job's preview, which Cura makes as
// PNG) of at most MaxSize bytes from r, and returns it with its media
// type.
func ReadImage(r io.Reader) ([]byte, string, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	switch {
	case err != nil:
		return nil, "", err
	case len(b) > MaxSize:
		return nil, "", fmt.Errorf("picture over %d bytes", MaxSize)
	case IsJPEG(b):
		return b, "image/jpeg", nil
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return b, "image/png", nil
	}
	return nil, "", ErrNotImage
}

// Store keeps the latest picture of each printer, at most a number of
// bytes in all: when full, the pictures put longest ago give way. It is
// safe for concurrent use.
type Store struct {
	max int

	mu    sync.Mutex
	used  int
	byID  map[string]*list.Element // of Picture, newest at the front
	order *list.List
}

// NewStore returns a Store of at most maxBytes.
func NewStore(maxBytes int) *Store {
	return &Store{max: maxBytes, byID: map[string]*list.Element{}, order: list.New()}
}

// Put keeps p as its printer's latest picture, and reports false when it
// is larger than the whole store (then it is not kept).
func (s *Store) Put(p Picture) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(p.Printer)
	if len(p.JPEG) > s.max {
		return false
	}
	s.byID[p.Printer] = s.order.PushFront(p)
	s.used += len(p.JPEG)
	for s.used > s.max {
		s.remove(s.order.Back().Value.(Picture).Printer)
	}
	return true
}

// Get returns a printer's latest picture.
func (s *Store) Get(printer string) (Picture, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[printer]
	if !ok {
		return Picture{}, false
	}
	return e.Value.(Picture), true
}

// Remove forgets a printer's picture.
func (s *Store) Remove(printer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(printer)
}

func (s *Store) remove(printer string) {
	if e, ok := s.byID[printer]; ok {
		s.used -= len(e.Value.(Picture).JPEG)
		s.order.Remove(e)
		delete(s.byID, printer)
	}
}

// Used is how many bytes of pictures are kept.
func (s *Store) Used() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}
