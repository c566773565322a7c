package commands

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
)

// fakeGroup is a member "me" of a group whose owners the test sets.
type fakeGroup struct {
	mu   sync.Mutex
	mine bool     // this member owns every key
	live []string // the live members
}

func (g *fakeGroup) Session() string { return "me@1" }
func (g *fakeGroup) Joined() bool    { return true }
func (g *fakeGroup) Owns(string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mine
}
func (g *fakeGroup) LiveSessions() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.live)
}
func (g *fakeGroup) set(mine bool, live ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mine, g.live = mine, live
}

// claims records the claims a member publishes.
type claims struct {
	mu   sync.Mutex
	sent []claim
}

func (c *claims) PublishAcked(_ context.Context, m bus.Message) error {
	var cl claim
	if err := json.Unmarshal(m.Payload, &cl); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, cl)
	return nil
}

func TestGroupCommands(t *testing.T) {
	const pause = `{"action":"pause","transaction":"t1"}`
	answer := func(status, code string) string {
		r := Response{Status: status, Action: "pause", Transaction: json.RawMessage(`"t1"`)}
		if code != "" {
			r.Error = &ErrorBody{Code: code}
		}
		b, _ := json.Marshal(r)
		return string(b)
	}
	claimBy := func(member string) string {
		b, _ := json.Marshal(claim{Member: member, Response: "u/printers/printing/response", Action: "pause",
			Transaction: json.RawMessage(`"t1"`)})
		return string(b)
	}
	tests := []struct {
		name string
		// seen is what the other members published after the command:
		// topic and payload pairs.
		seen  [][2]string
		age   time.Duration // how old the command is when this member takes over
		live  []string      // the members live then (default: me, and b restarted)
		calls int           // cloud calls after the takeover
		code  string        // the final answer this member gives ("" none, "ok")
	}{
		{name: "AnsweredByOwner", seen: [][2]string{{"u/printers/printing/response", answer("ok", "")}}},
		{name: "OwnerGoneBeforeClaim", calls: 1, code: "ok"},
		{name: "OwnerGoneAfterClaim", seen: [][2]string{{"u/bridge/claims/b", claimBy("b@1")},
			{"u/printers/printing/response", answer("pending", "")}}, code: CodeInterrupted},
		{name: "ClaimantStillLive", live: []string{"me@1", "b@1"},
			seen: [][2]string{{"u/bridge/claims/b", claimBy("b@1")}}},
		{name: "TooLate", age: 2 * time.Minute, code: CodeTimeout},
		{name: "OtherPrinterAnswered", seen: [][2]string{{"u/printers/paused/response", answer("ok", "")}},
			calls: 1, code: "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &fakeGroup{live: []string{"b@1", "me@1"}}
			acked := &claims{}
			r := newRig(Config{Timeout: time.Minute, Group: g, Acked: acked})
			now := time.Now()
			r.h.now = func() time.Time { return now }
			ctx := context.Background()
			if got := r.send("u/printers/printing/set", pause, false); len(got) != 0 {
				t.Fatalf("a member that does not own the printer answered: %+v", got)
			}
			for _, m := range tc.seen {
				r.h.Observed(ctx, bus.Inbound{Topic: m[0], Payload: []byte(m[1])})
			}
			// This member owns everything now; b is gone (b@2: restarted
			// under its id), or still finishing what it claimed.
			live := tc.live
			if live == nil {
				live = []string{"me@1", "b@2"}
			}
			g.set(true, live...)
			now = now.Add(tc.age)
			for range 2 {
				r.h.takeOver(ctx)
			}
			r.h.Wait()
			if got := len(r.cloud.Calls()); got != tc.calls {
				t.Errorf("cloud calls = %d (%v), want %d", got, r.cloud.Calls(), tc.calls)
			}
			got := r.answersSince(0)
			switch {
			case tc.code == "" && len(got) > 0:
				t.Errorf("answered %+v; the owner had", got)
			case tc.code == "ok" && final(got).Status != "ok":
				t.Errorf("answers = %+v, want ok", got)
			case tc.code != "" && tc.code != "ok" && (final(got).Error == nil || final(got).Error.Code != tc.code):
				t.Errorf("answers = %+v, want %s", got, tc.code)
			}
			if tc.calls > 0 && len(acked.sent) != 1 {
				t.Errorf("claims = %+v, want the one command claimed before the cloud call", acked.sent)
			}
			// Nothing is held any more: a further look does nothing.
			r.h.takeOver(ctx)
			r.h.Wait()
			if n := len(r.cloud.Calls()); n != tc.calls {
				t.Errorf("a second look called the cloud again: %v", r.cloud.Calls())
			}
		})
	}
}

