package activity

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// broker is a Publisher that keeps what it is given, and hands each
// message to the feeds that subscribed, as a broker would.
type broker struct {
	mu       sync.Mutex
	msgs     []bus.Message
	retained map[string][]byte
	feeds    []*Feed
}

func (b *broker) Publish(ctx context.Context, msgs ...bus.Message) error {
	b.mu.Lock()
	b.msgs = append(b.msgs, msgs...)
	if b.retained == nil {
		b.retained = map[string][]byte{}
	}
	for _, m := range msgs {
		if m.Retain {
			b.retained[m.Topic] = m.Payload
		}
	}
	feeds := slices.Clone(b.feeds)
	b.mu.Unlock()
	for _, m := range msgs {
		for _, f := range feeds {
			f.Observe(ctx, bus.Inbound{Topic: m.Topic, Payload: m.Payload, Size: len(m.Payload)})
		}
	}
	return nil
}

func (b *broker) saved(t *testing.T) []Item {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.retained["u/bridge/activity"]
	if !ok {
		return nil
	}
	items, err := Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

var tree = topics.Tree{Base: "u"}

// at is a time before any test's now (synctest's starts in 2000).
func at(minute int) time.Time { return time.Date(1999, 12, 31, 23, minute, 0, 0, time.UTC) }

func finished(printer string, minute int) state.Event {
	return state.Event{Type: state.PrintFinished, Printer: printer, PrinterName: "Farm " + printer, Time: at(minute),
		Job: &state.EventJob{Name: "Bracket"}}
}

func texts(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Printer + ":" + it.Event + it.Action
		if it.Late {
			out[i] += "(late)"
		}
	}
	return out
}

func TestItemsKeptInTimeOrder(t *testing.T) {
	f := New(Config{Tree: tree}, &broker{}, zerolog.Nop())
	var told []string
	f.Watch(func(items []Item) { told = append(told, texts(items)...) })
	f.Events([]state.Event{finished("a", 5), finished("b", 7)})
	late := finished("c", 6)
	late.Late = true
	f.Events([]state.Event{late})
	f.Answered("u/printers/a/set", commands.Response{Action: "pause", Status: "error",
		Error: &commands.ErrorBody{Code: "conflict", Message: "not printing"}})
	got := f.Recent()
	if want := []string{"a:print_finished", "c:print_finished(late)", "b:print_finished", "a:pause"}; !slices.Equal(texts(got), want) {
		t.Errorf("feed %q, want %q", texts(got), want)
	}
	if want := []string{"a:print_finished", "b:print_finished", "c:print_finished(late)", "a:pause"}; !slices.Equal(told, want) {
		t.Errorf("watchers told %q, want %q (as added)", told, want)
	}
	if it := got[3]; it.Kind != KindAnswer || it.Code != "conflict" || it.Status != "error" {
		t.Errorf("answer item %+v", it)
	}
	if it := got[0]; it.Kind != KindEvent || it.Name != "Farm a" || it.Job != "Bracket" || it.ID == "" {
		t.Errorf("event item %+v", it)
	}
}

func TestFeedKeepsTheNewest(t *testing.T) {
	f := New(Config{Tree: tree}, &broker{}, zerolog.Nop())
	for i := range 3*Length + 7 {
		f.Events([]state.Event{{Type: state.PrinterOnline, Printer: fmt.Sprint(i), Time: at(0).Add(time.Duration(i) * time.Second)}})
	}
	got := f.Recent()
	if len(got) != Length || got[0].Printer != fmt.Sprint(2*Length+7) || got[Length-1].Printer != fmt.Sprint(3*Length+6) {
		t.Errorf("kept %d items from %s to %s", len(got), got[0].Printer, got[len(got)-1].Printer)
	}
	if len(f.ids) > 2*Length {
		t.Errorf("%d ids remembered", len(f.ids))
	}
}

// A restart shows the feed as the last run left it (the retained copy,
// saved a moment after new items and at the stop), and goes on from it.
func TestFeedSurvivesARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &broker{}
		f := New(Config{Tree: tree}, b, zerolog.Nop())
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		f.Events([]state.Event{finished("a", 1)})
		f.Events([]state.Event{finished("b", 2)})
		time.Sleep(2 * time.Second)
		if got := texts(b.saved(t)); !slices.Equal(got, []string{"a:print_finished", "b:print_finished"}) {
			t.Fatalf("saved %q", got)
		}
		saves := len(b.msgs)
		f.Answered("u/clusters/c/set", commands.Response{Action: "move_to_top", Status: "ok"})
		stop() // the stop saves what waits
		<-done
		if len(b.msgs) != saves+1 {
			t.Errorf("%d saves after the stop, want 1", len(b.msgs)-saves)
		}

		next := New(Config{Tree: tree}, b, zerolog.Nop())
		next.Recalled(context.Background(), b.retained)
		later := finished("d", 0)
		later.Time = time.Now()
		next.Events([]state.Event{later})
		if got := texts(next.Recent()); !slices.Equal(got, []string{"a:print_finished", "b:print_finished", ":move_to_top",
			"d:print_finished"}) {
			t.Errorf("after the restart %q", got)
		}
	})
}

