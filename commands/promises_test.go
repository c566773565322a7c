package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// fakeProber answers RetainedCopy from its fields.
type fakeProber struct {
	held []byte
	err  error
}

func (f fakeProber) RetainedCopy(context.Context, string) ([]byte, error) { return f.held, f.err }

// clears lists the topics the handler cleared (empty retained messages).
func (r *rig) clears() []string {
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	var out []string
	for _, m := range r.out.msgs {
		if m.Retain && len(m.Payload) == 0 {
			out = append(out, m.Topic)
		}
	}
	return out
}

func codeOf(rs []Response) string {
	if len(rs) != 1 || rs[0].Error == nil {
		return ""
	}
	return rs[0].Error.Code
}

// TestRetainedCommands: a retained command is answered retained once and
// cleared; the broker's retained copy of a command that arrived looking
// live stops it too; a stale retained payload is cleared and the live
// command carried out (issue 9.1, 9.5).
func TestRetainedCommands(t *testing.T) {
	t.Run("FlaggedRetained", func(t *testing.T) {
		r := newRig(Config{})
		rs := r.send("u/printers/printing/set", `{"action":"abort","transaction":"x"}`, true)
		if codeOf(rs) != CodeRetained || rs[0].Action != "abort" || string(rs[0].Transaction) != `"x"` {
			t.Fatalf("answers %+v", rs)
		}
		if rs := r.send("u/printers/printing/set", `{"action":"abort","transaction":"x"}`, true); len(rs) != 0 {
			t.Errorf("second delivery answered again: %+v", rs)
		}
		if c := r.clears(); len(c) != 2 || c[0] != "u/printers/printing/set" {
			t.Errorf("clears %v", c)
		}
		if rs := r.send("u/printers/printing/set", ``, false); len(rs) != 0 {
			t.Errorf("the echo of our clear was answered: %+v", rs)
		}
		if len(r.cloud.Calls()) != 0 {
			t.Errorf("cloud called: %v", r.cloud.Calls())
		}
	})
	t.Run("LiveButRetainedOnBroker", func(t *testing.T) {
		r := newRig(Config{Prober: fakeProber{held: []byte("pause")}})
		rs := r.send("u/printers/printing/set", `pause`, false)
		if codeOf(rs) != CodeRetained || len(r.cloud.Calls()) != 0 {
			t.Fatalf("answers %+v, calls %v", rs, r.cloud.Calls())
		}
		if c := r.clears(); len(c) != 1 {
			t.Errorf("clears %v, want the retained copy cleared", c)
		}
	})
	t.Run("StaleRetainedOnBroker", func(t *testing.T) {
		r := newRig(Config{Prober: fakeProber{held: []byte("resume")}})
		rs := r.send("u/printers/printing/set", `pause`, false)
		if final(rs).Status != "ok" || len(r.cloud.Calls()) != 1 || len(r.clears()) != 1 {
			t.Fatalf("answers %+v, calls %v, clears %v", rs, r.cloud.Calls(), r.clears())
		}
	})
	t.Run("ProbeFails", func(t *testing.T) {
		r := newRig(Config{Prober: fakeProber{err: errors.New("down")}})
		if rs := r.send("u/printers/printing/set", `pause`, false); codeOf(rs) != CodeBusy || len(r.cloud.Calls()) != 0 {
			t.Fatalf("answers %+v", rs)
		}
	})
	t.Run("OversizeRetained", func(t *testing.T) {
		r := newRig(Config{})
		r.h.Handle(context.Background(), bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(`{"action":"pause"`), Truncated: true, Size: 1 << 20, Retained: true})
		r.h.Wait()
		if c := r.clears(); len(c) != 1 {
			t.Errorf("an oversize retained command was not cleared: %v", c)
		}
		if rs := r.send("u/printers/printing/set", "", false); len(rs) != 0 {
			t.Errorf("answers %+v", rs)
		}
	})
	t.Run("MemoryIsBounded", func(t *testing.T) {
		r := newRig(Config{})
		big := `{"action":"pause","transaction":"` + strings.Repeat("x", 100) + `"}`
		for i := range 3 * retainedMemory {
			r.h.Handle(context.Background(), bus.Inbound{Topic: "u/printers/p" + string(rune('a'+i%26)) + "/set",
				Payload: []byte(big + strings.Repeat(" ", i)), Retained: true})
		}
		r.h.mu.Lock()
		n, m := len(r.h.retained), len(r.h.retOrder)
		r.h.mu.Unlock()
		if n > retainedMemory || m > retainedMemory {
			t.Errorf("remembers %d retained commands (%d in order), want at most %d", n, m, retainedMemory)
		}
	})
}

