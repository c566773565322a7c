// Package mqttpub owns the broker connection: last will, QoS 1 publishing, retained-state memory and subscriptions.
package mqttpub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Config configures the connection.
type Config struct {
	URL      string // tcp://, mqtt://, ssl://, tls://, mqtts://, ws://, wss://
	Username string
	Password string
	ClientID string
	// CAFile, CertFile and KeyFile set up TLS: a CA bundle to trust and a
	// client certificate. Without CAFile the system roots are used.
	CAFile, CertFile, KeyFile string
	// StateTopic gets the retained last will "offline", and "online" on
	// every connect; empty for a client that is not the bridge (cleanup).
	StateTopic string
	// WillTopic, when set, takes the last will instead of StateTopic:
	// WillPayload, retained (empty clears the topic). A member of a group
	// of bridges clears its announcement; the group keeps StateTopic.
	WillTopic   string
	WillPayload []byte
	// OfflineOnStop, when set, says whether a clean stop publishes
	// "offline" on StateTopic: a member of a group does only when it is
	// the last one.
	OfflineOnStop func() bool
	// ProbeTopic, when set, enables RetainedCopy: a second connection
	// subscribes to it for the markers that end each probe. It must be a
	// topic the bridge may read and write, below its base.
	ProbeTopic string
	// KeepAlive, ConnectTimeout and MaxReconnectInterval tune paho; zero
	// picks defaults suited to a daemon. MaxReconnectInterval caps the
	// wait between connection attempts (default 4s: back within 5 s of a
	// broker's return, whatever the outage; one attempt per 4 s does not
	// burden a broker that stays down).
	KeepAlive            time.Duration
	ConnectTimeout       time.Duration
	MaxReconnectInterval time.Duration
	// InboxSize bounds messages waiting for handlers; beyond it a message
	// goes to its subscription's Busy handler, or is dropped (logged once
	// per streak), rather than stalling the client.
	InboxSize int
	// HeldMessages and HeldFor bound the messages with a Late payload
	// (events) kept while the broker is away: beyond either the oldest
	// give way, counted in Dropped. Zero picks DefaultHeldMessages and
	// DefaultHeldFor.
	HeldMessages int
	HeldFor      time.Duration
}

// Handler handles a received message. Handlers run one at a time on the
// client's worker goroutine, never on paho's.
type Handler func(ctx context.Context, m bus.Inbound)

// TruncatedKeep is how much of an oversized message is kept.
const TruncatedKeep = 512

// Subscription says what to do with messages on a filter.
type Subscription struct {
	Filter string
	Handle Handler
	// QoS of the subscription. 0 suits commands: a burst is delivered at
	// once instead of queueing behind the broker's in-flight window
	// (mosquitto drops what exceeds its per-client queue), and with a
	// clean session a redelivery after a reconnect cannot happen anyway.
	// Handle sets 1.
	QoS byte
	// MaxPayload, when set, bounds what is kept of a message on a topic:
	// of a larger one Handle gets only the first TruncatedKeep bytes
	// (Truncated set, Size saying how big), so a flood of large messages
	// cannot fill memory, yet its answer can still name its transaction.
	MaxPayload func(topic string) int
	// Busy, when set, takes the messages that find the inbox full,
	// instead of their being dropped. It runs on paho's goroutine for the
	// message, so it must be quick and must not wait for the broker.
	Busy Handler
}