// In a group every member shows every member's items, and only the
// keeper saves the retained copy.
func TestGroupSharesTheFeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &broker{}
		leader := New(Config{Tree: tree, Instance: "one", Share: true, Keeps: func() bool { return true }}, b, zerolog.Nop())
		member := New(Config{Tree: tree, Instance: "two", Share: true, Keeps: func() bool { return false }}, b, zerolog.Nop())
		b.feeds = []*Feed{leader, member}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { leader.Run(ctx) })
		wg.Go(func() { member.Run(ctx) })
		leader.Events([]state.Event{finished("a", 1)})
		member.Events([]state.Event{finished("b", 2)})
		member.Answered("u/printers/b/set", commands.Response{Action: "pause", Status: "ok"})
		time.Sleep(2 * time.Second)
		want := []string{"a:print_finished", "b:print_finished", "b:pause"}
		for name, f := range map[string]*Feed{"leader": leader, "member": member} {
			if got := texts(f.Recent()); !slices.Equal(got, want) {
				t.Errorf("%s shows %q, want %q", name, got, want)
			}
		}
		if got := texts(b.saved(t)); !slices.Equal(got, want) {
			t.Errorf("saved %q, want %q", got, want)
		}
		for _, m := range b.msgs {
			if m.Retain && strings.Contains(string(m.Payload), "two.") && m.Topic != "u/bridge/activity" {
				t.Errorf("a member saved %s", m.Topic)
			}
		}
		stop()
		wg.Wait()
	})
}

// Whatever arrives on the feed's topics is checked: garbage, a huge
// text, an item without an id or time, a feed over the limit.
func TestDecodeRefusesWhatIsNotAFeed(t *testing.T) {
	good := Item{ID: "x-1", Time: at(1), Kind: KindEvent, Printer: "p"}
	cases := []struct {
		name    string
		payload string
		items   int
		err     bool
	}{
		{"good", mustJSON([]Item{good}), 1, false},
		{"not json", `{"items":`, 0, true},
		{"an object", `{"id":"x"}`, 0, true},
		{"no id", mustJSON([]Item{{Time: at(1), Kind: KindEvent}}), 0, false},
		{"no time", mustJSON([]Item{{ID: "x", Kind: KindEvent}}), 0, false},
		{"unknown kind", mustJSON([]Item{{ID: "x", Time: at(1), Kind: "script"}}), 0, false},
		{"a huge text", mustJSON([]Item{{ID: "x", Time: at(1), Kind: KindEvent, Detail: strings.Repeat("x", 5000)}}), 0, false},
		{"too large", "[" + strings.Repeat(" ", MaxPayload) + "]", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items, err := Decode([]byte(tc.payload))
			if (err != nil) != tc.err || len(items) != tc.items {
				t.Errorf("Decode = %d items, %v; want %d, error %v", len(items), err, tc.items, tc.err)
			}
		})
	}
	many := make([]Item, Length+20)
	for i := range many {
		many[i] = Item{ID: fmt.Sprint(i), Time: at(1), Kind: KindEvent}
	}
	if items, _ := Decode([]byte(mustJSON(many))); len(items) != Length || items[0].ID != "20" {
		t.Errorf("a long feed gives %d items", len(items))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(mustJSON([]Item{{ID: "x-1", Time: at(1), Kind: KindEvent}})))
	f.Add([]byte(`[{"id":"a","time":"2026-01-01T00:00:00Z","kind":"answer","status":"ok"}]`))
	f.Add([]byte(`[null,1,"x"]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		items, err := Decode(payload)
		if err != nil {
			return
		}
		if len(items) > Length {
			t.Fatalf("%d items", len(items))
		}
		feed := New(Config{Tree: tree}, &broker{}, zerolog.Nop())
		feed.Observe(context.Background(), bus.Inbound{Topic: "u/bridge/activity", Payload: payload})
		for _, it := range feed.Recent() {
			if it.ID == "" || it.Time.IsZero() || !bounded(it) {
				t.Fatalf("kept %+v", it)
			}
		}
	})
}