// TestEmptyPayloads: an empty message on a set topic is the clearing of a
// retained command, not a command: no answer. On a bridge request topic
// it is the request (issue 9.8).
func TestEmptyPayloads(t *testing.T) {
	r := newRig(Config{})
	for _, p := range []string{"", "  \n"} {
		if rs := r.send("u/printers/printing/set", p, false); len(rs) != 0 {
			t.Errorf("empty %q answered %+v", p, rs)
		}
		if rs := r.send("u/clusters/farm/set", p, false); len(rs) != 0 {
			t.Errorf("empty %q on a cluster answered %+v", p, rs)
		}
	}
	if rs := r.send("u/bridge/request/refresh", "", false); final(rs).Status != "ok" {
		t.Errorf("empty refresh request: %+v", rs)
	}
}

// TestAnswersNameTheAction: error answers keep a readable action and say
// plainly what was wrong; refresh of an unknown cluster is not_found; a
// field another action takes is refused (issue 9.7, 9.8).
func TestAnswersNameTheAction(t *testing.T) {
	tests := []struct {
		name, topic, payload, action, code, message string
	}{
		{"UnknownField", "u/printers/printing/set", `{"action":"pause","bogus":1}`, "pause", CodeBadRequest, `unknown field "bogus"`},
		{"JobOnAbort", "u/printers/printing/set", `{"action":"abort","job":"other"}`, "abort", CodeBadRequest, `abort takes no field "job"`},
		{"ClusterOnPause", "u/printers/printing/set", `{"action":"pause","cluster":"farm"}`, "pause", CodeBadRequest, `"cluster"`},
		{"JobIDOnRemove", "u/clusters/farm/set", `{"action":"remove","job":"q1","job_id":"x"}`, "remove", CodeBadRequest, `remove takes job, not "job_id"`},
		{"TasksOnPrint", "u/bridge/request/print", `{"cluster":"farm","job_id":"x","tasks":[]}`, "print", CodeBadRequest, `"tasks"`},
		{"WrongType", "u/clusters/farm/set", `{"action":"remove","job":5}`, "remove", CodeBadRequest, `field "job" must be a string`},
		{"RefreshUnknownCluster", "u/bridge/request/refresh", `{"cluster":"ghost"}`, "refresh", CodeNotFound, `no cluster "ghost"`},
		{"NotAnObject", "u/printers/printing/set", `["pause"]`, "", CodeBadRequest, `a JSON object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(Config{})
			rs := r.send(tt.topic, tt.payload, false)
			if codeOf(rs) != tt.code || rs[0].Action != tt.action || !strings.Contains(rs[0].Error.Message, tt.message) {
				t.Fatalf("answers %+v (%v), want %s %s %q", rs, rs[0].Error, tt.action, tt.code, tt.message)
			}
			if len(r.cloud.Calls()) != 0 {
				t.Errorf("cloud called: %v", r.cloud.Calls())
			}
		})
	}
}

// TestSameActionJoinsTheOneUnderWay: 500 pauses while one is under way
// reach the cloud once, and each gets one final answer, that pause's
// (issue 9.3, issue 19.1).
func TestSameActionJoinsTheOneUnderWay(t *testing.T) {
	r := newRig(Config{MaxInFlight: 1000})
	r.cloud.block = make(chan struct{})
	ctx := context.Background()
	for i := range 500 {
		r.h.Handle(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: fmt.Appendf(nil, `{"action":"pause","transaction":%d}`, i)})
	}
	close(r.cloud.block)
	r.h.Wait()
	if c := r.cloud.Calls(); len(c) != 1 {
		t.Fatalf("%d cloud calls, want 1", len(c))
	}
	finals := map[string]int{}
	r.out.mu.Lock()
	for _, m := range r.out.msgs {
		var resp Response
		if json.Unmarshal(m.Payload, &resp) == nil && resp.Status != "pending" {
			finals[string(resp.Transaction)+" "+resp.Status]++
		}
	}
	r.out.mu.Unlock()
	for i := range 500 {
		if n := finals[fmt.Sprintf("%d ok", i)]; n != 1 {
			t.Errorf("transaction %d: %d ok answers, want 1 (%d answers in all)", i, n, len(finals))
			break
		}
	}
}

// TestBusyLeavesTransactionFree: a command answered busy can be sent
// again with the same transaction (issue 9.4); the inbox-full handler
// answers busy with the transaction (issue 9.2).
func TestBusyLeavesTransactionFree(t *testing.T) {
	r := newRig(Config{MaxInFlight: 1})
	r.cloud.block = make(chan struct{})
	ctx := context.Background()
	r.h.Handle(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(`{"action":"pause","transaction":"t1"}`)})
	rs := r.send2("u/clusters/farm/set", `{"action":"remove","job":"q1","transaction":"t2"}`)
	if codeOf(rs) != CodeBusy {
		t.Fatalf("answers %+v, want busy", rs)
	}
	close(r.cloud.block)
	r.h.Wait()
	if rs := r.send("u/clusters/farm/set", `{"action":"remove","job":"q1","transaction":"t2"}`, false); final(rs).Status != "ok" {
		t.Fatalf("retry with the same transaction: %+v", rs)
	}
	r.h.Busy(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(`{"action":"abort","transaction":7}`)})
	r.out.mu.Lock()
	last := string(r.out.msgs[len(r.out.msgs)-1].Payload)
	r.out.mu.Unlock()
	if !strings.Contains(last, `"busy"`) || !strings.Contains(last, `"transaction":7`) || !strings.Contains(last, `"action":"abort"`) {
		t.Errorf("busy handler answered %s", last)
	}
}

// TestRateLimitedAnswerSaysUntil: a command during the account's 429
// pause is answered rate_limited with the time it ends (issue 9.6).
func TestRateLimitedAnswerSaysUntil(t *testing.T) {
	r := newRig(Config{})
	r.cloud.err = &connect.APIError{Kind: connect.KindRateLimited, HTTPStatus: 429, RetryAfter: 30 * time.Second}
	rs := r.send("u/printers/printing/set", "pause", false)
	if codeOf(rs) != CodeRateLimited {
		t.Fatalf("answers %+v", rs)
	}
	d, _ := rs[0].Data.(map[string]any)
	at, err := time.Parse(time.RFC3339, d["retry_at"].(string))
	if err != nil || at.Sub(time.Now()) < 25*time.Second || !strings.Contains(rs[0].Error.Message, "until") {
		t.Errorf("answer %+v, data %v", rs[0].Error, d)
	}
}

// TestCapabilities: an action the cluster's capabilities lack is refused
// without a cloud call (issue 9.14).
func TestCapabilities(t *testing.T) {
	r := newRig(Config{})
	rs := r.send("u/printers/nocam/set", "snapshot", false)
	if codeOf(rs) != CodeConflict || !strings.Contains(rs[0].Error.Message, "webcam_snapshot") || len(r.cloud.Calls()) != 0 {
		t.Fatalf("answers %+v, calls %v", rs, r.cloud.Calls())
	}
}

// TestMaintenanceDoneReadsItAgain: after maintenance_done the pending
// maintenance is read again at once (issue 9.9).
func TestMaintenanceDoneReadsItAgain(t *testing.T) {
	r := newRig(Config{})
	r.send("u/bridge/request/maintenance_done", `{"cluster":"farm"}`, false)
	r.refresh.mu.Lock()
	defer r.refresh.mu.Unlock()
	if len(r.refresh.maint) != 1 || r.refresh.maint[0] != "cid" {
		t.Errorf("maintenance refreshes %v", r.refresh.maint)
	}
}

// TestOversizeAnswerNamesTransaction: a payload over the topic's limit is
// refused unread, yet its answer carries the transaction and action found
// in its first bytes.
func TestOversizeAnswerNamesTransaction(t *testing.T) {
	r := newRig(Config{})
	big := `{"transaction":"t-9","action":"pause","job":"` + strings.Repeat("x", 5000) + `"}`
	r.h.Handle(context.Background(), bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(big[:512]), Truncated: true, Size: len(big)})
	r.h.Wait()
	rs := r.send("u/printers/printing/set", "", false) // nothing more; collect
	_ = rs
	r.out.mu.Lock()
	last := string(r.out.msgs[len(r.out.msgs)-1].Payload)
	r.out.mu.Unlock()
	if !strings.Contains(last, `"bad_request"`) || !strings.Contains(last, `"transaction":"t-9"`) || !strings.Contains(last, `"action":"pause"`) {
		t.Errorf("answer %s", last)
	}
}

// FuzzOversize feeds the first bytes of oversized payloads: each is
// answered once, bad_request, whatever the prefix holds.
func FuzzOversize(f *testing.F) {
	for _, s := range []string{`{"transaction":"t","action":"pause"`, `{"transaction":12`, `{"action":"note","note":"` + strings.Repeat("x", 400),
		`"transaction": "\"quoted\"", "action": "x"`, "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		if len(prefix) > 512 {
			prefix = prefix[:512]
		}
		r := newRig(Config{})
		r.h.Handle(context.Background(), bus.Inbound{Topic: "u/clusters/farm/set", Payload: []byte(prefix), Truncated: true, Size: 1 << 20})
		r.h.Wait()
		r.out.mu.Lock()
		defer r.out.mu.Unlock()
		if len(r.out.msgs) != 1 || !strings.Contains(string(r.out.msgs[0].Payload), `"bad_request"`) {
			t.Fatalf("%q: answers %d", prefix, len(r.out.msgs))
		}
		var resp Response
		if err := json.Unmarshal(r.out.msgs[0].Payload, &resp); err != nil {
			t.Fatalf("answer is not JSON: %s", r.out.msgs[0].Payload)
		}
	})
}

// answersTo are the answers with transaction tx, in order, as
// "status" or "status code".
func (r *rig) answersTo(tx string) []string {
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	var out []string
	for _, m := range r.out.msgs {
		var resp Response
		if json.Unmarshal(m.Payload, &resp) != nil || string(resp.Transaction) != tx {
			continue
		}
		s := resp.Status
		if resp.Error != nil {
			s += " " + resp.Error.Code
		}
		out = append(out, s)
	}
	return out
}

// TestActionsFollowEachOther: a resume sent while a pause is under way
// waits for it and runs once the state shows the pause; pause, resume,
// pause are three actions in that order (issue 19.1).
func TestActionsFollowEachOther(t *testing.T) {
	r := newRig(Config{MaxInFlight: 100})
	r.cloud.block = make(chan struct{})
	ctx := context.Background()
	for i, a := range []string{"pause", "resume", "pause", "pause"} {
		r.h.Handle(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: fmt.Appendf(nil, `{"action":%q,"transaction":%d}`, a, i)})
	}
	close(r.cloud.block)
	r.h.Wait()
	want := []string{"job cid job-1 pause", "job cid job-1 print", "job cid job-1 pause"}
	if got := r.cloud.Calls(); !slices.Equal(got, want) {
		t.Errorf("cloud calls %q, want %q", got, want)
	}
	for i, w := range []string{"pending,ok", "pending,ok", "pending,ok", "ok"} {
		if got := strings.Join(r.answersTo(fmt.Sprint(i)), ","); got != w {
			t.Errorf("command %d answered %s, want %s", i, got, w)
		}
	}
}

// TestWaitingIsBounded: a command waiting behind one that does not end is
// answered timeout after COMMAND_TIMEOUT, and nothing of it is sent.
func TestWaitingIsBounded(t *testing.T) {
	r := newRig(Config{Timeout: 100 * time.Millisecond})
	r.cloud.block = make(chan struct{})
	ctx := context.Background()
	r.h.Handle(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(`{"action":"pause","transaction":"a"}`)})
	r.h.Handle(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(`{"action":"abort","transaction":"b"}`)})
	deadline := time.Now().Add(5 * time.Second)
	for len(r.answersTo(`"b"`)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(r.cloud.block)
	r.h.Wait()
	if got := r.answersTo(`"b"`); len(got) != 1 || got[0] != "error timeout" {
		t.Errorf("the waiting abort answered %v, want one timeout", got)
	}
	for _, c := range r.cloud.Calls() {
		if strings.HasSuffix(c, "abort") {
			t.Errorf("the abort that timed out reached the cloud: %v", r.cloud.Calls())
		}
	}
}

// TestJoinAfterTheAnswer: the same command sent after the one under way
// answered, while it waits for the state to show it, gets its answer at
// once and sends nothing.
func TestJoinAfterTheAnswer(t *testing.T) {
	r := newRig(Config{Timeout: 300 * time.Millisecond})
	r.cloud.moved = nil // the state never shows the pause
	ctx := context.Background()
	r.h.Handle(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(`{"action":"pause","transaction":"a"}`)})
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(r.answersTo(`"a"`), "ok") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r.h.Handle(ctx, bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte(`{"action":"pause","transaction":"b"}`)})
	if got := r.answersTo(`"b"`); len(got) != 1 || got[0] != "ok" {
		t.Errorf("the joining pause answered %v, want ok at once", got)
	}
	r.h.Wait()
	if n := len(r.cloud.Calls()); n != 1 {
		t.Errorf("%d cloud calls, want 1", n)
	}
}