// Client is a broker connection that remembers every retained topic it
// published, publishes a retained topic only when its payload changed, and
// republishes them all after every (re)connect, because a broker without
// persistence comes back empty.
type Client struct {
	cfg Config
	log zerolog.Logger
	cli mqtt.Client

	mu       sync.Mutex // orders publishes and guards retained
	retained map[string]kept
	clears   map[string]bool // clears that wait for a connection
	order    []string        // retained topics in first-publish order

	subs      []Subscription
	onConnect []func(ctx context.Context)
	onLost    []func()
	inbox     chan inboundFor
	runCtx    context.Context
	started   chan struct{}
	lost      chan struct{} // the connection dropped
	connects  int           // guarded by mu; for tests and logs
	// conn numbers the broker connections (guarded by mu): it moves on
	// when one is lost, so a topic sent on the connection now open is not
	// sent again by the republish its connect starts.
	conn      uint32
	published atomic.Uint64 // messages handed to paho
	overflow  atomic.Int64  // messages that found the inbox full this streak
	lastErr   atomic.Value  // error of the latest failed connect, for check
	acks      chan mqtt.Token
	unacked   atomic.Int64 // publishes not acknowledged this streak

	// Messages with a Late payload kept while the broker is away, oldest
	// first (guarded by mu), and whether this connection has sent them:
	// until then new ones queue behind them, so their order holds.
	held      []heldMessage
	heldBytes int
	flushed   bool
	dropping  bool          // this outage dropped held messages already (logged once)
	dropped   atomic.Uint64 // held messages dropped over the bounds
	// Recall: what is read from the broker on the first connection before
	// anything of this run reaches it (guarded by mu once Run started).
	recalls  []recall
	recalled bool

	opts   *mqtt.ClientOptions // the main connection's, for the others (HoldWill)
	probe  *prober             // nil without ProbeTopic
	source Source              // nil: every retained payload is kept whole
}

// Source gives the current payload of a retained topic its caller marked
// Renewable, and false when it has none now (a clear follows). The client
// calls it with its lock held, to republish: a Source must never wait for
// a Publish or Republish of its own.
type Source func(topic string) ([]byte, bool)

// SetSource lets the client keep only the sum of Renewable payloads and ask
// s for them when it republishes: at farm scale the states and device
// configs it held were most of the bridge's memory. Call it before Run.
func (c *Client) SetSource(s Source) { c.source = s }

// payloadOf returns what to republish on topic, asking the Source for a
// renewed payload (remembering the sum of what it gives: that is now the
// last published). Called with c.mu held.
func (c *Client) payloadOf(topic string, k kept) ([]byte, bool) {
	if !k.renewed {
		return k.payload(), true
	}
	p, ok := c.source(topic)
	if !ok || len(p) == 0 {
		return nil, false
	}
	c.retained[topic] = keep(p, true)
	return p, true
}

type inboundFor struct {
	h Handler
	m bus.Inbound
}

// New validates cfg and returns an unconnected Client.
func New(cfg Config, log zerolog.Logger) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt url %q: want scheme://host:port", cfg.URL)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps", "ws", "wss":
	default:
		return nil, fmt.Errorf("mqtt url %q: scheme %q not supported", cfg.URL, u.Scheme)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "ultimaker2mqtt"
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxReconnectInterval <= 0 {
		cfg.MaxReconnectInterval = 4 * time.Second
	}
	if cfg.InboxSize <= 0 {
		cfg.InboxSize = 256
	}
	if cfg.HeldMessages <= 0 {
		cfg.HeldMessages = DefaultHeldMessages
	}
	if cfg.HeldFor <= 0 {
		cfg.HeldFor = DefaultHeldFor
	}
	c := &Client{
		cfg: cfg, log: log.With().Str("component", "mqtt").Logger(),
		conn: 1, recalled: true,
		retained: map[string]kept{}, clears: map[string]bool{}, inbox: make(chan inboundFor, cfg.InboxSize),
		started: make(chan struct{}), lost: make(chan struct{}, 1), acks: make(chan mqtt.Token, 8192),
	}
	opts := mqtt.NewClientOptions().
		AddBroker(cfg.URL).
		SetClientID(cfg.ClientID).
		SetCleanSession(true).
		SetOrderMatters(false). // handlers only enqueue; see receive
		// Run reconnects itself, with backoff, through a fresh Connect:
		// paho's own reconnect resends its stored in-flight packets from a
		// goroutine that races the writer (eclipse-paho/paho.mqtt.golang#703),
		// and with a clean session the broker has nothing to resume anyway.
		// Everything retained is republished after each connect.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(min(10*time.Second, cfg.KeepAlive)).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetWriteTimeout(10 * time.Second).
		SetOnConnectHandler(func(mqtt.Client) { go c.connected() }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.mu.Lock()
			c.conn++
			c.flushed = false
			c.mu.Unlock()
			c.log.Warn().Err(err).Msg("broker connection lost; reconnecting")
			for _, f := range c.onLost {
				f()
			}
			select {
			case c.lost <- struct{}{}:
			default:
			}
		})
	switch {
	case cfg.WillTopic != "":
		opts.SetBinaryWill(cfg.WillTopic, cfg.WillPayload, 1, true)
	case cfg.StateTopic != "":
		opts.SetWill(cfg.StateTopic, topics.Offline, 1, true)
	}
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username)
		opts.SetPassword(cfg.Password)
	}
	if tlsCfg, err := tlsConfig(u.Scheme, cfg); err != nil {
		return nil, err
	} else if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	c.cli, c.opts = mqtt.NewClient(opts), opts
	if cfg.ProbeTopic != "" {
		c.probe = newProber(c, opts)
	}
	return c, nil
}

