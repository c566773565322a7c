package local

import (
	"context"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/rs/zerolog"
)

// Service is the DNS-SD service UltiMaker printers announce.
const Service = "_ultimaker._tcp"

// Discovery finds printers on the LAN by mDNS and hands each address to
// found (the LAN poller ignores addresses it already watches).
type Discovery struct {
	found func(host string)
	log   zerolog.Logger
	// Every is how often the LAN is asked (1 minute); Wait how long
	// answers are collected (3 s).
	Every, Wait time.Duration
}

// NewDiscovery returns a Discovery reporting to found.
func NewDiscovery(found func(host string), log zerolog.Logger) *Discovery {
	return &Discovery{found: found, log: log.With().Str("component", "mdns").Logger(), Every: time.Minute, Wait: 3 * time.Second}
}

// Run asks the LAN for printers now and then every d.Every until ctx ends.
func (d *Discovery) Run(ctx context.Context) {
	failed := false
	for {
		err := d.Once(ctx)
		switch {
		case err != nil && !failed && ctx.Err() == nil:
			failed = true
			d.log.Warn().Err(err).Msg("mDNS discovery failed; LOCAL_PRINTERS still work (retrying)")
		case err == nil && failed:
			failed = false
			d.log.Info().Msg("mDNS discovery works again")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.Every):
		}
	}
}

// Once asks the LAN once and reports every printer that answers.
func (d *Discovery) Once(ctx context.Context) error {
	entries := make(chan *mdns.ServiceEntry, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range entries {
			if host, ok := EntryHost(e); ok {
				d.found(host)
			}
		}
	}()
	err := mdns.QueryContext(ctx, &mdns.QueryParam{Service: Service, Domain: "local", Timeout: d.Wait, Entries: entries,
		DisableIPv6: true, Logger: log.New(io.Discard, "", 0)})
	close(entries)
	<-done
	return err
}

// EntryHost is the address to read a discovered service at: its IPv4
// address (the Go resolver does not resolve .local names), with the port
// unless it is 80. Services whose TXT type is not "printer" are skipped,
// as Cura skips them.
func EntryHost(e *mdns.ServiceEntry) (string, bool) {
	if e == nil || e.AddrV4 == nil || e.AddrV4.IsUnspecified() || e.Port <= 0 || e.Port > 65535 {
		return "", false
	}
	typ := ""
	for _, f := range e.InfoFields {
		if k, v, ok := strings.Cut(f, "="); ok && strings.EqualFold(k, "type") {
			typ = v
		}
	}
	if typ != "printer" {
		return "", false
	}
	if e.Port == 80 {
		return e.AddrV4.String(), true
	}
	return net.JoinHostPort(e.AddrV4.String(), strconv.Itoa(e.Port)), true
}
