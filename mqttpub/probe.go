package mqttpub

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ErrNoProbe is RetainedCopy's answer when it cannot look: the client has
// no ProbeTopic, or its probe connection is down.
var ErrNoProbe = errors.New("mqtt: cannot check the broker's retained messages now")

// prober asks the broker, on a connection of its own, which retained
// message it holds on a topic. MQTT 3.1.1 brokers clear the retain flag
// when they deliver a message live, so a command published retained while
// the bridge is connected looks live; only a fresh subscription shows the
// broker's retained copy. The probe subscribes, then publishes a marker to
// ProbeTopic (to which it is subscribed), and reads what arrives before
// the marker: the broker handles one connection's packets in order, and
// the probe's handlers run in arrival order.
type prober struct {
	c   *Client
	cli mqtt.Client

	lost chan struct{}

	mu      sync.Mutex
	seq     uint64
	topics  map[string]*topicLock // one probe per topic at a time
	waiting map[string]*probeWait // by topic
	markers map[string]*probeWait // by marker id
}

type topicLock struct {
	sync.Mutex
	refs int // guarded by prober.mu
}

type probeWait struct {
	found []byte // the retained payload seen, nil if none
	done  chan struct{}
}

func newProber(c *Client, opts *mqtt.ClientOptions) *prober {
	p := &prober{c: c, lost: make(chan struct{}, 1), topics: map[string]*topicLock{},
		waiting: map[string]*probeWait{}, markers: map[string]*probeWait{}}
	po := *opts
	po.ClientID = truncateID(c.cfg.ClientID + "-probe")
	// No will, and none of its flags: MQTT 3.1.1 forbids will-retain or
	// a will QoS without a will, and brokers such as mochi-mqtt (the
	// demo's) close such a connection.
	po.WillEnabled, po.WillTopic, po.WillPayload, po.WillRetained, po.WillQos = false, "", nil, false, 0
	po.Order = true // retained copies must be seen before the marker
	po.OnConnect = func(cli mqtt.Client) {
		cli.Subscribe(c.cfg.ProbeTopic, 0, p.marker)
	}
	po.OnConnectionLost = func(mqtt.Client, error) {
		select {
		case p.lost <- struct{}{}:
		default:
		}
	}
	p.cli = mqtt.NewClient(&po)
	return p
}

func truncateID(id string) string {
	if len(id) > 64 {
		return id[:64]
	}
	return id
}

// run keeps the probe connected until ctx ends.
func (p *prober) run(ctx context.Context) {
	for {
		if !p.c.connect(ctx, p.cli, false) {
			p.cli.Disconnect(0)
			return
		}
		select {
		case <-ctx.Done():
			p.cli.Disconnect(100)
			return
		case <-p.lost:
		}
	}
}

// open waits for the probe's connection: just after a (re)connect it
// may still be on its way. False if ctx ended first.
func (p *prober) open(ctx context.Context) bool {
	for !p.cli.IsConnectionOpen() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

func (p *prober) retained(_ mqtt.Client, m mqtt.Message) {
	if !m.Retained() {
		return
	}
	p.mu.Lock()
	if w := p.waiting[m.Topic()]; w != nil && len(m.Payload()) > 0 {
		w.found = bytes.Clone(m.Payload())
	}
	p.mu.Unlock()
}

func (p *prober) marker(_ mqtt.Client, m mqtt.Message) {
	p.mu.Lock()
	if w := p.markers[string(m.Payload())]; w != nil {
		delete(p.markers, string(m.Payload()))
		close(w.done)
	}
	p.mu.Unlock()
}

// RetainedCopy returns the retained payload the broker holds on topic, or
// nil when it holds none. It costs a subscribe, a marker publish and an
// unsubscribe on the probe connection: about one round trip to the broker.
func (c *Client) RetainedCopy(ctx context.Context, topic string) ([]byte, error) {
	p := c.probe
	if p == nil {
		return nil, ErrNoProbe
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !p.open(ctx) {
		return nil, ErrNoProbe
	}

	p.mu.Lock()
	lock := p.topics[topic]
	if lock == nil {
		lock = &topicLock{}
		p.topics[topic] = lock
	}
	lock.refs++
	p.mu.Unlock()
	lock.Lock()
	defer func() {
		lock.Unlock()
		p.mu.Lock()
		if lock.refs--; lock.refs == 0 {
			delete(p.topics, topic)
		}
		p.mu.Unlock()
	}()

	w := &probeWait{done: make(chan struct{})}
	p.mu.Lock()
	p.seq++
	id := strconv.FormatUint(p.seq, 36)
	p.waiting[topic], p.markers[id] = w, w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, topic)
		delete(p.markers, id)
		p.mu.Unlock()
	}()

	if err := waitAll(ctx, []mqtt.Token{p.cli.Subscribe(topic, 1, p.retained)}); err != nil {
		return nil, ErrNoProbe
	}
	defer p.cli.Unsubscribe(topic) // no need to wait: the next probe subscribes anew
	p.cli.Publish(c.cfg.ProbeTopic, 0, false, id)
	select {
	case <-w.done:
	case <-ctx.Done():
		return nil, ErrNoProbe
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.found, nil
}