// TestGroupOwnerTakesCommandsAtOnce: the owner claims a command before it
// reaches the cloud; a retained one or a bad one is answered only by it.
func TestGroupOwnerTakesCommandsAtOnce(t *testing.T) {
	g := &fakeGroup{mine: true, live: []string{"me@1"}}
	acked := &claims{}
	r := newRig(Config{Group: g, Acked: acked})
	if got := final(r.send("u/printers/printing/set", `{"action":"pause","transaction":7}`, false)); got.Status != "ok" {
		t.Fatalf("owner's answer = %+v", got)
	}
	if len(acked.sent) != 1 || acked.sent[0].Member != "me@1" || string(acked.sent[0].Transaction) != "7" {
		t.Errorf("claims = %+v", acked.sent)
	}
	g.set(false, "b@1", "me@1")
	for _, payload := range []string{`{"action":`, `{"action":"resume"}`} {
		if got := r.send("u/printers/paused/set", payload, false); len(got) != 0 {
			t.Errorf("%s: a member that does not own the printer answered %+v", payload, got)
		}
	}
	if got := r.send("u/printers/paused/set", `{"action":"resume"}`, true); len(got) != 0 {
		t.Errorf("a retained command answered by a member that does not own it: %+v", got)
	}
}

// answersSince are the answers published from index start on.
func (r *rig) answersSince(start int) []Response {
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	var out []Response
	for _, m := range r.out.msgs[start:] {
		var resp Response
		if json.Unmarshal(m.Payload, &resp) == nil && resp.Status != "" {
			out = append(out, resp)
		}
	}
	return out
}

// TestGroupPageCommandGoesToItsOwner: a command from the page for a
// printer another member owns is sent to it over MQTT, with a transaction
// of its own, and its answers reach the caller.
func TestGroupPageCommandGoesToItsOwner(t *testing.T) {
	g := &fakeGroup{live: []string{"b@1", "me@1"}}
	r := newRig(Config{Group: g, Acked: &claims{}})
	var mu sync.Mutex
	var got []Response
	ctx, cancel := context.WithCancel(context.Background())
	r.h.Submit(ctx, "u/printers/printing/set", []byte(`{"action":"pause"}`), func(a Response) {
		mu.Lock()
		got = append(got, a)
		mu.Unlock()
	})
	r.out.mu.Lock()
	sent := slices.Clone(r.out.msgs)
	r.out.mu.Unlock()
	if len(sent) != 1 || sent[0].Topic != "u/printers/printing/set" || sent[0].Retain {
		t.Fatalf("published %+v; want the command on its set topic, not retained", sent)
	}
	tx := TransactionOf(sent[0].Payload)
	if len(tx) == 0 || ActionOf(sent[0].Payload) != "pause" {
		t.Fatalf("forwarded %s; want the pause with a transaction", sent[0].Payload)
	}
	if n := len(r.cloud.Calls()); n != 0 {
		t.Errorf("a member that does not own the printer called the cloud: %v", r.cloud.Calls())
	}
	for _, status := range []string{"pending", "ok"} {
		b, _ := json.Marshal(Response{Status: status, Action: "pause", Transaction: tx})
		r.h.Observed(ctx, bus.Inbound{Topic: "u/printers/printing/response", Payload: b})
	}
	// Someone else's answer on the same topic is not the caller's.
	other, _ := json.Marshal(Response{Status: "ok", Action: "pause", Transaction: json.RawMessage(`"x"`)})
	r.h.Observed(ctx, bus.Inbound{Topic: "u/printers/printing/response", Payload: other})
	cancel()
	r.h.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Status != "pending" || got[1].Status != "ok" {
		t.Errorf("the caller got %+v; want pending, then ok", got)
	}
}
