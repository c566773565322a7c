package mqttpub

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
)

func event(n int) bus.Message {
	return bus.Message{Topic: "t/p/event", Payload: fmt.Appendf(nil, `{"n":%d}`, n),
		Late: fmt.Appendf(nil, `{"n":%d,"late":true}`, n)}
}

// Events are news that must not be lost: while the broker is away they
// are kept, in order, and sent in their late form when it is back; a
// command's answer is not.
func TestEventsHeldWhileTheBrokerIsAway(t *testing.T) {
	b := mqtttest.StartPersistent(t)
	w := mqtttest.WatchSession(t, b.URL(), "t/p/+", "held-watcher")
	c := connected(t, b.URL(), "c-held")
	ctx := context.Background()
	c.Publish(ctx, event(1))
	w.WaitFor(5*time.Second, "the live event", func(m map[string]mqtttest.Message) bool { return m["t/p/event"].Payload != "" })
	b.Stop()
	for deadline := time.Now().Add(10 * time.Second); c.Connected() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	for n := 2; n <= 4; n++ {
		c.Publish(ctx, event(n))
	}
	c.Publish(ctx, bus.Message{Topic: "t/p/response", Payload: []byte("an answer nobody waits for")})
	if n, size := c.Held(); n != 3 || size == 0 {
		t.Errorf("held %d messages (%d bytes), want 3", n, size)
	}
	b.Restart()
	w.WaitFor(15*time.Second, "the held events", func(map[string]mqtttest.Message) bool { return len(events(w)) >= 4 })
	time.Sleep(200 * time.Millisecond)
	want := []string{`{"n":1}`, `{"n":2,"late":true}`, `{"n":3,"late":true}`, `{"n":4,"late":true}`}
	if got := events(w); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	for _, m := range w.All() {
		if m.Topic == "t/p/response" {
			t.Errorf("an answer was kept for the broker: %q", m.Payload)
		}
	}
	if n, _ := c.Held(); n != 0 || c.Dropped() != 0 {
		t.Errorf("after the flush %d held, %d dropped", n, c.Dropped())
	}
	c.Publish(ctx, event(5)) // live again
	w.WaitFor(5*time.Second, "the next live event", func(map[string]mqtttest.Message) bool { return len(events(w)) == 5 })
	if got := events(w); got[4] != `{"n":5}` {
		t.Errorf("after the outage %q", got[4])
	}
}

func events(w *mqtttest.Watcher) []string {
	var out []string
	for _, m := range w.All() {
		if m.Topic == "t/p/event" {
			out = append(out, m.Payload)
		}
	}
	return out
}

// What is held is bounded by count and by age: the oldest give way, and
// are counted.
func TestHeldMessagesBounded(t *testing.T) {
	cases := []struct {
		name        string
		max         int
		age         time.Duration
		publish     int
		pause       time.Duration // between the first publishes and the last
		held, drops int
	}{
		{"by count", 5, time.Hour, 8, 0, 5, 3},
		{"by age", 100, 50 * time.Millisecond, 3, 100 * time.Millisecond, 1, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := mqtttest.Prepare(t) // never started: the broker is away
			c, err := New(Config{URL: b.URL(), ClientID: "c-bounds", HeldMessages: tc.max, HeldFor: tc.age}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for n := 1; n < tc.publish; n++ {
				c.Publish(ctx, event(n))
			}
			time.Sleep(tc.pause)
			c.Publish(ctx, event(tc.publish))
			if n, _ := c.Held(); n != tc.held || c.Dropped() != uint64(tc.drops) {
				t.Errorf("held %d, dropped %d; want %d, %d", n, c.Dropped(), tc.held, tc.drops)
			}
			if tc.name != "by count" {
				return
			}
			// The newest are what the broker gets when it comes.
			b.Begin()
			w := mqtttest.Watch(t, b.URL(), "t/p/+")
			run(t, c)
			w.WaitFor(10*time.Second, "the held events", func(map[string]mqtttest.Message) bool { return len(events(w)) == 5 })
			if got := events(w); got[0] != `{"n":4,"late":true}` || got[4] != `{"n":8,"late":true}` {
				t.Errorf("sent %q, want 4 to 8", got)
			}
		})
	}
}

// The first connection reads what the broker held before anything of
// this run reaches it: a farm's worth of states, whole, even those this
// run has published meanwhile.
func TestRecallReadsWhatTheBrokerHeld(t *testing.T) {
	b := mqtttest.Start(t)
	const n = 3000
	seed := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("seed"))
	if tok := seed.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	for i := range n {
		seed.Publish(fmt.Sprintf("t/printers/p%d/state", i), 0, true, strings.Repeat("x", 2000)+fmt.Sprint(i))
	}
	seed.Publish("t/printers/p0/state", 1, true, "before").Wait()
	seed.Publish("t/printers/p1/other", 1, true, "not asked for").Wait()
	seed.Disconnect(100)

	c, err := New(Config{URL: b.URL(), ClientID: "c-recall", ProbeTopic: "t/bridge/probe/c-recall"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var found map[string][]byte
	calls := 0
	c.Recall([]string{"t/printers/+/state"}, func(_ context.Context, f map[string][]byte) {
		mu.Lock()
		defer mu.Unlock()
		found, calls = f, calls+1
	})
	// Published as soon as the connection is open: it must not reach the
	// broker before the recall read the old payload.
	run(t, c)
	for !c.Connected() {
		time.Sleep(time.Millisecond)
	}
	c.Publish(context.Background(), bus.Message{Topic: "t/printers/p0/state", Payload: []byte("now"), Retain: true})
	w := mqtttest.Watch(t, b.URL(), "t/printers/p0/state")
	w.WaitFor(20*time.Second, "this run's state", func(m map[string]mqtttest.Message) bool {
		return m["t/printers/p0/state"].Payload == "now"
	})
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 || len(found) != n || string(found["t/printers/p0/state"]) != "before" {
		t.Fatalf("recall called %d times with %d topics, p0 = %q; want once, %d, before", calls, len(found), found["t/printers/p0/state"], n)
	}
	if _, ok := found["t/printers/p1/other"]; ok {
		t.Error("a topic outside the filters was recalled")
	}
	if got := string(found[fmt.Sprintf("t/printers/p%d/state", n-1)]); !strings.HasSuffix(got, fmt.Sprint(n-1)) || len(got) < 2000 {
		t.Errorf("the last state was cut: %d bytes", len(got))
	}
}

// An answer is not held back by the recall: only states and events wait
// for it.
func TestAnswersDoNotWaitForTheRecall(t *testing.T) {
	b := mqtttest.Start(t)
	w := mqtttest.Watch(t, b.URL(), "t/#")
	c, err := New(Config{URL: b.URL(), ClientID: "c-answer", ProbeTopic: "t/bridge/probe/c-answer"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	c.Recall([]string{"t/printers/+/state"}, func(context.Context, map[string][]byte) { <-release })
	run(t, c)
	waitConnected(t, c)
	c.Publish(context.Background(), bus.Message{Topic: "t/p/response", Payload: []byte(`{"status":"ok"}`)},
		bus.Message{Topic: "t/p/state", Payload: []byte("s"), Retain: true})
	w.WaitFor(5*time.Second, "the answer during the recall", func(m map[string]mqtttest.Message) bool {
		return m["t/p/response"].Payload != ""
	})
	if _, ok := w.Last("t/p/state"); ok {
		t.Error("a state reached the broker before the recall ended")
	}
	close(release)
	w.WaitFor(5*time.Second, "the state after the recall", func(m map[string]mqtttest.Message) bool {
		return m["t/p/state"].Payload == "s"
	})
}
