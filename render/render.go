// Package render turns the poller's updates into MQTT messages on the topic tree and keeps the latest state for commands.
package render

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Publisher sends MQTT messages; *mqttpub.Client is one.
type Publisher interface {
	Publish(ctx context.Context, msgs ...bus.Message) error
	// Republish sends the remembered retained topics under prefixes again.
	Republish(ctx context.Context, prefixes ...string) error
	// Forget drops the remembered retained topics under prefixes, leaving
	// them as they are on the broker (another member of the group owns
	// them now).
	Forget(prefixes ...string)
}

// Info is the static part of <base>/bridge/info.
type Info struct {
	Version   string            `json:"version"`
	StartedAt time.Time         `json:"started_at"`
	APIURL    string            `json:"api_url"`
	ReadOnly  bool              `json:"read_only"`
	Auth      string            `json:"auth"`
	Intervals map[string]string `json:"intervals"`
}

// Options tune a Renderer.
type Options struct {
	// BirthDelay is how long to wait after Home Assistant's birth message
	// before republishing: HA drops what arrives while it starts up.
	// Default 5s.
	BirthDelay time.Duration
	// OnReady runs once, when every cluster has been polled since start.
	OnReady func(ctx context.Context)
	// Leaves also publishes each value of the printer, cluster and
	// workspace states on a retained topic of its own below the state
	// topic (MQTT_OUTPUT=attribute_and_json).
	Leaves bool
	// ConfigsPerSecond, when positive, paces the Home Assistant device
	// configs (10–20 KB each) that Run publishes, so the first poll of a
	// farm does not hand broker and HA thousands at once; states, which
	// HA reads retained when an entity appears, are not held back. Zero
	// publishes configs with their update (Run not needed).
	ConfigsPerSecond int
	// Leads, when set, says whether this bridge publishes the bridge's own
	// topics (bridge/info, the bridge's device): in a group of bridges
	// only its leader does. Group, when set, is the group's part of
	// bridge/info; the counts there are then the whole farm's.
	Leads func() bool
	Group func() any
	// Members, when set, are the group's members the bridge's device shows
	// as diagnostic entities.
	Members func() []string
	// Recall says that Recalled will bring the states the broker held
	// when this run began: the events of printers seen for the first time
	// wait for it.
	Recall bool
}

// Renderer is a poller.Sink that publishes state, availability, events and
// the bridge's info.
type Renderer struct {
	tree    topics.Tree
	pub     Publisher
	log     zerolog.Logger
	timeout time.Duration
	disc    *discovery.Config // nil: Home Assistant discovery off

	opts Options

	mu             sync.Mutex
	paced          []string        // config topics waiting, oldest first
	pending        map[string]bool // config topics waiting: rendered when sent, from the state then
	info           Info
	stats          poller.Stats
	ready          bool
	birthPending   bool
	clusterDevices map[string]bool // clusters with a device config of their own
	printers       map[string]state.Printer
	clusters       map[string]state.Cluster
	configKeys     map[string]uint64 // printer id -> discovery.PrinterFingerprint last rendered
	watchers       []func(poller.Update)
	farmWatchers   []func(poller.Update)
	pictured       []func(printer string, at time.Time)
	// In a group: the states the other members publish (Foreign), and
	// those this one released to them.
	foreign         map[string]state.Printer
	foreignClusters map[string]state.Cluster
	// Events across a restart or a takeover (moments.go): the states the
	// broker held when this run began, the printers published for the
	// first time whose events wait, and whether the recall is to come.
	recalled  map[string]state.Printer
	firsts    map[string]*first
	recalling bool
	pictures  *picture.Store
	// With Leaves: each state as last published, by topic, to tell which
	// values changed, and the splitter's buffers.
	published map[string][]byte
	split     splitter
}

// PicturesMemory bounds the pictures kept (and published retained) for
// all printers together: when full, those taken longest ago give way.
const PicturesMemory = 16 << 20

// WatchPictures registers f to be told of every picture kept and
// published: the printer and when it was taken. Call it before the first
// picture.
func (b *Renderer) WatchPictures(f func(printer string, at time.Time)) {
	b.pictured = append(b.pictured, f)
}