func tlsConfig(scheme string, cfg Config) (*tls.Config, error) {
	secure := scheme == "ssl" || scheme == "tls" || scheme == "mqtts" || scheme == "tcps" || scheme == "wss"
	if !secure && cfg.CAFile == "" && cfg.CertFile == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt ca file %s: no PEM certificates", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// Handle registers h for filter. Subscriptions are made on every connect.
// Call it before Run.
func (c *Client) Handle(filter string, h Handler) {
	c.Subscribe(Subscription{Filter: filter, Handle: h, QoS: 1})
}

// Subscribe registers s; it is subscribed on every connect. Call it
// before Run.
func (c *Client) Subscribe(s Subscription) {
	c.subs = append(c.subs, s)
}

// OnConnect registers f to run after every (re)connect, once the state
// topic, subscriptions and retained topics are republished. Call it
// before Run.
func (c *Client) OnConnect(f func(ctx context.Context)) {
	c.onConnect = append(c.onConnect, f)
}

// OnLost registers f to run when the connection drops (on paho's
// goroutine: f must not block). Call it before Run.
func (c *Client) OnLost(f func()) { c.onLost = append(c.onLost, f) }

// Connected reports whether the broker connection is up now.
func (c *Client) Connected() bool { return c.cli.IsConnectionOpen() }

// Publish sends msgs with QoS 1, in order. A retained message whose payload
// equals the last one published on its topic is skipped. While the broker
// is away retained messages are only remembered (the reconnect republishes
// them), those with a Late payload are held (bounded: HeldMessages,
// HeldFor) and sent after the republish, and others are dropped: a
// command's answer is for a caller who is not there either.
//
// It does not wait for the broker's acknowledgements: waiting for each
// update made a first publish of 1,000 printers take 40 s against a
// mosquitto with Nagle's algorithm on (its default). Publishes are
// pipelined; unacknowledged ones are logged once per streak, and a
// reconnect republishes every retained topic anyway. ctx is unused and
// kept for callers that may block in future.
//
// A retained payload is remembered, not copied: callers must not change
// it after. Of a Renewable one only its sum is kept when a Source is set.
func (c *Client) Publish(ctx context.Context, msgs ...bus.Message) error {
	var tokens []mqtt.Token
	c.mu.Lock()
	// No state or event of this run reaches the broker before the recall
	// has read what the broker held from the last; an answer may.
	connected := c.cli.IsConnectionOpen()
	open := connected && c.recalled
	for _, m := range msgs {
		if !m.Retain && m.Late != nil && !(open && c.flushed) {
			c.hold(m)
			continue
		}
		if m.Retain {
			old, known := c.retained[m.Topic]
			switch {
			case len(m.Payload) == 0:
				// A clear is sent even for a topic we never published this
				// run: the broker may hold it from an earlier one.
				delete(c.retained, m.Topic)
				if !open {
					c.clears[m.Topic] = true
					continue
				}
			case known && old.same(m.Payload):
				continue
			default:
				if !known {
					c.order = append(c.order, m.Topic)
				}
				delete(c.clears, m.Topic)
				k := keep(m.Payload, m.Renewable && c.source != nil)
				if open {
					k.sentOn = c.conn
				}
				c.retained[m.Topic] = k
				if !open {
					continue
				}
			}
		}
		if open || !m.Retain && connected {
			tokens = append(tokens, c.cli.Publish(m.Topic, 1, m.Retain, m.Payload))
		}
	}
	c.published.Add(uint64(len(tokens)))
	c.mu.Unlock()
	for _, t := range tokens {
		select {
		case c.acks <- t:
		default: // 8,192 unacknowledged: this one goes unwatched
		}
	}
	return nil
}

// watchAcks logs publishes the broker did not acknowledge, once per
// streak, until ctx ends.
func (c *Client) watchAcks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-c.acks:
			select {
			case <-t.Done():
			case <-ctx.Done():
				return
			}
			if err := t.Error(); err != nil {
				if c.unacked.Add(1) == 1 {
					c.log.Warn().Err(err).Msg("publish not acknowledged; the next reconnect republishes retained state")
				}
			} else if n := c.unacked.Swap(0); n > 1 {
				c.log.Info().Int64("unacknowledged", n).Msg("publishes acknowledged again")
			}
		}
	}
}

