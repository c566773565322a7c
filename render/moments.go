package render

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// first is a printer this run publishes for the first time (at start, or
// when it takes the printer over from another member of a group): its
// events are derived once, against the state published for it before,
// when its state is settled (every source has had its say) and the
// broker has told what it held (Recalled).
type first struct {
	before  *state.Printer // another member's state, taken when first seen
	settled *state.Printer // its first settled state, waiting for the recall
	// after are the events of later polls while the recall is still to
	// come: they follow the late ones.
	after []state.Event
}

// Recalled takes the retained states the broker held when this run began
// (mqttpub.Client.Recall on topics.Tree.StateFilters): the printers' last
// published states, against which the events of the first poll are
// derived. nil: the broker could not be read; first sights then yield
// no events.
func (b *Renderer) Recalled(ctx context.Context, found map[string][]byte) {
	b.mu.Lock()
	for topic, payload := range found {
		a, ok := b.tree.Parse(topic)
		if !ok || a.Kind != topics.Printer || a.Verb != topics.State || a.Leaf != "" || len(payload) > MaxForeignState {
			continue
		}
		var p state.Printer
		if json.Unmarshal(payload, &p) != nil || p.TopicID() != a.ID {
			continue
		}
		b.recalled[a.ID] = p
	}
	b.recalling = false
	var events []state.Event
	for _, id := range sortedKeys(b.firsts) {
		events = append(events, b.resolve(id)...)
	}
	b.mu.Unlock()
	b.publishEvents(ctx, events)
}

// sightings notes the printers of u this run publishes for the first
// time, and settles those whose state is settled, and returns the events
// to publish: u's own, but those of printers still waiting (dropped while
// unsettled, kept for after the late ones once settled) and plus the late
// ones. Called with b.mu held, before u's printers are kept.
func (b *Renderer) sightings(u poller.Update, becameReady bool) []state.Event {
	if len(b.firsts) == 0 && len(b.printers) > 0 && !b.anyNew(u) {
		return u.Events // the usual case: nothing to do
	}
	for _, p := range u.Printers {
		if _, known := b.printers[p.ID]; known {
			continue
		}
		if _, waiting := b.firsts[p.ID]; waiting {
			continue
		}
		f := &first{}
		if fp, ok := b.foreign[p.ID]; ok {
			f.before = &fp
		}
		b.firsts[p.ID] = f
	}
	var out []state.Event
	for _, e := range u.Events {
		f := b.firsts[e.Printer]
		switch {
		case f == nil:
			out = append(out, e)
		case f.settled != nil:
			f.after = append(f.after, e)
		}
	}
	var settled []string
	for _, p := range u.Printers {
		if f := b.firsts[p.ID]; f != nil && f.settled == nil && !slices.Contains(u.Unsettled, p.ID) {
			s := p.Compact()
			f.settled = &s
			settled = append(settled, p.ID)
		}
	}
	if becameReady {
		// Every source has had its round: what is still unsettled is as
		// complete as it gets.
		for id, f := range b.firsts {
			if f.settled != nil {
				continue
			}
			p, ok := b.printers[id]
			if i := slices.IndexFunc(u.Printers, func(q state.Printer) bool { return q.ID == id }); i >= 0 {
				p, ok = u.Printers[i].Compact(), true
			}
			if ok {
				f.settled = &p
				settled = append(settled, id)
			}
		}
	}
	if b.recalling {
		return out
	}
	slices.Sort(settled)
	for _, id := range settled {
		out = append(out, b.resolve(id)...)
	}
	return out
}

// anyNew reports whether u has a printer not published yet this run.
func (b *Renderer) anyNew(u poller.Update) bool {
	for _, p := range u.Printers {
		if _, known := b.printers[p.ID]; !known {
			return true
		}
	}
	return false
}

// resolve derives the late events of a settled first sight, once the
// recall is in: against the state another member published, else the one
// the broker held at start. A printer never published before yields
// none: the bridge seeing it is not news. Called with b.mu held.
func (b *Renderer) resolve(id string) []state.Event {
	f := b.firsts[id]
	if f == nil || f.settled == nil {
		return nil
	}
	delete(b.firsts, id)
	before := f.before
	if before == nil {
		if p, ok := b.recalled[id]; ok {
			before = &p
		}
	}
	delete(b.recalled, id)
	var out []state.Event
	if before != nil {
		out = state.LateSince(state.PrinterEvents(*before, *f.settled), before.UpdatedAt)
	}
	return append(out, f.after...)
}

// forgetSighting drops what waits for a printer that left this bridge.
// Called with b.mu held.
func (b *Renderer) forgetSighting(id string) {
	delete(b.firsts, id)
	delete(b.recalled, id)
}

// eventMessages are the messages of events: on the printer's event topic
// and the bridge's, each with its late form, which the publisher sends
// instead when the broker was away.
func (b *Renderer) eventMessages(events []state.Event) []bus.Message {
	msgs := make([]bus.Message, 0, 2*len(events))
	for _, e := range events {
		payload, err := json.Marshal(e)
		if err != nil {
			b.log.Error().Err(err).Msg("encode event")
			continue
		}
		late := payload
		if !e.Late {
			e.Late = true
			late, _ = json.Marshal(e)
		}
		msgs = append(msgs, bus.Message{Topic: b.tree.PrinterEvent(e.Printer), Payload: payload, Late: late},
			bus.Message{Topic: b.tree.BridgeEvent(), Payload: payload, Late: late})
	}
	return msgs
}

// publishEvents publishes events and tells the watchers (the page's
// activity, pictures at the end of a print).
func (b *Renderer) publishEvents(ctx context.Context, events []state.Event) {
	if len(events) == 0 {
		return
	}
	b.publish(ctx, b.eventMessages(events)...)
	// With the printers' states as they are now: the camera pictures a
	// late end only while the printer still holds the part.
	u := poller.Update{Events: events}
	b.mu.Lock()
	for _, e := range events {
		if p, ok := b.printers[e.Printer]; ok && !slices.ContainsFunc(u.Printers, func(q state.Printer) bool { return q.ID == p.ID }) {
			u.Printers = append(u.Printers, p)
		}
	}
	b.mu.Unlock()
	for _, f := range b.watchers {
		f(u)
	}
	for _, f := range b.farmWatchers {
		f(u)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
