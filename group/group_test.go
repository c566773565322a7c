package group

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

var tree = topics.Tree{Base: "u"}

func TestOwnerSpreadsKeysAndMovesOnlyTheDepartedShare(t *testing.T) {
	live := []string{"bridge-a", "bridge-b", "bridge-c"}
	owners := map[string]string{}
	count := map[string]int{}
	for i := range 3000 {
		key := fmt.Sprintf("cluster-%d", i)
		owners[key] = owner(key, live)
		count[owners[key]]++
	}
	for _, id := range live {
		if count[id] < 800 || count[id] > 1200 {
			t.Errorf("%s owns %d of 3000 keys, want about a third: %v", id, count[id], count)
		}
	}
	moved := 0
	for key, was := range owners {
		now := owner(key, []string{"bridge-a", "bridge-c"})
		if was != "bridge-b" && now != was {
			moved++
		}
		if now == "bridge-b" {
			t.Fatalf("%s went to the departed member", key)
		}
	}
	if moved != 0 {
		t.Errorf("%d keys of the members that stayed moved, want 0", moved)
	}
	if owner("x", nil) != "" {
		t.Error("an empty group has an owner")
	}
}

// fakeBroker keeps retained messages and hands each publish to every
// connected member, as the broker does with the members topic.
type fakeBroker struct {
	mu        sync.Mutex
	retained  map[string][]byte
	connected map[*Group]bool
	tap       func(bus.Message) // when set, is told of every message published
}

func newFakeBroker() *fakeBroker {
	return &fakeBroker{retained: map[string][]byte{}, connected: map[*Group]bool{}}
}

func (b *fakeBroker) publish(msgs ...bus.Message) {
	b.mu.Lock()
	if b.tap != nil {
		for _, m := range msgs {
			b.tap(m)
		}
	}
	var to []*Group
	for g, ok := range b.connected {
		if ok {
			to = append(to, g)
		}
	}
	for _, m := range msgs {
		if m.Retain && len(m.Payload) == 0 {
			delete(b.retained, m.Topic)
		} else if m.Retain {
			b.retained[m.Topic] = m.Payload
		}
	}
	b.mu.Unlock()
	for _, m := range msgs {
		for _, g := range to {
			g.Observe(context.Background(), bus.Inbound{Topic: m.Topic, Payload: m.Payload})
		}
	}
}

// member is one bridge's group on the fake broker.
type member struct {
	*Group
	b      *fakeBroker
	cancel func()
	done   chan error
}

type pubFunc func(...bus.Message)

func (f pubFunc) Publish(_ context.Context, msgs ...bus.Message) error { f(msgs...); return nil }

func (b *fakeBroker) join(t *testing.T, id string) *member {
	t.Helper()
	m := &member{b: b, done: make(chan error, 1)}
	m.Group = New(Config{Tree: tree, Name: "farm", ID: id, Version: "test", KeepAlive: 10 * time.Second},
		pubFunc(func(msgs ...bus.Message) {
			b.mu.Lock()
			up := b.connected[m.Group]
			b.mu.Unlock()
			if up {
				b.publish(msgs...)
			}
		}), zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- m.Run(ctx) }()
	m.connect()
	return m
}

// connect opens the member's connection: the retained announcements
// arrive, before the connect handler tells the group (as with mqttpub,
// which subscribes, then calls its handlers).
func (m *member) connect() {
	m.b.mu.Lock()
	m.b.connected[m.Group] = true
	retained := map[string][]byte{}
	for k, v := range m.b.retained {
		retained[k] = v
	}
	m.b.mu.Unlock()
	for topic, p := range retained {
		m.Observe(context.Background(), bus.Inbound{Topic: topic, Payload: p, Retained: true})
	}
	synctest.Wait() // what the others publish meanwhile arrives too
	m.Connected()
}

// cutOff drops the member's connection, and the broker fires its will;
// the process lives on.
func (m *member) cutOff() {
	m.b.mu.Lock()
	delete(m.b.connected, m.Group)
	m.b.mu.Unlock()
	m.Disconnected()
	m.b.publish(bus.Message{Topic: tree.BridgeMember(m.ID()), Retain: true})
}

