package picture

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func jpeg(n int) []byte {
	return append([]byte{0xff, 0xd8, 0xff, 0xe0}, bytes.Repeat([]byte{1}, n-4)...)
}

func TestRead(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		ok   bool
	}{
		{"JPEG", jpeg(100), true},
		{"PNG", []byte("\x89PNG\r\n\x1a\nxxxx"), false},
		{"HTML", []byte("<html>login</html>"), false},
		{"Empty", nil, false},
		{"TooLarge", jpeg(MaxSize + 1), false},
		{"AtTheLimit", jpeg(MaxSize), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Read(bytes.NewReader(tt.body))
			if (err == nil) != tt.ok || tt.ok && !bytes.Equal(b, tt.body) {
				t.Errorf("Read: %d bytes, %v; want ok %v", len(b), err, tt.ok)
			}
		})
	}
	if _, err := Read(strings.NewReader("GIF89a...")); !errors.Is(err, ErrNotJPEG) {
		t.Errorf("a GIF: %v", err)
	}
}

// TestStoreIsBounded: the pictures put longest ago give way when the
// store is full; a picture replaces its printer's last; one larger than
// the store is refused.
func TestStoreIsBounded(t *testing.T) {
	s := NewStore(1000)
	for _, id := range []string{"a", "b", "c"} {
		s.Put(Picture{Printer: id, JPEG: jpeg(300)})
	}
	s.Put(Picture{Printer: "a", JPEG: jpeg(300)}) // a again: newest now
	s.Put(Picture{Printer: "d", JPEG: jpeg(300)}) // b gives way
	if _, ok := s.Get("b"); ok {
		t.Error("b, the oldest, is still kept")
	}
	for _, id := range []string{"a", "c", "d"} {
		if _, ok := s.Get(id); !ok {
			t.Errorf("%s was evicted", id)
		}
	}
	if s.Used() != 900 {
		t.Errorf("used %d bytes, want 900", s.Used())
	}
	if s.Put(Picture{Printer: "e", JPEG: jpeg(1001)}) {
		t.Error("a picture larger than the store was kept")
	}
	s.Remove("a")
	if _, ok := s.Get("a"); ok || s.Used() != 600 {
		t.Errorf("after Remove: used %d", s.Used())
	}
}

func FuzzRead(f *testing.F) {
	f.Add(jpeg(10))
	f.Add([]byte("not a picture"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Read(bytes.NewReader(b))
		if err == nil && (!IsJPEG(got) || len(got) > MaxSize) {
			t.Fatalf("accepted %d bytes that are not a JPEG within the limit", len(got))
		}
	})
}

func TestReadImage(t *testing.T) {
	for _, tc := range []struct {
		body []byte
		typ  string
	}{{jpeg(10), "image/jpeg"}, {[]byte("\x89PNG\r\n\x1a\nrest"), "image/png"}, {[]byte("<svg/>"), ""}} {
		_, typ, err := ReadImage(bytes.NewReader(tc.body))
		if typ != tc.typ || (err == nil) != (tc.typ != "") {
			t.Errorf("%q: %q, %v", tc.body[:4], typ, err)
		}
	}
}