// Republish sends again every remembered retained topic that starts with
// one of prefixes, prefix by prefix (Home Assistant wants configs before
// states), and waits for the acknowledgements.
func (c *Client) Republish(ctx context.Context, prefixes ...string) error {
	if !c.cli.IsConnectionOpen() {
		return nil // the reconnect republishes everything anyway
	}
	var topics []string
	c.mu.Lock()
	for _, prefix := range prefixes {
		for _, topic := range c.order {
			if _, ok := c.retained[topic]; ok && strings.HasPrefix(topic, prefix) {
				topics = append(topics, topic)
			}
		}
	}
	c.mu.Unlock()
	return waitAll(ctx, c.republish(topics))
}

// Forget drops the remembered retained topics that start with one of
// prefixes, without clearing them on the broker: another member of the
// group publishes there now, and a reconnect must not send this one's
// older payloads over its newer ones.
func (c *Client) Forget(prefixes ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic := range c.retained {
		for _, p := range prefixes {
			if strings.HasPrefix(topic, p) {
				delete(c.retained, topic)
				break
			}
		}
	}
	// c.order keeps the topics; the next connect drops those forgotten.
}

// republish sends the remembered payload of each of topics again, taking
// the lock per topic: renewing a payload from the Source can take a
// while (a device config, 0.3 ms; 10,000 of them, 3 s), and publishes
// meanwhile must not wait for all of them. Per topic the order holds: a
// newer payload published meanwhile goes out after the renewed one.
func (c *Client) republish(topics []string) []mqtt.Token {
	tokens := make([]mqtt.Token, 0, len(topics))
	for _, topic := range topics {
		c.mu.Lock()
		if k, ok := c.retained[topic]; ok {
			if p, ok := c.payloadOf(topic, k); ok {
				tokens = append(tokens, c.cli.Publish(topic, 1, true, p))
				c.published.Add(1)
				k = c.retained[topic] // payloadOf may have renewed it
				k.sentOn = c.conn
				c.retained[topic] = k
			}
		}
		c.mu.Unlock()
	}
	return tokens
}

// RetainedKeep is how much of each payload Retained keeps.
const RetainedKeep = 16

// Retained subscribes to filters for settle and returns the retained,
// non-empty messages the broker holds there, by topic, each cut to its
// first RetainedKeep bytes: callers look for topics and one word such as
// "online", and a farm's sweep sees tens of thousands of configs of 20 KB
// (256 bytes of each were 12 MB at 10,000 printers). It works on an open
// connection only.
func (c *Client) Retained(ctx context.Context, filters []string, settle time.Duration) (map[string][]byte, error) {
	if !c.cli.IsConnectionOpen() {
		return nil, errors.New("mqtt: not connected")
	}
	var mu sync.Mutex
	found := map[string][]byte{}
	h := func(_ mqtt.Client, m mqtt.Message) {
		if m.Retained() {
			p := m.Payload()
			mu.Lock()
			found[m.Topic()] = bytes.Clone(p[:min(len(p), RetainedKeep)])
			mu.Unlock()
		}
	}
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 1
	}
	if err := waitAll(ctx, []mqtt.Token{c.cli.SubscribeMultiple(subs, h)}); err != nil {
		return nil, err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	waitAll(uctx, []mqtt.Token{c.cli.Unsubscribe(filters...)})
	mu.Lock()
	defer mu.Unlock()
	maps.DeleteFunc(found, func(_ string, p []byte) bool { return len(p) == 0 })
	// Late messages of the unsubscribed filters must not reach the map now returned.
	done := found
	found = map[string][]byte{}
	return done, ctx.Err()
}