// Watch registers f to be told of every update once the renderer kept its
// states and published: the command handler waits there for an action's
// effect. f runs on the caller of Apply and must not block. Call it
// before the first Apply.
func (b *Renderer) Watch(f func(poller.Update)) { b.watchers = append(b.watchers, f) }

// New returns a Renderer publishing below tree through pub, with Home
// Assistant discovery when disc is not nil.
func New(tree topics.Tree, pub Publisher, info Info, disc *discovery.Config, opts Options, log zerolog.Logger) *Renderer {
	if opts.BirthDelay <= 0 {
		opts.BirthDelay = 5 * time.Second
	}
	return &Renderer{tree: tree, pub: pub, info: info, disc: disc, timeout: 10 * time.Second, opts: opts, pending: map[string]bool{},
		clusterDevices: map[string]bool{}, printers: map[string]state.Printer{}, clusters: map[string]state.Cluster{}, configKeys: map[string]uint64{},
		foreign: map[string]state.Printer{}, foreignClusters: map[string]state.Cluster{},
		recalled: map[string]state.Printer{}, firsts: map[string]*first{}, recalling: opts.Recall,
		pictures: picture.NewStore(PicturesMemory), published: map[string][]byte{}, log: log.With().Str("component", "bridge").Logger()}
}

var _ poller.Sink = (*Renderer)(nil)

// Start publishes the bridge info before the first poll, so users see the
// bridge even while the cloud is unreachable.
func (b *Renderer) Start(ctx context.Context) {
	if !b.leads() {
		return // the group's leader publishes them (Lead)
	}
	msgs := []bus.Message{}
	if b.disc != nil {
		msgs = append(msgs, renewable(b.bridgeConfig()), renewable(b.disc.Workspace()))
	}
	b.publish(ctx, append(msgs, b.infoMessage())...)
}

// HAStatus handles a message on Home Assistant's status topic: after its
// birth ("online") every config and then every state is sent again.
func (b *Renderer) HAStatus(ctx context.Context, payload []byte) {
	if b.disc == nil || string(payload) != "online" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.birthPending {
		return // one republish covers several births
	}
	b.birthPending = true
	time.AfterFunc(b.opts.BirthDelay, func() {
		b.mu.Lock()
		b.birthPending = false
		b.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := b.pub.Republish(rctx, b.disc.Prefix+"/", b.tree.Base+"/"); err != nil && ctx.Err() == nil {
			b.log.Warn().Err(err).Msg("republish after Home Assistant start incomplete")
		} else {
			b.log.Info().Msg("republished for Home Assistant")
		}
	})
}

