package local

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/rs/zerolog"
)

// TestDiscoveryFindsAnnouncedPrinter announces a printer with the
// library's own mDNS responder and finds it with Discovery, over real
// multicast. A machine without a multicast-capable interface skips it.
func TestDiscoveryFindsAnnouncedPrinter(t *testing.T) {
	ip := net.ParseIP("127.0.0.1")
	printer, err := mdns.NewMDNSService("ultimakersystem-ccbdd30044ec", Service, "local.", "ultimakersystem-ccbdd30044ec.local.",
		8081, []net.IP{ip}, []string{"type=printer", "name=Farm-S5-A", "machine=9051.0", "firmware_version=8.3.0"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := mdns.NewMDNSService("station", Service, "local.", "station.local.", 80, []net.IP{ip}, []string{"type=material_station"})
	var servers []*mdns.Server
	for _, z := range []mdns.Zone{printer, other} {
		srv, err := mdns.NewServer(&mdns.Config{Zone: z})
		if err != nil {
			t.Skipf("no multicast here: %v", err)
		}
		servers = append(servers, srv)
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	var mu sync.Mutex
	found := map[string]bool{}
	d := NewDiscovery(func(h string) { mu.Lock(); found[h] = true; mu.Unlock() }, zerolog.Nop())
	d.Wait = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if err := d.Once(ctx); err != nil {
			t.Skipf("no multicast here: %v", err)
		}
		mu.Lock()
		n := len(found)
		mu.Unlock()
		if n > 0 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(found) == 0 {
		t.Skip("no mDNS answer on this machine's interfaces (no multicast route)")
	}
	if !found["127.0.0.1:8081"] || len(found) != 1 {
		t.Errorf("found %v; want only the printer at 127.0.0.1:8081", found)
	}
}