// ClearUnknown clears (empty retained message) each of topics that this
// client does not currently publish, and returns how many it cleared. The
// check and the clear are one step, so a topic published meanwhile stays.
func (c *Client) ClearUnknown(ctx context.Context, topics []string) (int, error) {
	var tokens []mqtt.Token
	c.mu.Lock()
	if c.cli.IsConnectionOpen() {
		for _, t := range topics {
			if _, ours := c.retained[t]; !ours {
				tokens = append(tokens, c.cli.Publish(t, 1, true, []byte{}))
			}
		}
	}
	c.mu.Unlock()
	return len(tokens), waitAll(ctx, tokens)
}

// LastConnectError is why the latest connection attempt failed, or nil.
func (c *Client) LastConnectError() error {
	err, _ := c.lastErr.Load().(error)
	return err
}

// Published counts messages handed to the broker connection.
func (c *Client) Published() uint64 { return c.published.Load() }

func waitAll(ctx context.Context, tokens []mqtt.Token) error {
	var errs []error
	for _, t := range tokens {
		select {
		case <-t.Done():
			if err := t.Error(); err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("mqtt publish: %w", ctx.Err())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("mqtt publish: %w", errors.Join(errs...))
	}
	return nil
}

// Run connects, retrying with backoff while the broker is down, serves
// handlers, and on ctx cancellation publishes "offline" and disconnects.
// It returns nil after a clean shutdown.
func (c *Client) Run(ctx context.Context) error {
	c.runCtx = ctx
	close(c.started)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.serve(ctx)
	}()
	go func() {
		defer wg.Done()
		c.watchAcks(ctx)
	}()
	if c.probe != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.probe.run(ctx)
		}()
	}
	defer wg.Wait()

	for {
		if !c.connect(ctx, c.cli, true) {
			c.cli.Disconnect(0)
			return nil
		}
		select {
		case <-ctx.Done():
			c.shutdown()
			return nil
		case <-c.lost:
		}
	}
}

// connect connects cli, retrying with backoff while the broker is away.
// It reports false if ctx ended first. Only the main connection (primary)
// logs: the probe's troubles are the same broker's.
func (c *Client) connect(ctx context.Context, cli mqtt.Client, primary bool) bool {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		t := cli.Connect()
		select {
		case <-t.Done():
		case <-ctx.Done():
			return false
		}
		if t.Error() == nil {
			return true
		}
		if primary {
			c.lastErr.Store(t.Error())
		}
		if attempt == 1 && primary {
			c.log.Warn().Err(t.Error()).Str("broker", RedactURL(c.cfg.URL)).Msg("broker unreachable; retrying")
		} else {
			c.log.Debug().Err(t.Error()).Int("attempt", attempt).Msg("broker still unreachable")
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return false
		}
		delay = min(delay*2, c.cfg.MaxReconnectInterval)
	}
}