// Apply implements poller.Sink.
func (b *Renderer) Apply(ctx context.Context, u poller.Update) {
	var msgs []bus.Message
	b.mu.Lock()
	becameReady := u.Stats != nil && u.Stats.Ready && !b.ready
	u.Events = b.sightings(u, becameReady)
	b.release(u)
	// Empty retained payloads delete the topics from the broker, and the
	// device from Home Assistant.
	for _, p := range u.RemovedPrinters {
		msgs = append(msgs, b.leaves(b.tree.PrinterState(p.ID), nil)...)
		delete(b.printers, p.ID)
		delete(b.configKeys, p.ID)
		b.forgetSighting(p.ID)
		b.pictures.Remove(p.ID)
		if b.disc != nil {
			msgs = append(msgs, b.unpace(b.disc.Clear(b.disc.PrinterObjectID(p.ID))))
		}
		msgs = append(msgs, clears(b.tree.Retained(topics.Printer, p.ID))...)
	}
	for _, c := range u.RemovedClusters {
		msgs = append(msgs, b.leaves(b.tree.ClusterState(c.ID), nil)...)
		delete(b.clusters, c.ID)
		if b.disc != nil && b.clusterDevices[c.ID] {
			msgs = append(msgs, b.unpace(b.disc.Clear(b.disc.ClusterObjectID(c.ID))))
			delete(b.clusterDevices, c.ID)
		}
		msgs = append(msgs, clears(b.tree.Retained(topics.Cluster, c.ID))...)
	}
	// Configs go before states, so Home Assistant has the entity when its
	// first value arrives, and a group's device before its printers'.
	var clusterPayload []byte
	var clusterLeaves []bus.Message
	if c := u.Cluster; c != nil {
		clusterPayload = c.JSON()
		clusterLeaves = b.leaves(b.tree.ClusterState(c.ID), clusterPayload)
		b.clusters[c.ID] = c.Compact()
		delete(b.foreignClusters, c.ID)
		if b.disc != nil {
			wasGroup := b.clusterDevices[c.ID]
			if _, ok := b.disc.Cluster(*c); ok {
				b.clusterDevices[c.ID] = true
				msgs = b.config(msgs, b.disc.DeviceTopic(b.disc.ClusterObjectID(c.ID)))
			} else if wasGroup {
				// Down to one printer: its printer device is enough.
				msgs = append(msgs, b.unpace(b.disc.Clear(b.disc.ClusterObjectID(c.ID))))
				delete(b.clusterDevices, c.ID)
			}
			if wasGroup != b.clusterDevices[c.ID] {
				// Its printers now hang under another device.
				for _, id := range c.Printers {
					if p, ok := b.printers[id]; ok && !slices.ContainsFunc(u.Printers, func(q state.Printer) bool { return q.ID == id }) {
						b.configKeys[id] = b.disc.PrinterFingerprint(p, !wasGroup)
						msgs = b.config(msgs, b.disc.DeviceTopic(b.disc.PrinterObjectID(id)))
					}
				}
			}
		}
	}
	for _, p := range u.Printers {
		payload := p.JSON()
		b.printers[p.ID] = p.Compact()
		delete(b.foreign, p.ID)
		// The config is 15–20 KB; render it only when what it shows changed
		// (a printing printer changes state every poll).
		if b.disc != nil {
			inGroup := b.clusterDevices[p.Cluster]
			if key := b.disc.PrinterFingerprint(p, inGroup); b.configKeys[p.ID] != key {
				b.configKeys[p.ID] = key
				msgs = b.config(msgs, b.disc.DeviceTopic(b.disc.PrinterObjectID(p.ID)))
			}
		}
		msgs = append(msgs,
			bus.Message{Topic: b.tree.PrinterState(p.ID), Payload: payload, Retain: true, Renewable: true},
			bus.Message{Topic: b.tree.PrinterAvailability(p.ID), Payload: topics.AvailabilityPayload(p.Online), Retain: true})
		msgs = append(msgs, b.leaves(b.tree.PrinterState(p.ID), payload)...)
		// The preview gets a topic of its own, kept after the job ends: an
		// image entity logs an error for every message without a URL.
		if p.Job != nil && p.Job.PreviewURL != "" {
			msgs = append(msgs, b.jsonMessage(b.tree.PrinterPreview(p.ID),
				map[string]string{"url": p.Job.PreviewURL, "job": p.Job.Name, "job_uuid": p.Job.UUID}, true))
		}
		// The LAN camera's URLs, for an image entity: sent again only
		// when they change (mqttpub skips an unchanged retained payload).
		if p.Camera != nil {
			msgs = append(msgs, b.jsonMessage(b.tree.PrinterCamera(p.ID),
				map[string]string{"url": p.Camera.SnapshotURL, "stream_url": p.Camera.StreamURL}, true))
		}
	}
	if c := u.Cluster; c != nil {
		msgs = append(msgs,
			bus.Message{Topic: b.tree.ClusterState(c.ID), Payload: clusterPayload, Retain: true, Renewable: true},
			bus.Message{Topic: b.tree.ClusterAvailability(c.ID), Payload: topics.AvailabilityPayload(c.Online), Retain: true})
		msgs = append(msgs, clusterLeaves...)
	}
	if u.Workspace != nil {
		m := b.jsonMessage(b.tree.WorkspaceState(), u.Workspace, true)
		msgs = append(msgs, m)
		msgs = append(msgs, b.leaves(m.Topic, m.Payload)...)
	}
	b.mu.Unlock()
	for id, s := range u.Statistics {
		msgs = append(msgs, b.jsonMessage(b.tree.PrinterStatistics(id), s, true))
	}
	msgs = append(msgs, b.eventMessages(u.Events)...)
	if u.Stats != nil {
		b.mu.Lock()
		b.stats = *u.Stats
		b.ready = b.ready || u.Stats.Ready
		b.mu.Unlock()
		if b.leads() {
			msgs = append(msgs, b.infoMessage())
		}
	}
	b.publish(ctx, msgs...)
	for _, f := range b.watchers {
		f(u)
	}
	for _, f := range b.farmWatchers {
		f(u)
	}
	if becameReady && b.opts.OnReady != nil {
		b.opts.OnReady(ctx)
	}
}

