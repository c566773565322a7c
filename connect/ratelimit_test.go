package connect_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// TestAfterA429OneRequestProbes: when the Retry-After wait ends, one
// request goes to the cloud; the others due then wait for its answer and
// are refused unsent when it meets another 429, or go when it does not
// (issue 19.2: all of them met the next 429 at once).
func TestAfterA429OneRequestProbes(t *testing.T) {
	sim := simulator.New(simulator.Options{Seed: 1})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c, err := connect.New(connect.Options{BaseURL: srv.URL + simulator.BasePath, Timeout: 5 * time.Second,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The account stays limited for two windows of a second each.
	sim.AddFault(simulator.Fault{Kind: simulator.FaultRateLimit, Count: 2, RetryAfter: time.Second})
	if _, err := c.Clusters(ctx); connect.KindOf(err) != connect.KindRateLimited {
		t.Fatalf("first request: %v, want a 429", err)
	}
	burst := func() (sent int, limited int) {
		time.Sleep(time.Until(c.RateLimitedUntil()) + 50*time.Millisecond)
		before := sim.Requests("")
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 4 {
			wg.Go(func() {
				_, err := c.Clusters(ctx)
				if connect.KindOf(err) == connect.KindRateLimited {
					mu.Lock()
					limited++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return sim.Requests("") - before, limited
	}
	if sent, limited := burst(); sent != 1 || limited != 4 {
		t.Errorf("after the first window: %d requests reached the cloud (want 1, the probe), %d answered rate limited (want 4)",
			sent, limited)
	}
	if sent, limited := burst(); sent != 4 || limited != 0 {
		t.Errorf("after the second window: %d requests reached the cloud (want 4), %d rate limited (want 0)", sent, limited)
	}
}