// die is kill -9: the connection drops and the broker fires the will.
func (m *member) die() {
	m.b.mu.Lock()
	delete(m.b.connected, m.Group)
	m.b.mu.Unlock()
	m.Disconnected()
	m.cancel()
	m.b.publish(bus.Message{Topic: tree.BridgeMember(m.ID()), Retain: true})
}

// owners counts, for each key, the members that own it.
func owners(keys int, ms ...*member) (none, twice int) {
	for i := range keys {
		n := 0
		for _, m := range ms {
			if m.Owns(fmt.Sprintf("cluster-%d", i)) {
				n++
			}
		}
		switch {
		case n == 0:
			none++
		case n > 1:
			twice++
		}
	}
	return none, twice
}

func TestMembersDealTheFarmAndTakeOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		a, bb, c := b.join(t, "a"), b.join(t, "b"), b.join(t, "c")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if none, twice := owners(300, a, bb, c); none != 0 || twice != 0 {
			t.Fatalf("with 3 members: %d keys unowned, %d owned twice", none, twice)
		}
		if n := len(a.Live()); n != 3 {
			t.Fatalf("a sees %v", a.Live())
		}
		leaders := 0
		for _, m := range []*member{a, bb, c} {
			if m.Leads() {
				leaders++
			}
			if m.Alone() {
				t.Errorf("%s thinks it is alone", m.ID())
			}
		}
		if leaders != 1 {
			t.Errorf("%d leaders, want 1", leaders)
		}

		// One dies: the other two own everything at once.
		changed := 0
		var mu sync.Mutex
		a.OnChange(func() { mu.Lock(); changed++; mu.Unlock() })
		bb.die()
		synctest.Wait()
		if none, twice := owners(300, a, c); none != 0 || twice != 0 {
			t.Errorf("after b died: %d keys unowned, %d owned twice", none, twice)
		}
		mu.Lock()
		if changed == 0 {
			t.Error("a was not told of the change")
		}
		mu.Unlock()

		// The last but one stops cleanly: the last is alone.
		c.cancel()
		synctest.Wait()
		if err := <-c.done; err != nil {
			t.Fatal(err)
		}
		if !a.Alone() || !a.Owns("cluster-1") || !a.Leads() {
			t.Errorf("a alone %v, owns %v, leads %v", a.Alone(), a.Owns("cluster-1"), a.Leads())
		}
		a.cancel()
		<-a.done
		if !a.LastOut() || c.LastOut() {
			t.Errorf("last out: a %v (want true), c %v (want false)", a.LastOut(), c.LastOut())
		}
	})
}

// TestMemberCutOffRejoins: a member that lost the broker owns nothing;
// back, it sees every member from their retained announcements (back at
// once, none re-announces: their view is the same at their next look),
// and the keys are owned once each again, by a new incarnation of it.
func TestMemberCutOffRejoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		a, bb, c := b.join(t, "a"), b.join(t, "b"), b.join(t, "c")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		before := a.Session()
		a.cutOff()
		if a.Owns("cluster-1") || a.Leads() {
			t.Error("a member cut off still owns")
		}
		a.connect() // back at once: the others' view is the same at their next look
		time.Sleep(3 * time.Second)
		synctest.Wait()
		a.cutOff()
		synctest.Wait()
		a.connect() // and back after they saw it go
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if got := a.Live(); len(got) != 3 {
			t.Fatalf("a back sees %v, want all three", got)
		}
		if none, twice := owners(300, a, bb, c); none != 0 || twice != 0 {
			t.Errorf("after a came back: %d keys unowned, %d owned twice", none, twice)
		}
		if a.Session() == before || !slices.Contains(c.LiveSessions(), a.Session()) {
			t.Errorf("a's session %s (was %s); c sees %v", a.Session(), before, c.LiveSessions())
		}
		for _, m := range []*member{a, bb, c} {
			m.cancel()
			<-m.done
		}
	})
}