// leaves are the messages of the values below a state topic, from the
// state last published there to payload (nil: the state is gone), when
// Leaves is on. Called with b.mu held.
func (b *Renderer) leaves(stateTopic string, payload []byte) []bus.Message {
	if !b.opts.Leaves {
		return nil
	}
	msgs := b.split.messages(stateTopic, b.published[stateTopic], payload)
	if payload == nil {
		delete(b.published, stateTopic)
	} else {
		b.published[stateTopic] = payload
	}
	return msgs
}

// config adds the device config on topic, rendered from the state kept
// (renderConfig), to msgs, or queues the topic for Run when configs are
// paced: Run renders it when its turn comes, from the state then, so a
// farm's first poll does not hold thousands of configs of 15–20 KB in
// memory. Called with b.mu held, after the state is kept.
func (b *Renderer) config(msgs []bus.Message, topic string) []bus.Message {
	if b.opts.ConfigsPerSecond <= 0 {
		if m, ok := b.renderConfig(topic); ok {
			msgs = append(msgs, m)
		}
		return msgs
	}
	if !b.pending[topic] {
		b.pending[topic] = true
		b.paced = append(b.paced, topic)
	}
	return msgs
}

// renewable marks m as one Retained gives again.
func renewable(m bus.Message) bus.Message {
	m.Renewable = true
	return m
}

// unpace drops a queued config of a device that is being removed and
// returns the removal. Called with b.mu held.
func (b *Renderer) unpace(m bus.Message) bus.Message {
	delete(b.pending, m.Topic)
	return m
}

// Retained gives the current payload of a printer's or cluster's state
// topic or of a device config: the topics published as Renewable, which
// the publisher keeps as sums only (see mqttpub.Client.SetSource).
func (b *Renderer) Retained(topic string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.renderConfig(topic); ok {
		return m.Payload, true
	}
	a, ok := b.tree.Parse(topic)
	if ok && a.Kind == topics.Printer && a.Verb == topics.Picture {
		if p, ok := b.pictures.Get(a.ID); ok {
			return p.JPEG, true
		}
		return nil, false
	}
	if !ok || a.Verb != topics.State {
		return nil, false
	}
	switch a.Kind {
	case topics.Printer:
		if p, ok := b.printers[a.ID]; ok {
			return p.JSON(), true
		}
	case topics.Cluster:
		if c, ok := b.clusters[a.ID]; ok {
			return c.JSON(), true
		}
	}
	return nil, false
}

// renderConfig renders the device config on topic from the current state;
// false when there is none (the device is gone, or discovery is off).
// Called with b.mu held.
func (b *Renderer) renderConfig(topic string) (bus.Message, bool) {
	if b.disc == nil {
		return bus.Message{}, false
	}
	kind, id, ok := b.disc.DeviceOf(topic)
	if !ok {
		return bus.Message{}, false
	}
	var m bus.Message
	switch kind {
	case discovery.DevicePrinter:
		p, ok := b.printers[id]
		if !ok {
			return bus.Message{}, false
		}
		m = b.disc.Printer(p, b.clusterDevices[p.Cluster])
	case discovery.DeviceCluster:
		c, ok := b.clusters[id]
		if !ok || !b.clusterDevices[id] {
			return bus.Message{}, false
		}
		if m, ok = b.disc.Cluster(c); !ok {
			return bus.Message{}, false
		}
	case discovery.DeviceBridge:
		m = b.bridgeConfig()
	case discovery.DeviceWorkspace:
		m = b.disc.Workspace()
	}
	return renewable(m), true
}

