// Package activity keeps the farm's activity feed, its events and the answers to commands, on the broker, so a restart or another member of a group shows the same.
package activity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

const (
	// Length is how many items the feed keeps, shows and saves.
	Length = 200
	// MaxPayload bounds a feed or a batch of items read from the broker:
	// 200 items are about 60 KB.
	MaxPayload = 512 << 10
	// maxField bounds each text of an item read from the broker.
	maxField = 1024
)

// Item is one line of the activity feed: an event of the farm, or the
// answer to a command.
type Item struct {
	// ID names the item wherever it is seen: the bridge process that
	// added it and a count.
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // "event" or "answer"
	Printer string    `json:"printer,omitempty"`
	Cluster string    `json:"cluster,omitempty"`
	Name    string    `json:"name,omitempty"` // the printer's friendly name
	Event   string    `json:"event,omitempty"`
	Job     string    `json:"job,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	Late    bool      `json:"late,omitempty"` // an event seen after its moment
	Action  string    `json:"action,omitempty"`
	Status  string    `json:"status,omitempty"` // the answer's: ok, error, pending
	Code    string    `json:"code,omitempty"`
	Message string    `json:"message,omitempty"`
}

// Item kinds.
const (
	KindEvent  = "event"
	KindAnswer = "answer"
)

// Publisher sends MQTT messages; *mqttpub.Client is one.
type Publisher interface {
	Publish(ctx context.Context, msgs ...bus.Message) error
}

// Config sets up a Feed.
type Config struct {
	Tree topics.Tree
	// Instance names this bridge in a group ("" alone): its shared items'
	// topic and, with a random session, its items' ids.
	Instance string
	// Share, in a group, sends this bridge's items to the other members
	// and takes theirs (Observe).
	Share bool
	// Keeps, when set, says whether this bridge keeps the feed's retained
	// copy (a group's leader); unset, it does.
	Keeps func() bool
	// SaveEvery is how long new items wait before the retained copy is
	// saved with them (one save for a burst). Zero: one second.
	SaveEvery time.Duration
}

// Feed is the activity feed: the newest Length items, oldest first.
type Feed struct {
	cfg    Config
	pub    Publisher
	log    zerolog.Logger
	origin string
	save   chan struct{}

	mu       sync.Mutex
	items    []Item // sorted by time, oldest first; up to 2×Length
	ids      map[string]bool
	seq      uint64
	dirty    bool // items not in the retained copy yet
	watchers []func([]Item)
	bad      bool // a payload that did not decode was logged this run
}

// New returns an empty feed publishing through pub.
func New(cfg Config, pub Publisher, log zerolog.Logger) *Feed {
	if cfg.SaveEvery <= 0 {
		cfg.SaveEvery = time.Second
	}
	session := make([]byte, 4)
	rand.Read(session)
	origin := hex.EncodeToString(session)
	if cfg.Instance != "" {
		origin = topics.Segment(cfg.Instance) + "." + origin
	}
	return &Feed{cfg: cfg, pub: pub, log: log.With().Str("component", "activity").Logger(), origin: origin,
		save: make(chan struct{}, 1), ids: map[string]bool{}}
}

// Watch registers f to be told of the items added to the feed, in the
// order they were added (an item seen late has an earlier time). f must
// not block. Call it before the first item.
func (f *Feed) Watch(fn func([]Item)) { f.watchers = append(f.watchers, fn) }

// Events adds events of the farm (the renderer's, render.Watch).
func (f *Feed) Events(events []state.Event) {
	if len(events) == 0 {
		return
	}
	items := make([]Item, 0, len(events))
	for _, e := range events {
		it := Item{Time: e.Time.UTC(), Kind: KindEvent, Printer: e.Printer, Cluster: e.Cluster, Name: e.PrinterName,
			Event: e.Type, Detail: e.Detail, Late: e.Late}
		if e.Job != nil {
			it.Job = e.Job.Name
		}
		if it.Time.IsZero() {
			it.Time = time.Now().UTC()
		}
		items = append(items, it)
	}
	f.addOwn(items)
}

// Answered adds a command's answer to the command on topic
// (commands.Config.OnAnswered).
func (f *Feed) Answered(topic string, r commands.Response) {
	it := Item{Time: time.Now().UTC().Truncate(time.Millisecond), Kind: KindAnswer, Action: r.Action, Status: r.Status}
	if a, ok := f.cfg.Tree.Parse(topic); ok {
		switch a.Kind {
		case topics.Printer:
			it.Printer = a.ID
		case topics.Cluster:
			it.Cluster = a.ID
		}
	}
	if r.Error != nil {
		it.Code, it.Message = r.Error.Code, r.Error.Message
	}
	f.addOwn([]Item{it})
}

// addOwn names and adds this bridge's own items and, in a group, shares
// them with the other members.
func (f *Feed) addOwn(items []Item) {
	f.mu.Lock()
	for i := range items {
		f.seq++
		items[i].ID = f.origin + "-" + strconv.FormatUint(f.seq, 36)
	}
	added := f.add(items)
	f.mu.Unlock()
	f.added(added)
	if f.cfg.Share {
		if b, err := json.Marshal(items); err == nil {
			// Kept through a broker outage like the events themselves.
			f.publish(bus.Message{Topic: f.cfg.Tree.BridgeActivityOf(f.origin), Payload: b, Late: b})
		}
	}
}

// add inserts items by time, skipping those known, keeps the newest
// Length (copying only once the slice is twice that) and returns those
// added. Called with f.mu held.
func (f *Feed) add(items []Item) []Item {
	var added []Item
	for _, it := range items {
		if f.ids[it.ID] {
			continue
		}
		i := len(f.items)
		for i > 0 && f.items[i-1].Time.After(it.Time) {
			i--
		}
		if i == 0 && len(f.items) >= Length {
			continue // older than everything kept
		}
		f.items = append(f.items, Item{})
		copy(f.items[i+1:], f.items[i:])
		f.items[i] = it
		f.ids[it.ID] = true
		added = append(added, it)
	}
	if len(f.items) >= 2*Length {
		for _, it := range f.items[:len(f.items)-Length] {
			delete(f.ids, it.ID)
		}
		f.items = append(f.items[:0:0], f.items[len(f.items)-Length:]...)
	}
	if len(added) > 0 {
		f.dirty = true
		select {
		case f.save <- struct{}{}:
		default:
		}
	}
	return added
}

func (f *Feed) added(items []Item) {
	if len(items) == 0 {
		return
	}
	for _, fn := range f.watchers {
		fn(items)
	}
}

// Recent is the feed's newest Length items, oldest first.
func (f *Feed) Recent() []Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Item{}, f.items[max(0, len(f.items)-Length):]...)
}

// Recalled takes the feed the broker held when this run began
// (mqttpub.Client.Recall on Tree.BridgeActivity).
func (f *Feed) Recalled(_ context.Context, found map[string][]byte) {
	if p, ok := found[f.cfg.Tree.BridgeActivity()]; ok {
		f.take(f.cfg.Tree.BridgeActivity(), p)
	}
}

// Observe takes, in a group, the feed the leader keeps and the items the
// other members share. Anyone may publish there: what does not decode is
// ignored (logged once).
func (f *Feed) Observe(_ context.Context, in bus.Inbound) {
	if in.Truncated || len(in.Payload) == 0 {
		return
	}
	if in.Topic == f.cfg.Tree.BridgeActivityOf(f.origin) {
		return // this bridge's own, added already
	}
	f.take(in.Topic, in.Payload)
}

func (f *Feed) take(topic string, payload []byte) {
	items, err := Decode(payload)
	if err != nil {
		f.mu.Lock()
		first := !f.bad
		f.bad = true
		f.mu.Unlock()
		if first {
			f.log.Warn().Err(err).Str("topic", topic).Msg("activity feed from the broker does not decode; ignored")
		}
		return
	}
	f.mu.Lock()
	added := f.add(items)
	f.mu.Unlock()
	f.added(added)
}

// Decode reads a feed or a batch of items from the broker: a JSON array
// of items, each with an id, a time and a kind, its texts bounded.
func Decode(payload []byte) ([]Item, error) {
	if len(payload) > MaxPayload {
		return nil, errTooLarge
	}
	var items []Item
	if err := json.Unmarshal(payload, &items); err != nil {
		return nil, err
	}
	out := items[:0]
	for _, it := range items {
		if it.ID == "" || it.Time.IsZero() || (it.Kind != KindEvent && it.Kind != KindAnswer) || !bounded(it) {
			continue
		}
		it.Time = it.Time.UTC()
		out = append(out, it)
	}
	if len(out) > Length {
		out = out[len(out)-Length:]
	}
	return out, nil
}

type decodeError string

func (e decodeError) Error() string { return string(e) }

const errTooLarge = decodeError("activity payload too large")

func bounded(it Item) bool {
	for _, s := range []string{it.ID, it.Printer, it.Cluster, it.Name, it.Event, it.Job, it.Detail, it.Action, it.Status,
		it.Code, it.Message} {
		if len(s) > maxField {
			return false
		}
	}
	return true
}

// Run saves the feed's retained copy, SaveEvery after new items, while
// this bridge keeps it, until ctx ends; then once more if items wait. A
// member of a group that comes to keep it saves what waits within
// recheck.
func (f *Feed) Run(ctx context.Context) {
	const recheck = 30 * time.Second
	tick := time.NewTicker(recheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			f.store()
			return
		case <-tick.C:
			f.store()
			continue
		case <-f.save:
		}
		select {
		case <-ctx.Done():
			f.store()
			return
		case <-time.After(f.cfg.SaveEvery):
		}
		f.store()
	}
}

// store publishes the retained copy when items wait for it and this
// bridge keeps it.
func (f *Feed) store() {
	if f.cfg.Keeps != nil && !f.cfg.Keeps() {
		return
	}
	f.mu.Lock()
	if !f.dirty {
		f.mu.Unlock()
		return
	}
	f.dirty = false
	b, err := json.Marshal(f.items[max(0, len(f.items)-Length):])
	f.mu.Unlock()
	if err == nil {
		f.publish(bus.Message{Topic: f.cfg.Tree.BridgeActivity(), Payload: b, Retain: true})
	}
}

func (f *Feed) publish(m bus.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.pub.Publish(ctx, m); err != nil {
		f.log.Debug().Err(err).Str("topic", m.Topic).Msg("activity not published")
	}
}