func TestJoiningMemberOwnsNothingUntilSeen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		a := b.join(t, "a")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// A member whose connection to the others is slow: it sees them,
		// they do not see it yet (its announcements are held back).
		var held []bus.Message
		var mu sync.Mutex
		n := &member{b: b, done: make(chan error, 1)}
		n.Group = New(Config{Tree: tree, Name: "farm", ID: "n", KeepAlive: 10 * time.Second},
			pubFunc(func(msgs ...bus.Message) { mu.Lock(); held = append(held, msgs...); mu.Unlock() }), zerolog.Nop())
		ctx, cancel := context.WithCancel(context.Background())
		go func() { n.done <- n.Run(ctx) }()
		n.connect()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		for i := range 100 {
			if n.Owns(fmt.Sprintf("cluster-%d", i)) {
				t.Fatal("the new member owns a key before the others saw it")
			}
		}
		// Its announcement reaches the others: a sees it, stops first,
		// says so; then n owns its share.
		mu.Lock()
		b.publish(held...)
		mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		if none, twice := owners(300, a, n); none != 0 || twice != 0 {
			t.Errorf("after the join: %d keys unowned, %d owned twice", none, twice)
		}
		mine := 0
		for i := range 300 {
			if n.Owns(fmt.Sprintf("cluster-%d", i)) {
				mine++
			}
		}
		if mine < 100 {
			t.Errorf("the new member owns %d of 300 keys, want about half", mine)
		}
		cancel()
		a.cancel()
		<-n.done
		<-a.done
	})
}

func TestDuplicateIDIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		first := b.join(t, "a")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		second := b.join(t, "a")
		select {
		case err := <-second.done:
			if !errors.Is(err, ErrDuplicate) {
				t.Fatalf("the second a ended with %v, want ErrDuplicate", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the second a was not refused")
		}
		if !first.Owns("cluster-1") || !first.Alone() {
			t.Error("the first a lost its place")
		}
		// When the first is gone, an a may start.
		first.die()
		third := b.join(t, "a")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if !third.Owns("cluster-1") {
			t.Error("an a started after the first died owns nothing")
		}
		third.cancel()
		<-third.done
	})
}

func TestForeignAnnouncementsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		a := b.join(t, "a")
		time.Sleep(2 * time.Second)
		for _, m := range []bus.Message{
			{Topic: tree.BridgeMember("x"), Payload: []byte("not json"), Retain: true},
			{Topic: tree.BridgeMember("y"), Payload: []byte(`{"id":"z","group":"farm"}`), Retain: true},
			{Topic: tree.BridgeMember("w"), Payload: []byte(`{"id":"w","group":"other"}`), Retain: true},
			{Topic: tree.BridgeMember("v"), Payload: make([]byte, maxAnnouncement+1), Retain: true},
			{Topic: "u/bridge/members", Payload: []byte(`{}`)},
		} {
			b.publish(m)
		}
		synctest.Wait()
		if live := a.Live(); len(live) != 1 || live[0] != "a" {
			t.Errorf("live %v, want a alone", live)
		}
		a.cancel()
		<-a.done
		// A clean stop clears the announcement.
		b.mu.Lock()
		_, kept := b.retained[tree.BridgeMember("a")]
		b.mu.Unlock()
		if kept {
			t.Error("a's announcement stayed after a clean stop")
		}
	})
}

// TestMissedAnnouncementIsSentAgain: a member whose announcement shows it
// does not see this one (it missed ours) gets ours again.
func TestMissedAnnouncementIsSentAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		a, c := b.join(t, "a"), b.join(t, "c")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		x := func(sees ...string) {
			ann, _ := json.Marshal(Announcement{ID: "x", Group: "farm", Session: "s", Sees: sees})
			a.Observe(context.Background(), bus.Inbound{Topic: tree.BridgeMember("x"), Payload: ann, Retained: true})
		}
		x("a", "c", "x")
		time.Sleep(time.Second)
		synctest.Wait()
		var sent []bus.Message
		var mu sync.Mutex
		b.mu.Lock()
		b.tap = func(m bus.Message) {
			mu.Lock()
			sent = append(sent, m)
			mu.Unlock()
		}
		b.mu.Unlock()
		x("c", "x") // x lost a: a's own view is the same
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		again := slices.ContainsFunc(sent, func(m bus.Message) bool { return m.Topic == tree.BridgeMember("a") })
		mu.Unlock()
		if !again {
			t.Error("a did not announce itself again to a member that does not see it")
		}
		for _, m := range []*member{a, c} {
			m.cancel()
			<-m.done
		}
	})
}
