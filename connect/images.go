package connect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"time"
)

// ErrPrivateAddress refuses a picture at an address that is not the
// public internet's.
var ErrPrivateAddress = errors.New("a private, loopback or link-local address is refused")

// imageClient is the client that fetches the images an answer names (a
// preview, a webcam snapshot): a cloud answer could name any host, and
// the bridge sits on a LAN, so it dials public addresses only, checked
// on the address it connects to (after DNS, and again for each
// redirect). The API's own host and a proxy from the environment, which
// the operator chose, are dialled as they are.
func imageClient(api *http.Client, base *url.URL) *http.Client {
	tr, ok := api.Transport.(*http.Transport)
	if !ok || tr == nil {
		tr = http.DefaultTransport.(*http.Transport)
	}
	tr = tr.Clone()
	trusted := map[string]bool{hostPort(base): true}
	for _, name := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		if u, err := url.Parse(os.Getenv(name)); err == nil && u.Host != "" {
			trusted[hostPort(u)] = true
		}
	}
	public := &net.Dialer{Timeout: 10 * time.Second, Control: refusePrivate}
	plain := &net.Dialer{Timeout: 10 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if trusted[addr] {
			return plain.DialContext(ctx, network, addr)
		}
		return public.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr}
}

// refusePrivate is a dialer's Control: it runs on the address about to
// be connected to, whatever name led there.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrPrivateAddress)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", ap.Addr(), ErrPrivateAddress)
	}
	return nil
}

// cgnat is the carrier-grade NAT range (RFC 6598), private in practice.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether a is an address of the public internet: not
// loopback, private (RFC 1918, fc00::/7), carrier-grade NAT, link-local,
// multicast or unspecified.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is4() && a.As4()[0] == 0 {
		return false // 0.0.0.0/8: "this network"
	}
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a) && !a.IsLoopback() &&
		!a.IsLinkLocalUnicast()
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}