// connected runs on every (re)connect, in its own goroutine.
func (c *Client) connected() {
	<-c.started
	ctx := c.runCtx
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	c.connects++
	n := c.connects
	c.mu.Unlock()
	c.log.Info().Str("broker", RedactURL(c.cfg.URL)).Int("connects", n).Msg("broker connected")

	wait := func(t mqtt.Token, what string) {
		if !t.WaitTimeout(c.cfg.ConnectTimeout) {
			c.log.Warn().Str("op", what).Msg("broker did not acknowledge in time")
		} else if err := t.Error(); err != nil {
			c.log.Warn().Err(err).Str("op", what).Msg("broker refused")
		}
	}
	for _, s := range c.subs {
		wait(c.cli.Subscribe(s.Filter, min(s.QoS, 1), c.receive(s)), "subscribe "+s.Filter)
	}
	c.recall(ctx)
	// "online" once subscribed: a command sent after it is received.
	if c.cfg.StateTopic != "" {
		wait(c.cli.Publish(c.cfg.StateTopic, 1, true, topics.Online), "publish online")
	}
	c.mu.Lock()
	order := c.order[:0]
	seen := make(map[string]bool, len(c.retained))
	var topics []string
	for _, topic := range c.order {
		k, ok := c.retained[topic]
		if !ok || seen[topic] {
			continue // cleared since, or cleared and published again
		}
		seen[topic] = true
		order = append(order, topic)
		if k.sentOn != c.conn {
			topics = append(topics, topic) // not sent since this connection opened
		}
	}
	c.order = order
	c.mu.Unlock()
	tokens := c.republish(topics)
	c.mu.Lock()
	for topic := range c.clears {
		tokens = append(tokens, c.cli.Publish(topic, 1, true, []byte{}))
		c.published.Add(1)
	}
	clear(c.clears)
	c.mu.Unlock()
	tokens = append(tokens, c.flush()...)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitAll(tctx, tokens); err != nil {
		c.log.Warn().Err(err).Msg("republish after connect incomplete")
	} else {
		c.log.Debug().Int("topics", len(tokens)).Msg("retained topics republished")
	}
	for _, f := range c.onConnect {
		f(ctx)
	}
}

// receive adapts s to paho. It copies the message and queues it: paho
// callbacks must not block or acknowledgements stall.
func (c *Client) receive(s Subscription) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		in := bus.Inbound{Topic: m.Topic(), Size: len(m.Payload()), Retained: m.Retained()}
		p := m.Payload()
		if s.MaxPayload != nil && in.Size > s.MaxPayload(in.Topic) {
			p, in.Truncated = p[:min(len(p), TruncatedKeep)], true
		}
		in.Payload = bytes.Clone(p)
		select {
		case c.inbox <- inboundFor{h: s.Handle, m: in}:
			return
		default:
		}
		if c.overflow.Add(1) == 1 {
			c.log.Warn().Str("topic", in.Topic).Msg("inbox full; answering busy or dropping until it drains")
		}
		if s.Busy != nil {
			s.Busy(c.runCtx, in)
		}
	}
}

func (c *Client) serve(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-c.inbox:
			in.h(ctx, in.m)
			if len(c.inbox) == 0 {
				if n := c.overflow.Swap(0); n > 0 {
					c.log.Info().Int64("overflowed", n).Msg("inbox drained")
				}
			}
		}
	}
}

// shutdown says goodbye: a clean DISCONNECT does not trigger the will, so
// publish "offline" ourselves first. Bounded so SIGTERM exits quickly.
func (c *Client) shutdown() {
	offline := c.cfg.OfflineOnStop == nil || c.cfg.OfflineOnStop()
	if c.cli.IsConnectionOpen() && c.cfg.StateTopic != "" && offline {
		t := c.cli.Publish(c.cfg.StateTopic, 1, true, topics.Offline)
		if !t.WaitTimeout(time.Second) {
			c.log.Warn().Msg("offline not acknowledged before shutdown")
		}
	}
	c.cli.Disconnect(250)
	c.log.Info().Msg("broker disconnected")
}

// URL is the broker URL the client connects to (it may hold credentials:
// show it through RedactURL).
func (c *Client) URL() string { return c.cfg.URL }

// RedactURL drops credentials from a broker URL (or a text holding one)
// for logs and messages.
func RedactURL(s string) string {
	if !strings.Contains(s, "://") || strings.ContainsAny(s, " \t") {
		return redactInText(s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	u.User = nil
	return strings.TrimSuffix(u.String(), "/")
}

// redactInText drops user:password@ from every URL inside s.
func redactInText(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, " /\t")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return s[:i+3] + redactInText(rest)
}
