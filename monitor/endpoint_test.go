package monitor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestHostsAllowed(t *testing.T) {
	h := NewHosts("printers.lab.example", "Farm.Local.", "*.wall.example")
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"192.168.1.20", true},
		{"[::1]:8080", true},
		{"[fe80::1%25eth0]:8080", false}, // a zone from a header
		{"localhost:8080", true},
		{"LOCALHOST", true},
		{"farm.localhost:8080", true},
		{"printers.lab.example:8080", true},
		{"printers.lab.example.", true},
		{"farm.local", true},
		{"tv1.wall.example", true},
		{"wall.example", false},
		{"evil.example:8080", false},
		{"printers.lab.example.evil.example", false},
		{"localhost.evil.example", false},
		{"", false},
		{"127.0.0.1.nip.io", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := h.Allowed(tt.host); got != tt.want {
				t.Errorf("Allowed(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

// FuzzHosts: any Host header is answered without a panic, and a name
// gets through only when it is an address, localhost, or allowed.
func FuzzHosts(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "evil.example", "[::1]", "printers.lab.example:1", "x.localhost", ":80", "[", "]:"} {
		f.Add(s)
	}
	h := NewHosts("printers.lab.example")
	f.Fuzz(func(t *testing.T, host string) {
		if !h.Allowed(host) {
			return
		}
		name := strings.ToLower(host)
		if n, _, err := net.SplitHostPort(name); err == nil {
			name = n
		}
		name = strings.Trim(strings.TrimSuffix(name, "."), "[]")
		if net.ParseIP(name) == nil && name != "localhost" && !strings.HasSuffix(name, ".localhost") &&
			name != "printers.lab.example" {
			t.Fatalf("Host %q let through", host)
		}
	})
}

// serve runs an endpoint with bounds on loopback until the test ends.
func serve(t *testing.T, b Bounds, page http.Handler) string {
	t.Helper()
	s := New("127.0.0.1:0", NewMetrics(Sources{}), func() Health { return Evaluate() }, Options{Bounds: b}, zerolog.Nop())
	if page != nil {
		s.Page(page)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func TestEveryAnswerCarriesTheHeaders(t *testing.T) {
	addr := serve(t, Bounds{}, nil)
	for _, path := range []string{"/healthz", "/metrics", "/./healthz", "/nothing"} {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		resp, err := (&http.Transport{}).RoundTrip(req) // no redirect followed
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s (%s): headers %v", path, resp.Status, resp.Header)
		}
	}
}

// The bounds a client gets: an idle keep-alive connection is closed, a
// body that trickles in is cut, large headers are refused, and the
// connections are capped.
func TestBoundsPerClient(t *testing.T) {
	b := Bounds{ReadHeader: time.Second, Read: time.Second, Write: 2 * time.Second, Idle: 500 * time.Millisecond,
		MaxHeaderBytes: 4 << 10, MaxConns: 3}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		w.Write([]byte("ok"))
	})
	addr := serve(t, b, echo)

	t.Run("idle keep-alive closed", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		r := bufio.NewReader(c)
		if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("first request: %v", err)
		} else {
			io.Copy(io.Discard, resp.Body)
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = r.ReadByte()
		if took := time.Since(start); !errors.Is(err, io.EOF) || took > 2*time.Second {
			t.Errorf("idle connection: %v after %s, want closed after about %s", err, took, b.Idle)
		}
	})
	t.Run("slow body cut", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
		start := time.Now()
		var werr error
		for i := 0; i < 40 && werr == nil; i++ {
			time.Sleep(100 * time.Millisecond)
			_, werr = c.Write([]byte("x"))
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				werr = err
			}
		}
		if took := time.Since(start); werr == nil || took > 3*time.Second {
			t.Errorf("a body of one byte per 100 ms was read for %s (%v), want cut after about %s", took, werr, b.Read)
		}
	})
	t.Run("large headers refused", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("b", 1<<20))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("1 MB of headers: %s, want 431", resp.Status)
		}
	})
	t.Run("connections capped", func(t *testing.T) {
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for range b.MaxConns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
		time.Sleep(100 * time.Millisecond) // accepted, holding every slot
		c, err := net.Dial("tcp", addr)    // the kernel queues it
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a connection over the cap was served at once")
		}
		open[0].Close()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Errorf("the queued connection was not served once a slot freed: %v", err)
		}
	})
}
