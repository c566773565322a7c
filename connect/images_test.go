package connect

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// A picture the cloud names is fetched from the public internet only:
// not from loopback, a private network or a link-local address, whatever
// name or redirect leads there; the API's own host, which the operator
// chose, is the exception.
func TestImagesOnlyFromPublicAddresses(t *testing.T) {
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0, 1, 0xff, 0xd9}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/preview.jpg":
			w.Header().Set("Content-Type", "image/jpeg")
			w.Write(jpeg)
		case "/elsewhere":
			http.Redirect(w, r, "https://127.0.0.2:9/preview.jpg", http.StatusFound)
		}
	}))
	defer api.Close()
	c, err := New(Options{BaseURL: api.URL + "/connect/v1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := c.Image(ctx, api.URL+"/preview.jpg"); err != nil {
		t.Errorf("the API's own host: %v", err)
	}
	for _, url := range []string{
		"https://localhost:9/preview.jpg",     // a name for loopback
		"https://127.0.0.1:9/preview.jpg",     // loopback
		"https://[::1]:9/preview.jpg",         // loopback, IPv6
		"https://10.1.2.3:9/preview.jpg",      // a private network
		"https://169.254.169.254/latest/meta", // link-local: a cloud's metadata service
		"https://[fe80::1]:9/preview.jpg",     // link-local, IPv6
		"https://0.0.0.0:9/preview.jpg",       // this host
		"https://100.64.1.1:9/preview.jpg",    // carrier-grade NAT
		api.URL + "/elsewhere",                // a redirect from the API to loopback
	} {
		_, _, err := c.Image(ctx, url)
		if !errors.Is(err, ErrPrivateAddress) {
			t.Errorf("%s: %v, want refused as private", url, err)
		}
	}
}

func TestPublic(t *testing.T) {
	for addr, want := range map[string]bool{"8.8.8.8": true, "2a00:1450::1": true, "192.168.0.1": false, "172.16.5.4": false,
		"::ffff:10.0.0.1": false, "fd00::1": false, "224.0.0.1": false, "255.255.255.255": false, "0.1.2.3": false} {
		if got := Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
}
