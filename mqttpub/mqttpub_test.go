package mqttpub

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

func newClient(t *testing.T, url, id string) *Client {
	t.Helper()
	c, err := New(Config{URL: url, ClientID: id, StateTopic: "t/bridge/state", KeepAlive: 2 * time.Second,
		MaxReconnectInterval: 200 * time.Millisecond}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func run(t *testing.T, c *Client) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		start := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		return time.Since(start)
	}
	t.Cleanup(func() { stop() })
	return stop
}

// connected is a client of the broker at url, running and connected;
// the test's end stops it.
func connected(t *testing.T, url, id string) *Client {
	t.Helper()
	c := newClient(t, url, id)
	run(t, c)
	waitConnected(t, c)
	return c
}

func waitConnected(t *testing.T, c *Client) {
	t.Helper()
	waitFor(t, c, 10*time.Second, "client did not connect")
}

func waitFor(t *testing.T, c *Client, within time.Duration, failure string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !c.Connected() {
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"NoHost":    {URL: "tcp://", StateTopic: "s"},
		"BadScheme": {URL: "http://localhost:1883", StateTopic: "s"},
		"Opaque":    {URL: "localhost:1883", StateTopic: "s"},
		"MissingCA": {URL: "ssl://localhost:8883", StateTopic: "s", CAFile: "/nonexistent/ca.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg, zerolog.Nop()); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestOnlineRetainedAndOfflineOnShutdown(t *testing.T) {
	b := mqtttest.Start(t)
	w := mqtttest.Watch(t, b.URL(), "t/#")
	c := newClient(t, b.URL(), "c-online")
	stop := run(t, c)
	w.WaitFor(5*time.Second, "online", func(m map[string]mqtttest.Message) bool { return m["t/bridge/state"].Payload == topics.Online })
	if got := mqtttest.Retained(t, b.URL(), "t/bridge/state", 200*time.Millisecond)["t/bridge/state"]; got != topics.Online {
		t.Fatalf("retained state = %q, want online", got)
	}
	if took := stop(); took > 2*time.Second {
		t.Errorf("shutdown took %s, want under 2s", took)
	}
	if got := mqtttest.Retained(t, b.URL(), "t/bridge/state", 200*time.Millisecond)["t/bridge/state"]; got != topics.Offline {
		t.Fatalf("retained state after shutdown = %q, want offline", got)
	}
}

func TestRetainedPublishedOnlyWhenChanged(t *testing.T) {
	b := mqtttest.Start(t)
	w := mqtttest.Watch(t, b.URL(), "t/p/#")
	c := connected(t, b.URL(), "c-dedupe")
	ctx := context.Background()
	for _, p := range []string{"a", "a", "b", "b", "b", "a"} {
		if err := c.Publish(ctx, bus.Message{Topic: "t/p/state", Payload: []byte(p), Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	// Non-retained messages are never deduplicated: events repeat.
	for range 2 {
		if err := c.Publish(ctx, bus.Message{Topic: "t/p/event", Payload: []byte("e")}); err != nil {
			t.Fatal(err)
		}
	}
	// A marker published last: once it arrives, everything before it has.
	c.Publish(ctx, bus.Message{Topic: "t/p/marker", Payload: []byte("end")})
	w.WaitFor(5*time.Second, "marker", func(m map[string]mqtttest.Message) bool { return m["t/p/marker"].Payload == "end" })
	var states, events []string
	for _, m := range w.All() {
		switch m.Topic {
		case "t/p/state":
			states = append(states, m.Payload)
		case "t/p/event":
			events = append(events, m.Payload)
		}
	}
	if got, want := len(states), 3; got != want {
		t.Errorf("state publishes = %v, want a, b, a", states)
	}
	if len(events) != 2 {
		t.Errorf("event publishes = %v, want two", events)
	}
}

// A broker restarted without persistence comes back empty; every retained
// topic must be back within seconds of the reconnect.
func TestRepublishAfterBrokerRestart(t *testing.T) {
	b := mqtttest.Start(t)
	c := connected(t, b.URL(), "c-restart")
	ctx := context.Background()
	want := map[string]string{"t/bridge/state": topics.Online}
	for i, topic := range []string{"t/a/state", "t/b/state", "t/c/availability"} {
		payload := []byte{'x', byte('0' + i)}
		want[topic] = string(payload)
		if err := c.Publish(ctx, bus.Message{Topic: topic, Payload: payload, Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	// A topic cleared before the restart must not come back.
	c.Publish(ctx, bus.Message{Topic: "t/gone/state", Payload: []byte("x"), Retain: true})
	c.Publish(ctx, bus.Message{Topic: "t/gone/state", Retain: true})

	b.Restart()
	if got := mqtttest.Retained(t, b.URL(), "t/#", 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("restarted broker is not empty: %v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := mqtttest.Retained(t, b.URL(), "t/#", 200*time.Millisecond)
		if equalMaps(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retained after restart = %v, want %v", got, want)
		}
	}
}

// A connect republishes what its connection has not had: a topic sent on
// the open connection before the connect's own republish ran is not sent
// twice (it was, for every printer value, when the first poll beat the
// connect handler), one remembered while the broker was away is.
func TestConnectRepublishesOnlyWhatTheConnectionMissed(t *testing.T) {
	b := mqtttest.Start(t)
	c := connected(t, b.URL(), "c-once")
	ctx := context.Background()
	w := mqtttest.Watch(t, b.URL(), "t/#")
	c.Publish(ctx, bus.Message{Topic: "t/sent/state", Payload: []byte("on this connection"), Retain: true})
	c.mu.Lock()
	// As if remembered while the broker was away.
	c.retained["t/missed/state"] = kept{data: []byte("missed")}
	c.order = append(c.order, "t/missed/state")
	c.mu.Unlock()
	c.connected() // the connect handler, running late
	w.WaitFor(5*time.Second, "the missed topic", func(m map[string]mqtttest.Message) bool {
		return m["t/missed/state"].Payload == "missed"
	})
	time.Sleep(300 * time.Millisecond)
	n := 0
	for _, m := range w.All() {
		if m.Topic == "t/sent/state" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the topic sent on this connection went out %d times, want once", n)
	}
}

// Changes made while the broker is away are not lost: the latest payload
// is what the broker holds after the reconnect.
func TestPublishWhileDisconnected(t *testing.T) {
	b := mqtttest.Start(t)
	c := connected(t, b.URL(), "c-offline")
	ctx := context.Background()
	c.Publish(ctx, bus.Message{Topic: "t/x/state", Payload: []byte("old"), Retain: true})
	c.Publish(ctx, bus.Message{Topic: "t/y/state", Payload: []byte("doomed"), Retain: true})
	b.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for c.Connected() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c.Publish(pctx, bus.Message{Topic: "t/x/state", Payload: []byte("new"), Retain: true})
	c.Publish(pctx, bus.Message{Topic: "t/y/state", Retain: true})
	b.Restart()
	deadline = time.Now().Add(10 * time.Second)
	for {
		got := mqtttest.Retained(t, b.URL(), "t/#", 200*time.Millisecond)
		if got["t/x/state"] == "new" {
			if _, ok := got["t/y/state"]; ok {
				t.Fatalf("cleared topic came back: %v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after reconnect retained = %v, want t/x/state=new", got)
		}
	}
}

// The broker publishes the last will when the bridge dies without a
// DISCONNECT. The client runs in a child process that is killed.
func TestLastWillOnAbruptLoss(t *testing.T) {
	if url := os.Getenv("MQTTPUB_WILL_CHILD"); url != "" {
		connected(t, url, "c-will")
		fmt.Println("connected")
		select {} // until killed
	}
	b := mqtttest.Start(t)
	w := mqtttest.Watch(t, b.URL(), "t/bridge/state")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLastWillOnAbruptLoss$")
	cmd.Env = append(os.Environ(), "MQTTPUB_WILL_CHILD="+b.URL())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "connected\n" {
		cmd.Process.Kill()
		t.Fatalf("child said %q", line)
	}
	w.WaitFor(5*time.Second, "online", func(m map[string]mqtttest.Message) bool { return m["t/bridge/state"].Payload == topics.Online })
	cmd.Process.Kill()
	w.WaitFor(5*time.Second, "will", func(m map[string]mqtttest.Message) bool { return m["t/bridge/state"].Payload == topics.Offline })
	if got := mqtttest.Retained(t, b.URL(), "t/bridge/state", 200*time.Millisecond)["t/bridge/state"]; got != topics.Offline {
		t.Fatalf("retained state after kill = %q, want offline", got)
	}
}

func TestHandlersResubscribedAfterRestart(t *testing.T) {
	b := mqtttest.Start(t)
	c := newClient(t, b.URL(), "c-sub")
	got := make(chan bus.Inbound, 10)
	c.Handle("t/cmd/#", func(_ context.Context, m bus.Inbound) { got <- m })
	run(t, c)
	waitConnected(t, c)
	w := mqtttest.Watch(t, b.URL(), "t/none")
	time.Sleep(100 * time.Millisecond)
	w.Publish("t/cmd/x", "one", false)
	expect(t, got, "t/cmd/x", "one", false)

	b.Restart()
	waitReconnect(t, c)
	w2 := mqtttest.Watch(t, b.URL(), "t/none")
	deadline := time.Now().Add(10 * time.Second)
	for {
		w2.Publish("t/cmd/y", "two", false)
		select {
		case m := <-got:
			if m.Topic != "t/cmd/y" || string(m.Payload) != "two" {
				t.Fatalf("got %+v", m)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no message after the broker restart: not resubscribed")
		}
	}
}

func TestRetainedCommandIsFlagged(t *testing.T) {
	b := mqtttest.Start(t)
	w := mqtttest.Watch(t, b.URL(), "t/none")
	w.Publish("t/cmd/old", "abort", true)
	c := newClient(t, b.URL(), "c-retained")
	got := make(chan bus.Inbound, 10)
	c.Handle("t/cmd/#", func(_ context.Context, m bus.Inbound) { got <- m })
	run(t, c)
	expect(t, got, "t/cmd/old", "abort", true)
}

func expect(t *testing.T, ch chan bus.Inbound, topic, payload string, retained bool) {
	t.Helper()
	select {
	case m := <-ch:
		if m.Topic != topic || !bytes.Equal(m.Payload, []byte(payload)) || m.Retained != retained {
			t.Fatalf("got %s %q retained=%v, want %s %q retained=%v", m.Topic, m.Payload, m.Retained, topic, payload, retained)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}

func waitReconnect(t *testing.T, c *Client) {
	t.Helper()
	waitFor(t, c, 15*time.Second, "no reconnect")
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestRepublishOrder(t *testing.T) {
	b := mqtttest.Start(t)
	c := connected(t, b.URL(), "c-republish")
	ctx := context.Background()
	// Published interleaved: state, config, state, config.
	for i := range 3 {
		c.Publish(ctx, bus.Message{Topic: fmt.Sprintf("base/p%d/state", i), Payload: []byte("s"), Retain: true},
			bus.Message{Topic: fmt.Sprintf("ha/device/p%d/config", i), Payload: []byte("c"), Retain: true})
	}
	w := mqtttest.Watch(t, b.URL(), "#")
	time.Sleep(300 * time.Millisecond) // the retained ones arrive on subscribe
	w.Reset()
	if err := c.Republish(ctx, "ha/", "base/"); err != nil {
		t.Fatal(err)
	}
	w.WaitFor(5*time.Second, "republish", func(m map[string]mqtttest.Message) bool { return len(m) >= 6 })
	var kinds string
	for _, m := range w.All() {
		if strings.HasPrefix(m.Topic, "ha/") {
			kinds += "c"
		} else if strings.HasPrefix(m.Topic, "base/") {
			kinds += "s"
		}
	}
	if kinds != "cccsss" {
		t.Errorf("republish order %q, want every config before every state", kinds)
	}
}

// TestRetainedCopy: the probe sees what the broker holds retained on a
// topic, and nothing where it holds nothing (issue 9.1).
func TestRetainedCopy(t *testing.T) {
	b := mqtttest.Start(t)
	w := mqtttest.Watch(t, b.URL(), "t/none")
	w.Publish("t/p/set", "pause", true)
	c, err := New(Config{URL: b.URL(), ClientID: "c-probe", ProbeTopic: "t/bridge/probe"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitConnected(t, c)
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	var got []byte
	for {
		got, err = c.RetainedCopy(ctx, "t/p/set")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the probe connection comes up just after the main one
	}
	if err != nil || string(got) != "pause" {
		t.Fatalf("RetainedCopy = %q, %v; want pause", got, err)
	}
	for range 3 { // repeatable, and nothing where nothing is held
		if got, err := c.RetainedCopy(ctx, "t/q/set"); err != nil || got != nil {
			t.Fatalf("RetainedCopy of an empty topic = %q, %v", got, err)
		}
		if got, err := c.RetainedCopy(ctx, "t/p/set"); err != nil || string(got) != "pause" {
			t.Fatalf("RetainedCopy again = %q, %v", got, err)
		}
	}
}

// TestBusyAndMaxPayload: a message that finds the inbox full goes to the
// Busy handler, never silently nowhere, and a payload over MaxPayload
// arrives without its bytes (issue 9.2, 9.5).
func TestBusyAndMaxPayload(t *testing.T) {
	b := mqtttest.Start(t)
	w := mqtttest.Watch(t, b.URL(), "t/none")
	c, err := New(Config{URL: b.URL(), ClientID: "c-busy", InboxSize: 1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	handled, busy := 0, 0
	var big bus.Inbound
	c.Subscribe(Subscription{Filter: "t/in/+", MaxPayload: func(string) int { return 8 },
		Handle: func(_ context.Context, m bus.Inbound) {
			if m.Topic == "t/in/big" {
				mu.Lock()
				big = m
				mu.Unlock()
				return
			}
			<-release
			mu.Lock()
			handled++
			mu.Unlock()
		},
		Busy: func(_ context.Context, m bus.Inbound) { mu.Lock(); busy++; mu.Unlock() }})
	run(t, c)
	waitConnected(t, c)
	for i := range 20 {
		w.Publish(fmt.Sprintf("t/in/%d", i), "x", false)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := busy
		mu.Unlock()
		if n >= 18 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	w.Publish("t/in/big", strings.Repeat("y", 100), false)
	deadline = time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := handled+busy == 20 && big.Topic != ""
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("handled %d + busy %d of 20, big %+v", handled, busy, big)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !big.Truncated || len(big.Payload) != 100 || big.Size != 100 {
		t.Errorf("oversize message: payload %d bytes, truncated %v, size %d", len(big.Payload), big.Truncated, big.Size)
	}
}

// TestBackWithinSecondsAfterLongOutage: after a broker outage long enough
// for the backoff to reach its cap, the client is back within 5 s of the
// broker's return (issue 9.13). The default cap is used.
func TestBackWithinSecondsAfterLongOutage(t *testing.T) {
	b := mqtttest.Start(t)
	c, err := New(Config{URL: b.URL(), ClientID: "c-outage", KeepAlive: 2 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitConnected(t, c)
	b.Stop()
	time.Sleep(12 * time.Second) // 0.5 + 1 + 2 + 4 + 4: the cap is reached
	b.Restart()
	start := time.Now()
	for !c.Connected() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("not back on the broker 5 s after its return")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("back on the broker %s after its return from a 12 s outage", time.Since(start).Round(time.Millisecond))
}

// TestLargeRetainedKeptPacked: a large retained payload is remembered
// deflated, still deduplicated, and republished whole after a restart of
// the broker.
func TestLargeRetainedKeptPacked(t *testing.T) {
	big := []byte(`{"config":"` + strings.Repeat("abcdefgh", 2000) + `"}`)
	if k := keep(big, false); !k.packed || len(k.data) > len(big)/5 || !k.same(big) || !bytes.Equal(k.payload(), big) {
		t.Fatalf("packed %v, %d of %d bytes", k.packed, len(k.data), len(big))
	}
	if k := keep([]byte("small"), false); k.packed || !k.same([]byte("small")) || k.same([]byte("other")) {
		t.Fatalf("small payload kept wrong")
	}
	b := mqtttest.Start(t)
	c := connected(t, b.URL(), "c-packed")
	ctx := context.Background()
	c.Publish(ctx, bus.Message{Topic: "t/big/config", Payload: big, Retain: true})
	b.Restart()
	waitReconnect(t, c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := mqtttest.Retained(t, b.URL(), "t/big/config", 200*time.Millisecond)["t/big/config"]; got == string(big) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the large retained payload did not come back whole")
		}
	}
}

// TestRenewableRetainedAsksSource: with a Source, a Renewable payload is
// remembered as its sum only (an unchanged one is still skipped), and a
// reconnect republishes what the Source gives now, or nothing when it has
// nothing.
func TestRenewableRetainedAsksSource(t *testing.T) {
	state := []byte(`{"status":"printing","progress":41.5,"job":"benchy","padding":"` + strings.Repeat("x", 64) + `"}`)
	if k := keep(state, true); !k.renewed || k.data != nil || !k.same(state) || k.same(append([]byte("{}"), state...)) {
		t.Fatalf("renewable payload kept as %+v", k)
	}
	var mu sync.Mutex
	current := map[string][]byte{"t/p1/state": []byte(`{"status":"paused","padding":"` + strings.Repeat("y", 64) + `"}`)}
	asked := 0
	b := mqtttest.Start(t)
	c := newClient(t, b.URL(), "c-renew")
	c.SetSource(func(topic string) ([]byte, bool) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		p, ok := current[topic]
		return p, ok
	})
	run(t, c)
	waitConnected(t, c)
	ctx := context.Background()
	c.Publish(ctx, bus.Message{Topic: "t/p1/state", Payload: state, Retain: true, Renewable: true},
		bus.Message{Topic: "t/p2/state", Payload: state, Retain: true, Renewable: true})
	before := c.Published()
	c.Publish(ctx, bus.Message{Topic: "t/p1/state", Payload: bytes.Clone(state), Retain: true, Renewable: true})
	if c.Published() != before {
		t.Errorf("an unchanged renewable payload was published again")
	}
	b.Restart()
	waitReconnect(t, c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := mqtttest.Retained(t, b.URL(), "t/#", 200*time.Millisecond)
		if got["t/p1/state"] == string(current["t/p1/state"]) {
			if _, ok := got["t/p2/state"]; ok {
				t.Errorf("a topic the source has nothing for was republished: %q", got["t/p2/state"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the broker holds %q, want the source's payload", got)
		}
	}
	mu.Lock()
	n := asked
	mu.Unlock()
	if n < 2 {
		t.Errorf("source asked %d times, want once per renewable topic", n)
	}
	// What the source gave is now the last published: not sent again.
	before = c.Published()
	c.Publish(ctx, bus.Message{Topic: "t/p1/state", Payload: current["t/p1/state"], Retain: true, Renewable: true})
	if c.Published() != before {
		t.Errorf("the republished payload was published again")
	}
}

// Retained finds what other clients retained below the filters, keeps a
// word of each payload, and leaves out cleared topics and other branches.
func TestRetainedFindsTopicsAndKeepsAWord(t *testing.T) {
	b := mqtttest.Start(t)
	other := connected(t, b.URL(), "c-other")
	ctx := context.Background()
	big := bytes.Repeat([]byte("z"), 20_000)
	for _, m := range []bus.Message{
		{Topic: "old/printers/p1/state", Payload: big, Retain: true},
		{Topic: "old/printers/p2/availability", Payload: []byte("online"), Retain: true},
		{Topic: "old/printers/p3/state", Payload: []byte("x"), Retain: true},
		{Topic: "old/printers/p3/state", Retain: true}, // cleared
		{Topic: "elsewhere/a", Payload: []byte("x"), Retain: true},
	} {
		if err := other.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c := connected(t, b.URL(), "c-sweep")
	got, err := c.Retained(ctx, []string{"old/printers/+/+"}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"old/printers/p1/state": string(big[:RetainedKeep]), "old/printers/p2/availability": "online"}
	if len(got) != len(want) {
		t.Fatalf("Retained = %q, want %q", got, want)
	}
	for topic, p := range want {
		if string(got[topic]) != p {
			t.Errorf("Retained[%s] = %q, want %q", topic, got[topic], p)
		}
	}
}

// A member of a group of bridges: its will clears its announcement, and
// the bridge's "offline" comes from HoldWill's connection only while it
// holds it (the last member). The client runs in a child process that is
// killed.
func TestGroupWills(t *testing.T) {
	if url := os.Getenv("MQTTPUB_GROUP_CHILD"); url != "" {
		c, err := New(Config{URL: url, ClientID: "c-member", StateTopic: "t/bridge/state",
			WillTopic: "t/bridge/members/a", KeepAlive: 2 * time.Second}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		run(t, c)
		waitConnected(t, c)
		c.Publish(context.Background(), bus.Message{Topic: "t/bridge/members/a", Payload: []byte(`{"id":"a"}`), Retain: true})
		ctx, cancel := context.WithCancel(context.Background())
		held := make(chan struct{})
		go func() { c.HoldWill(ctx, "t/bridge/state", []byte(topics.Offline), nil); close(held) }()
		time.Sleep(500 * time.Millisecond) // its connection is up
		if os.Getenv("MQTTPUB_GROUP_RELEASE") != "" {
			cancel() // another member came: the will is dropped
			<-held
		}
		fmt.Println("connected")
		select {} // until killed
	}
	for _, tt := range []struct {
		name    string
		release string
		state   string // bridge/state after the kill
	}{
		{"last member", "", topics.Offline},
		{"one of several", "1", topics.Online},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := mqtttest.Start(t)
			cmd := exec.Command(os.Args[0], "-test.run=^TestGroupWills$")
			cmd.Env = append(os.Environ(), "MQTTPUB_GROUP_CHILD="+b.URL(), "MQTTPUB_GROUP_RELEASE="+tt.release)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			if line, _ := bufio.NewReader(out).ReadString('\n'); line != "connected\n" {
				cmd.Process.Kill()
				t.Fatalf("child said %q", line)
			}
			w := mqtttest.Watch(t, b.URL(), "t/bridge/#")
			w.WaitFor(5*time.Second, "announced", func(m map[string]mqtttest.Message) bool {
				return m["t/bridge/members/a"].Payload != "" && m["t/bridge/state"].Payload == topics.Online
			})
			cmd.Process.Kill()
			w.WaitFor(5*time.Second, "the announcement cleared", func(m map[string]mqtttest.Message) bool {
				msg, ok := m["t/bridge/members/a"]
				return ok && msg.Payload == ""
			})
			time.Sleep(500 * time.Millisecond)
			if got := mqtttest.Retained(t, b.URL(), "t/bridge/state", 200*time.Millisecond)["t/bridge/state"]; got != tt.state {
				t.Errorf("bridge state after the kill = %q, want %q", got, tt.state)
			}
		})
	}
}

// A member that is not the last says nothing of the bridge when it stops.
func TestNoOfflineOnStopWhenOthersLive(t *testing.T) {
	b := mqtttest.Start(t)
	c, err := New(Config{URL: b.URL(), ClientID: "c-quiet", StateTopic: "t/bridge/state", KeepAlive: 2 * time.Second,
		OfflineOnStop: func() bool { return false }}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	waitConnected(t, c)
	stop()
	if got := mqtttest.Retained(t, b.URL(), "t/bridge/state", 200*time.Millisecond)["t/bridge/state"]; got != topics.Online {
		t.Errorf("bridge state after a clean stop = %q, want online (another member lives)", got)
	}
}
