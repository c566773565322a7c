package render

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

var (
	published = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	polled    = published.Add(time.Hour)
)

func printerIn(status string, at time.Time) state.Printer {
	p := state.Printer{ID: "p1", Online: true, Status: status, PrinterStatus: "idle", UpdatedAt: at}
	if status != "idle" {
		p.Job = &state.Job{UUID: "job-1", Name: "Bracket", Status: status}
	}
	return p
}

func statePayload(t *testing.T, p state.Printer) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventsOf are the events rec got on the bridge's event topic, as
// "type late since".
func eventsOf(t *testing.T, rec *recorder) []string {
	t.Helper()
	var out []string
	for _, m := range rec.msgs {
		if m.Topic != "u/bridge/event" {
			continue
		}
		var e state.Event
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			t.Fatal(err)
		}
		s := e.Type
		if e.Late {
			s += " late"
		}
		if e.Since != nil {
			s += " since " + e.Since.Format("15:04")
		}
		out = append(out, s)
	}
	return out
}

// The events of a restart or a takeover are derived once, against the
// state published before, when the printer's state is settled and the
// broker has told what it held.
func TestEventsAcrossARestart(t *testing.T) {
	recalledPrinting := map[string][]byte{"u/printers/p1/state": nil}
	cases := []struct {
		name string
		run  func(t *testing.T, b *Renderer, ctx context.Context)
		want []string
	}{
		{"a print that ended while the bridge was away", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)}})
			b.Recalled(ctx, recalledPrinting)
		}, []string{"print_finished late since 10:00"}},
		{"the recall before the first poll", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Recalled(ctx, recalledPrinting)
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)}})
		}, []string{"print_finished late since 10:00"}},
		{"nothing changed", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Recalled(ctx, recalledPrinting)
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("printing", polled)}})
		}, nil},
		{"no state before: not news", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Recalled(ctx, map[string][]byte{})
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)}})
		}, nil},
		{"the broker could not be read", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)}})
			b.Recalled(ctx, nil)
		}, nil},
		{"later polls follow the late events, in order", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("paused", polled)}})
			resumed := printerIn("printing", polled.Add(time.Minute))
			b.Apply(ctx, poller.Update{Printers: []state.Printer{resumed},
				Events: []state.Event{{Type: state.PrintResumed, Printer: "p1"}}})
			b.Recalled(ctx, recalledPrinting)
		}, []string{"print_paused late since 10:00", "print_resumed"}},
		{"a state still missing a source waits for it", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Recalled(ctx, map[string][]byte{"u/printers/p1/state": nil}) // maintenance was due already
			lanOnly := printerIn("printing", polled)
			b.Apply(ctx, poller.Update{Printers: []state.Printer{lanOnly}, Unsettled: []string{"p1"}})
			both := lanOnly
			both.Maintenance.Required = true
			b.Apply(ctx, poller.Update{Printers: []state.Printer{both},
				Events: []state.Event{{Type: state.MaintenanceDue, Printer: "p1"}}})
		}, nil},
		{"still unsettled when the bridge is ready", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Recalled(ctx, recalledPrinting)
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)}, Unsettled: []string{"p1"}})
			b.Apply(ctx, poller.Update{Stats: &poller.Stats{Ready: true}})
		}, []string{"print_finished late since 10:00"}},
		{"taken over from another member", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Recalled(ctx, map[string][]byte{})
			b.Foreign(ctx, bus.Inbound{Topic: "u/printers/p1/state", Payload: statePayload(t, printerIn("printing", published))})
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)}})
		}, []string{"print_finished late since 10:00"}},
		{"the second sight of a printer is an ordinary poll", func(t *testing.T, b *Renderer, ctx context.Context) {
			b.Recalled(ctx, recalledPrinting)
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("printing", polled)}})
			b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled.Add(time.Minute))},
				Events: []state.Event{{Type: state.PrintFinished, Printer: "p1"}}})
		}, []string{"print_finished"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k := range recalledPrinting {
				recalledPrinting[k] = statePayload(t, printerIn("printing", published))
			}
			if strings.Contains(tc.name, "missing a source") {
				before := printerIn("printing", published)
				before.Maintenance.Required = true
				recalledPrinting["u/printers/p1/state"] = statePayload(t, before)
			}
			rec := &recorder{}
			b := New(topics.Tree{Base: "u"}, rec, Info{}, nil, Options{Recall: true}, zerolog.Nop())
			tc.run(t, b, context.Background())
			if got := eventsOf(t, rec); !slices.Equal(got, tc.want) {
				t.Errorf("events %q, want %q", got, tc.want)
			}
		})
	}
}

// An event's late form is what the publisher sends when the broker was
// away: the same, saying late.
func TestEventsCarryTheirLateForm(t *testing.T) {
	rec := &recorder{}
	b := New(topics.Tree{Base: "u"}, rec, Info{}, nil, Options{}, zerolog.Nop())
	ctx := context.Background()
	b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("printing", published)}})
	b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)},
		Events: []state.Event{{Type: state.PrintFinished, Printer: "p1", Time: polled}}})
	n := 0
	for _, m := range rec.msgs {
		if !strings.HasSuffix(m.Topic, "/event") {
			continue
		}
		n++
		var now, late state.Event
		if json.Unmarshal(m.Payload, &now) != nil || json.Unmarshal(m.Late, &late) != nil {
			t.Fatalf("%s: %s / %s", m.Topic, m.Payload, m.Late)
		}
		if now.Late || !late.Late || late.Type != now.Type || !late.Time.Equal(now.Time) {
			t.Errorf("%s: now %+v, late %+v", m.Topic, now, late)
		}
	}
	if n != 2 {
		t.Errorf("%d event messages, want 2 (printer and bridge)", n)
	}
}

// A printer that left before its first sight settled takes nothing with
// it to the next one.
func TestSightingForgottenWithThePrinter(t *testing.T) {
	rec := &recorder{}
	b := New(topics.Tree{Base: "u"}, rec, Info{}, nil, Options{Recall: true}, zerolog.Nop())
	ctx := context.Background()
	b.Apply(ctx, poller.Update{Printers: []state.Printer{printerIn("wait_cleanup", polled)}})
	b.Apply(ctx, poller.Update{RemovedPrinters: []state.Printer{{ID: "p1"}}})
	b.Recalled(ctx, map[string][]byte{"u/printers/p1/state": statePayload(t, printerIn("printing", published))})
	if got := eventsOf(t, rec); len(got) != 0 {
		t.Errorf("events %q for a printer that left", got)
	}
	if len(b.firsts) != 0 {
		t.Errorf("%d sightings kept", len(b.firsts))
	}
}
