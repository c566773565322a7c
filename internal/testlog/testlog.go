// Package testlog holds what tests share to read a component's output while it still writes.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that a logger (or any writer in another
// goroutine) and a test may use at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
