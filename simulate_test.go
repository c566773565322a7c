package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSimulateServesALANPrinter runs `simulate -local` and reads the LAN
// printer it serves, as someone building a flow would.
func TestSimulateServesALANPrinter(t *testing.T) {
	free := func() string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		return ln.Addr().String()
	}
	api, lan := free(), free()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out syncBuffer
	go func() {
		done <- run(ctx, []string{"ultimaker2mqtt", "simulate", "-listen", api, "-local", lan, "-local-digest", "SHA-256"}, nil,
			&out, &syncBuffer{})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulate returned %v", err)
		}
	}()
	var sys struct{ Hostname, Name string }
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + lan + "/api/v1/system")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			json.Unmarshal(b, &sys)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the LAN printer never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sys.Hostname != demoLANPrinters[0] || sys.Name != "Lab-S5-1" {
		t.Errorf("system %+v", sys)
	}
	if !strings.Contains(out.String(), "LOCAL_PRINTERS="+lan) {
		t.Errorf("simulate output: %s", out.String())
	}
	// Writes need pairing: a SHA-256 challenge.
	req, _ := http.NewRequest(http.MethodPut, "http://"+lan+"/api/v1/print_job/state", strings.NewReader(`{"target":"pause"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(ch, `realm="Jedi-API"`) ||
		!strings.Contains(ch, "algorithm=SHA-256") {
		t.Errorf("unsigned write: %d %q", resp.StatusCode, ch)
	}
	for _, bad := range [][]string{{"-local", lan, "-local-digest", "SHA-1"}, {"-local", free(), "-local-printer", "nope"}} {
		err := run(context.Background(), append([]string{"ultimaker2mqtt", "simulate", "-listen", free()}, bad...), nil,
			io.Discard, io.Discard)
		if exitCode(err, io.Discard) != 2 {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
