package mqttpub

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
)

// Bounds of the messages held while the broker is away (Config.HeldMessages,
// Config.HeldFor): a farm of 1,000 printers makes a few events a printer an
// hour, each two messages of about 400 bytes, so an hour's outage fits
// with room to spare in less than 10 MB.
const (
	DefaultHeldMessages = 20000
	DefaultHeldFor      = time.Hour
)

// heldMessage is a message with a Late payload that waits for the broker.
type heldMessage struct {
	topic   string
	payload []byte // the Late one
	at      time.Time
}

// hold keeps m until the broker is back, giving way at the bounds.
// Called with c.mu held.
func (c *Client) hold(m bus.Message) {
	c.held = append(c.held, heldMessage{topic: m.Topic, payload: m.Late, at: time.Now()})
	c.heldBytes += len(m.Topic) + len(m.Late)
	c.expire(time.Now())
}

// expire drops the held messages over the bounds, oldest first, counting
// them and saying so once per outage. Called with c.mu held.
func (c *Client) expire(now time.Time) {
	n := 0
	for n < len(c.held) && (len(c.held)-n > c.cfg.HeldMessages || now.Sub(c.held[n].at) > c.cfg.HeldFor) {
		c.heldBytes -= len(c.held[n].topic) + len(c.held[n].payload)
		n++
	}
	if n == 0 {
		return
	}
	clear(c.held[:n]) // their payloads are garbage now
	c.held = c.held[n:]
	c.dropped.Add(uint64(n))
	if !c.dropping {
		c.dropping = true
		c.log.Warn().Int("max_messages", c.cfg.HeldMessages).Dur("max_age", c.cfg.HeldFor).
			Msg("the broker has been away too long: the oldest events kept for it are dropped")
	}
}

// flush sends the held messages, in order, once the retained state is
// back on the broker, and lets new ones through from now on.
func (c *Client) flush() []mqtt.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cli.IsConnectionOpen() || !c.recalled {
		return nil
	}
	c.expire(time.Now())
	tokens := make([]mqtt.Token, 0, len(c.held))
	for _, m := range c.held {
		tokens = append(tokens, c.cli.Publish(m.topic, 1, false, m.payload))
	}
	c.published.Add(uint64(len(tokens)))
	if len(tokens) > 0 {
		c.log.Info().Int("messages", len(tokens)).Msg("events kept while the broker was away sent")
	}
	c.held, c.heldBytes, c.flushed, c.dropping = nil, 0, true, false
	return tokens
}

// Held is how many messages wait for the broker now, and their bytes.
func (c *Client) Held() (messages, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held), c.heldBytes
}

// Dropped counts the held messages that gave way at the bounds.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// recall is a registered reading of retained messages (Recall).
type recall struct {
	filters []string
	take    func(ctx context.Context, found map[string][]byte)
}

// RecallWait bounds the reading of a recall: its connection's connect
// and the broker's delivery of what it holds.
const RecallWait = 15 * time.Second

// RecallMax bounds one payload a recall keeps; larger ones are skipped.
const RecallMax = 1 << 20

// Recall registers filters whose retained messages the client reads from
// the broker once, on its first connection and before anything it
// publishes reaches the broker there, so that the reading shows what an
// earlier run (or another member of a group) left: take gets them by
// topic, or nil when the broker could not be read within RecallWait.
// Until then retained messages are remembered and events held, as while
// the broker is away. It needs a ProbeTopic (the reading's connection);
// without one take gets nil at the first connect. Call it before Run.
func (c *Client) Recall(filters []string, take func(ctx context.Context, found map[string][]byte)) {
	c.recalls = append(c.recalls, recall{filters: filters, take: take})
	c.recalled = false
}

// recall runs the registered recalls, if they have not run yet.
func (c *Client) recall(ctx context.Context) {
	c.mu.Lock()
	done := c.recalled
	c.mu.Unlock()
	if done {
		return
	}
	for _, r := range c.recalls {
		found, err := c.readRetained(ctx, r.filters)
		if err != nil {
			c.log.Warn().Err(err).Strs("filters", r.filters).
				Msg("could not read what the broker held from the last run: events while the bridge was away are lost")
			found = nil
		}
		r.take(ctx, found)
	}
	c.mu.Lock()
	c.recalled = true
	c.mu.Unlock()
}

// readRetained reads every retained message under filters on the probe
// connection: it subscribes (QoS 0: a farm's states at QoS 1 would
// overflow the broker's queue for one client), publishes a marker to its
// own topic and takes what arrives before the marker (one connection's
// packets are handled in order, and the probe's handlers run in order).
func (c *Client) readRetained(ctx context.Context, filters []string) (map[string][]byte, error) {
	p := c.probe
	if p == nil {
		return nil, ErrNoProbe
	}
	ctx, cancel := context.WithTimeout(ctx, RecallWait)
	defer cancel()
	if !p.open(ctx) {
		return nil, ErrNoProbe
	}
	var mu sync.Mutex
	found := map[string][]byte{}
	take := func(_ mqtt.Client, m mqtt.Message) {
		if !m.Retained() || len(m.Payload()) == 0 || len(m.Payload()) > RecallMax {
			return
		}
		mu.Lock()
		if found != nil {
			found[m.Topic()] = bytes.Clone(m.Payload())
		}
		mu.Unlock()
	}
	w := &probeWait{done: make(chan struct{})}
	p.mu.Lock()
	p.seq++
	id := "recall-" + strconv.FormatUint(p.seq, 36)
	p.markers[id] = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.markers, id)
		p.mu.Unlock()
	}()
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 0
	}
	if err := waitAll(ctx, []mqtt.Token{p.cli.SubscribeMultiple(subs, take)}); err != nil {
		return nil, err
	}
	defer p.cli.Unsubscribe(filters...)
	p.cli.Publish(c.cfg.ProbeTopic, 0, false, id)
	select {
	case <-w.done:
	case <-ctx.Done():
		return nil, ErrNoProbe
	}
	mu.Lock()
	defer mu.Unlock()
	out := found
	found = nil // late deliveries of the filters go nowhere
	return out, nil
}
