// Package bridge renders the poller's updates as MQTT messages on the topic tree.
package bridge

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Publisher sends MQTT messages; *mqttpub.Client is one.
type Publisher interface {
	Publish(ctx context.Context, msgs ...mqttpub.Message) error
}

// Info is the static part of <base>/bridge/info.
type Info struct {
	Version   string            `json:"version"`
	StartedAt time.Time         `json:"started_at"`
	APIURL    string            `json:"api_url"`
	Auth      string            `json:"auth"`
	Intervals map[string]string `json:"intervals"`
}

// Bridge is a poller.Sink that publishes state, availability, events and
// the bridge's info.
type Bridge struct {
	tree    topics.Tree
	pub     Publisher
	log     zerolog.Logger
	timeout time.Duration

	mu    sync.Mutex
	info  Info
	stats poller.Stats
}

// New returns a Bridge publishing below tree through pub.
func New(tree topics.Tree, pub Publisher, info Info, log zerolog.Logger) *Bridge {
	return &Bridge{tree: tree, pub: pub, info: info, timeout: 10 * time.Second,
		log: log.With().Str("component", "bridge").Logger()}
}

var _ poller.Sink = (*Bridge)(nil)

// Start publishes the bridge info before the first poll, so users see the
// bridge even while the cloud is unreachable.
func (b *Bridge) Start(ctx context.Context) {
	b.publish(ctx, b.infoMessage())
}

// Apply implements poller.Sink.
func (b *Bridge) Apply(ctx context.Context, u poller.Update) {
	var msgs []mqttpub.Message
	for _, p := range u.RemovedPrinters {
		// Empty retained payloads delete the topics from the broker.
		msgs = append(msgs,
			mqttpub.Message{Topic: b.tree.PrinterState(p.ID), Retain: true},
			mqttpub.Message{Topic: b.tree.PrinterAvailability(p.ID), Retain: true})
	}
	for _, c := range u.RemovedClusters {
		msgs = append(msgs,
			mqttpub.Message{Topic: b.tree.ClusterState(c.ID), Retain: true},
			mqttpub.Message{Topic: b.tree.ClusterAvailability(c.ID), Retain: true})
	}
	for _, p := range u.Printers {
		msgs = append(msgs,
			b.jsonMessage(b.tree.PrinterState(p.ID), p, true),
			mqttpub.Message{Topic: b.tree.PrinterAvailability(p.ID), Payload: availability(p.Online), Retain: true})
	}
	if c := u.Cluster; c != nil {
		msgs = append(msgs,
			b.jsonMessage(b.tree.ClusterState(c.ID), c, true),
			mqttpub.Message{Topic: b.tree.ClusterAvailability(c.ID), Payload: availability(c.Online), Retain: true})
	}
	for _, e := range u.Events {
		msgs = append(msgs, b.jsonMessage(b.tree.PrinterEvent(e.Printer), e, false), b.jsonMessage(b.tree.BridgeEvent(), e, false))
	}
	if u.Stats != nil {
		b.mu.Lock()
		b.stats = *u.Stats
		b.mu.Unlock()
		msgs = append(msgs, b.infoMessage())
	}
	b.publish(ctx, msgs...)
}

// SetAuth changes the auth field of the info topic and republishes it.
func (b *Bridge) SetAuth(ctx context.Context, auth string) {
	b.mu.Lock()
	b.info.Auth = auth
	b.mu.Unlock()
	b.publish(ctx, b.infoMessage())
}

func (b *Bridge) infoMessage() mqttpub.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := struct {
		Info
		poller.Stats
	}{b.info, b.stats}
	return b.jsonMessage(b.tree.BridgeInfo(), v, true)
}

func (b *Bridge) jsonMessage(topic string, v any, retain bool) mqttpub.Message {
	p, err := json.Marshal(v)
	if err != nil {
		// Our own types always marshal; this is a programming error.
		b.log.Error().Err(err).Str("topic", topic).Msg("encode payload")
	}
	return mqttpub.Message{Topic: topic, Payload: p, Retain: retain}
}

func (b *Bridge) publish(ctx context.Context, msgs ...mqttpub.Message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.pub.Publish(ctx, msgs...); err != nil && ctx.Err() == nil {
		b.log.Warn().Err(err).Int("messages", len(msgs)).Msg("publish failed")
	}
}

func availability(online bool) []byte {
	if online {
		return []byte(topics.Online)
	}
	return []byte(topics.Offline)
}

// PrinterChanges is a poller.Sink that reports each printer status change
// to a callback before passing the update on; the demo prints them.
type PrinterChanges struct {
	Next     poller.Sink
	OnChange func(p state.Printer, previous string)

	mu   sync.Mutex
	last map[string]string
}

// Apply implements poller.Sink.
func (pc *PrinterChanges) Apply(ctx context.Context, u poller.Update) {
	pc.mu.Lock()
	if pc.last == nil {
		pc.last = map[string]string{}
	}
	for _, p := range u.Printers {
		if prev, ok := pc.last[p.ID]; !ok || prev != p.Status {
			pc.last[p.ID] = p.Status
			pc.OnChange(p, prev)
		}
	}
	pc.mu.Unlock()
	pc.Next.Apply(ctx, u)
}