// Run publishes the paced device configs, ConfigsPerSecond at most, until
// ctx ends. Without pacing it returns at once.
func (b *Renderer) Run(ctx context.Context) {
	if b.opts.ConfigsPerSecond <= 0 {
		return
	}
	const tick = 100 * time.Millisecond
	per := max(1, b.opts.ConfigsPerSecond/10)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var msgs []bus.Message
		b.mu.Lock()
		for len(msgs) < per && len(b.paced) > 0 {
			topic := b.paced[0]
			b.paced = b.paced[1:]
			if b.pending[topic] {
				delete(b.pending, topic)
				if m, ok := b.renderConfig(topic); ok {
					msgs = append(msgs, m)
				}
			}
		}
		b.mu.Unlock()
		b.publish(ctx, msgs...)
	}
}

// Snapshot is what a printer's snapshot topic says of its latest picture.
type Snapshot struct {
	URL     string    `json:"url"` // the cloud's; "" for a picture from the LAN
	TakenAt time.Time `json:"taken_at"`
	Via     string    `json:"via"`
	Size    int       `json:"size"`  // of the JPEG on the picture topic; 0 when there is none
	Event   string    `json:"event"` // what it was taken for, "" on request
	Job     string    `json:"job"`   // that job's uuid
}

// Picture keeps p as its printer's latest picture and publishes it: the
// JPEG retained on the printer's picture topic (kept by the publisher as
// a sum, renewed from here), and what it shows on its snapshot topic. A
// picture of a printer that is gone is dropped.
func (b *Renderer) Picture(ctx context.Context, p picture.Picture) {
	b.mu.Lock()
	_, known := b.printers[p.Printer]
	b.mu.Unlock()
	if !known {
		return
	}
	snap := Snapshot{URL: p.URL, TakenAt: p.TakenAt.UTC().Truncate(time.Second), Via: p.Via, Event: p.Event, Job: p.Job}
	var msgs []bus.Message
	if len(p.JPEG) > 0 && b.pictures.Put(p) {
		snap.Size = len(p.JPEG)
		msgs = append(msgs, bus.Message{Topic: b.tree.PrinterPicture(p.Printer), Payload: p.JPEG, Retain: true, Renewable: true})
	}
	b.publish(ctx, append(msgs, b.jsonMessage(b.tree.PrinterSnapshot(p.Printer), snap, true))...)
	if snap.Size > 0 {
		for _, f := range b.pictured {
			f(p.Printer, snap.TakenAt)
		}
	}
}

// LatestPicture is the latest picture kept of a printer.
func (b *Renderer) LatestPicture(printer string) (picture.Picture, bool) {
	return b.pictures.Get(printer)
}

// Stats returns the poller's latest stats.
func (b *Renderer) Stats() poller.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Printer returns the latest state of a printer by its topic id.
func (b *Renderer) Printer(id string) (state.Printer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.printers[id]; ok {
		return p, true
	}
	p, ok := b.foreign[id]
	return p, ok
}

// Printers returns the latest state of every printer, by topic id.
func (b *Renderer) Printers() []state.Printer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return farm(b.printers, b.foreign)
}

// Clusters returns the latest state of every cluster, by topic id.
func (b *Renderer) Clusters() []state.Cluster {
	b.mu.Lock()
	defer b.mu.Unlock()
	return farm(b.clusters, b.foreignClusters)
}

// CloudClusterOf is the cloud cluster id of the printer with this uuid
// (any case) in the farm's view, if the cloud knows it.
func (b *Renderer) CloudClusterOf(uuid string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range []map[string]state.Printer{b.printers, b.foreign} {
		for _, p := range m {
			if p.ClusterID != "" && strings.EqualFold(p.UUID, uuid) {
				return p.ClusterID, true
			}
		}
	}
	return "", false
}

