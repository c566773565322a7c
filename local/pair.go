package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Pairing outcomes besides network errors.
var (
	ErrRefused     = errors.New("pairing was refused on the printer's screen")
	ErrPairTimeout = errors.New("nobody confirmed the pairing on the printer's screen in time")
)

// PairRequest is who asks to pair, as the printer shows it.
type PairRequest struct {
	Application string // e.g. ultimaker2mqtt
	User        string // e.g. bridge@<host name>
	// ExclusionKey makes a new pairing of this bridge replace its old one
	// on the printer instead of piling up.
	ExclusionKey string
	Every        time.Duration // how often the printer is asked (1s)
	Timeout      time.Duration // how long a person has to confirm
}

// Pair asks the printer behind c to pair: it shows the request on its
// screen; pending is called once the request is shown. Pair then waits
// for ALLOW (the credential, verified with /auth/verify), DENY
// (ErrRefused) or the timeout (ErrPairTimeout).
func Pair(ctx context.Context, c *Client, r PairRequest, pending func()) (*Credential, error) {
	if r.Every <= 0 {
		r.Every = time.Second
	}
	cred, err := c.RequestAuth(ctx, r.Application, r.User, r.ExclusionKey)
	if err != nil {
		return nil, fmt.Errorf("pair %s: %w", c.Host(), err)
	}
	if pending != nil {
		pending()
	}
	deadline := time.NewTimer(r.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(r.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, fmt.Errorf("pair %s: %w (%s)", c.Host(), ErrPairTimeout, r.Timeout)
		case <-tick.C:
		}
		state, err := c.CheckAuth(ctx, cred.ID)
		if err != nil {
			continue // a printer busy or rebooting answers later
		}
		switch state {
		case "authorized":
			check := NewClient(c.Host(), c.timeout, c.transport)
			check.SetCredential(cred)
			if err := check.VerifyAuth(ctx); err != nil {
				return nil, fmt.Errorf("pair %s: the printer authorized the bridge but refuses its credential: %w", c.Host(), err)
			}
			return cred, nil
		case "unauthorized":
			return nil, fmt.Errorf("pair %s: %w", c.Host(), ErrRefused)
		}
	}
}

// PairHost pairs with the printer at host from a terminal, telling out
// each step, and keeps the credential in store under the address and the
// printer's topic id, where a bridge (running or not) finds it.
func PairHost(ctx context.Context, host string, store *Store, r PairRequest, out io.Writer) error {
	c := NewClient(host, 5*time.Second, nil)
	key := ""
	if sys, err := c.System(ctx); err == nil {
		key = topics.Segment(sys.Hostname)
		fmt.Fprintf(out, "%s is %s (%s, firmware %s)\n", host, sys.Name, sys.Variant, sys.Firmware)
	} else if !errors.Is(err, ErrAuth) {
		return fmt.Errorf("pair: the printer at %s does not answer: %w", host, err)
	}
	cred, err := Pair(ctx, c, r, func() {
		fmt.Fprintf(out, "Confirm on the printer's screen: press ALLOW for %s (%s). Waiting up to %s…\n",
			r.Application, r.User, r.Timeout)
	})
	if err != nil {
		return err
	}
	for _, k := range []string{host, key} {
		if k != "" {
			if err := store.Put(k, cred); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(out, "Paired with %s; the credential is in %s (a running bridge picks it up at its next poll).\n",
		host, store.Path())
	return nil
}