// farm is own and, for the ids own lacks, foreign (what the other members
// of a group publish), sorted by topic id.
func farm[T interface{ TopicID() string }](own, foreign map[string]T) []T {
	out := make([]T, 0, len(own)+len(foreign))
	for _, v := range own {
		out = append(out, v)
	}
	for id, v := range foreign {
		if _, mine := own[id]; !mine {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, c T) int { return strings.Compare(a.TopicID(), c.TopicID()) })
	return out
}

// Info is the payload of <base>/bridge/info as it stands.
func (b *Renderer) Info() []byte { return b.infoMessage().Payload }

// Cluster returns the latest state of a cluster by its topic id or its
// cloud id.
func (b *Renderer) Cluster(id string) (state.Cluster, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range []map[string]state.Cluster{b.clusters, b.foreignClusters} {
		if c, ok := m[id]; ok {
			return c, true
		}
	}
	for _, m := range []map[string]state.Cluster{b.clusters, b.foreignClusters} {
		for _, c := range m {
			if c.ClusterID == id {
				return c, true
			}
		}
	}
	return state.Cluster{}, false
}

// SetAuth changes the auth field of the info topic and republishes it.
func (b *Renderer) SetAuth(ctx context.Context, auth string) {
	b.mu.Lock()
	b.info.Auth = auth
	b.mu.Unlock()
	if b.leads() {
		b.publish(ctx, b.infoMessage())
	}
}

// bridgeConfig is the bridge's device config, with the group's members.
func (b *Renderer) bridgeConfig() bus.Message {
	if b.opts.Members == nil {
		return b.disc.Bridge()
	}
	return b.disc.Bridge(b.opts.Members()...)
}

func (b *Renderer) infoMessage() bus.Message {
	var group any
	if b.opts.Group != nil {
		group = b.opts.Group()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.stats
	if group != nil {
		// The whole farm's, not this member's share (bridge/info's group
		// shows each member's).
		st.Clusters, st.Printers = len(b.clusters)+len(b.foreignClusters), len(b.printers)+len(b.foreign)
	}
	v := struct {
		Info
		Group            any        `json:"group,omitempty"`
		Ready            bool       `json:"ready"`
		CloudReachable   bool       `json:"cloud_reachable"`
		Clusters         int        `json:"clusters"`
		Printers         int        `json:"printers"`
		ClustersFailing  int        `json:"clusters_failing"`
		LastPoll         *time.Time `json:"last_poll"`
		PollErrors       int64      `json:"poll_errors"`
		LastError        string     `json:"last_error"`
		RateLimitedUntil *time.Time `json:"rate_limited_until"`
		LocalPrinters    int        `json:"local_printers"`
		LocalAnswering   int        `json:"local_answering"`
	}{b.info, group, st.Ready, st.CloudReachable, st.Clusters, st.Printers, st.ClustersFailing, st.LastPoll, st.PollErrors,
		st.LastError, st.RateLimitedUntil, st.LocalPrinters, st.LocalAnswering}
	return b.jsonMessage(b.tree.BridgeInfo(), v, true)
}

func (b *Renderer) jsonMessage(topic string, v any, retain bool) bus.Message {
	p, err := json.Marshal(v)
	if err != nil {
		// Our own types always marshal; this is a programming error.
		b.log.Error().Err(err).Str("topic", topic).Msg("encode payload")
	}
	return bus.Message{Topic: topic, Payload: p, Retain: retain}
}

func (b *Renderer) publish(ctx context.Context, msgs ...bus.Message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.pub.Publish(ctx, msgs...); err != nil && ctx.Err() == nil {
		b.log.Warn().Err(err).Int("messages", len(msgs)).Msg("publish failed")
	}
}

// clears are the empty retained messages that delete topics.
func clears(topics []string) []bus.Message {
	out := make([]bus.Message, len(topics))
	for i, t := range topics {
		out[i] = bus.Message{Topic: t, Retain: true}
	}
	return out
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
