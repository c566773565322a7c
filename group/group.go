// Package group deals one account's farm between the bridges of an INSTANCE_GROUP, with the broker as the only arbiter.
//
// Each member announces itself retained on <base>/bridge/members/<id>,
// with a last will that clears the announcement. Every member sees the
// live set there, and works out the owner of a cluster (or any key) by
// rendezvous hashing over it: the same answer everywhere, with no
// messages, and a change of members moves only the departed member's
// share. A member that joins owns nothing until every other member's
// announcement shows it has seen it (those stop first), or a keepalive
// has passed.
package group

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// AccountKey is the key of the work for the whole account (the cluster
// list, the workspace and reports, the stale sweep, bridge requests, the
// bridge's own topics): its owner is the group's leader.
const AccountKey = "account"

// maxAnnouncement bounds a member's announcement: a few hundred bytes,
// and a list of members.
const maxAnnouncement = 16 << 10

// Publisher sends the member's announcement; *mqttpub.Client is one.
type Publisher interface {
	Publish(ctx context.Context, msgs ...bus.Message) error
}

// Config is a member's place in its group.
type Config struct {
	Tree    topics.Tree
	Name    string // INSTANCE_GROUP
	ID      string // INSTANCE_ID, a topic segment
	Version string
	// KeepAlive is MQTT_KEEPALIVE: a member that holds an id another
	// process announces waits up to 1.5 of it (and 2 s) for that one's
	// will before it refuses to start, and a joining member waits up to
	// it for the others to see it.
	KeepAlive time.Duration
	// Settle is how long the retained announcements take to arrive after
	// a connect (default 1 s).
	Settle time.Duration
}

// Announcement is a member's retained JSON on its members topic.
type Announcement struct {
	ID      string    `json:"id"`
	Group   string    `json:"group"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Session is random per process: a second process with the same id
	// tells itself apart by it.
	Session string `json:"session"`
	// Epoch counts the process's connections: a member that lost the
	// broker missed what happened meanwhile, and comes back as a new
	// incarnation (Group.Session).
	Epoch int `json:"epoch"`
	// Sees are the members this one deals the farm between, itself
	// included: a joining member owns nothing until everyone sees it.
	Sees  []string `json:"sees"`
	Share Share    `json:"share"`
}

// Share is what a member owns now.
type Share struct {
	Leader   bool `json:"leader"`
	Clusters int  `json:"clusters"`
	Printers int  `json:"printers"`
}

// ErrDuplicate is the start-up error of a member whose id a live member
// of the group holds.
var ErrDuplicate = errors.New("duplicate INSTANCE_ID")

// Group is this member's view of its group. Feed it the members topic
// (Observe) and the broker connection's ups and downs (Connected,
// Disconnected), and run it (Run).
type Group struct {
	cfg     Config
	pub     Publisher
	log     zerolog.Logger
	session string
	started time.Time

	mu        sync.Mutex
	members   map[string]Announcement // the live members, this one included once announced
	connected bool
	epoch     int       // connections so far
	since     time.Time // of the connection
	announced bool      // this connection carries our announcement
	joined    bool      // others have seen us: we may own
	share     Share
	sent      Announcement // the last announcement published
	resend    bool         // a member does not see this one: announce again
	duplicate *Announcement
	lastOut   bool // it was the last member when it left
	watchers  []func()
	wake      chan struct{}
}

// New returns this member's Group.
func New(cfg Config, pub Publisher, log zerolog.Logger) *Group {
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = time.Second
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &Group{cfg: cfg, pub: pub, session: hex.EncodeToString(b), started: time.Now().UTC().Truncate(time.Second),
		log:     log.With().Str("component", "group").Str("group", cfg.Name).Str("member", cfg.ID).Logger(),
		members: map[string]Announcement{}, wake: make(chan struct{}, 1)}
}

// ID is this member's INSTANCE_ID.
func (g *Group) ID() string { return g.cfg.ID }

// Name is the group's INSTANCE_GROUP.
func (g *Group) Name() string { return g.cfg.Name }

// OnChange registers f to be told, outside any lock, whenever what this
// member owns may have changed: members came or went, it joined, or it
// lost the broker. Call it before Run.
func (g *Group) OnChange(f func()) { g.watchers = append(g.watchers, f) }

// Owner is the member that owns key among the live members; "" when none
// is known.
func (g *Group) Owner(key string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return owner(key, g.liveLocked())
}

// Owns reports whether this member owns key now: it is connected, has
// joined, and key falls to it.
func (g *Group) Owns(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.connected && g.joined && owner(key, g.liveLocked()) == g.cfg.ID
}

// Leads reports whether this member owns the account's work.
func (g *Group) Leads() bool { return g.Owns(AccountKey) }

// Session is this incarnation of the member: its id, a random tag of the
// process (told apart from an earlier process with the same id: a member
// restarted) and its connection (one that lost the broker missed what
// happened meanwhile).
func (g *Group) Session() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessionLocked()
}

func (g *Group) sessionLocked() string { return fmt.Sprintf("%s@%s.%d", g.cfg.ID, g.session, g.epoch) }

// LiveSessions are the Sessions of the live members.
func (g *Group) LiveSessions() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, id := range g.liveLocked() {
		if id == g.cfg.ID {
			out = append(out, g.sessionLocked())
		} else if a, ok := g.members[id]; ok {
			out = append(out, fmt.Sprintf("%s@%s.%d", a.ID, a.Session, a.Epoch))
		}
	}
	return out
}

// Joined reports whether this member is connected and has joined (it has
// not left).
func (g *Group) Joined() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.connected && g.joined
}

// Live is the ids of the live members, sorted.
func (g *Group) Live() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.liveLocked()
}

// Alone reports whether this member has joined and sees no other live
// member: then the bridge's availability is its alone (it holds the
// bridge's "offline" will, and says "offline" when it stops).
func (g *Group) Alone() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.connected && g.joined && len(g.liveLocked()) <= 1
}

// LastOut reports whether this member is, or was when it left, the last
// of its group: its clean stop then says the bridge is offline.
func (g *Group) LastOut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastOut || g.connected && g.joined && len(g.liveLocked()) <= 1
}

// Members are the announcements of the live members, by id.
func (g *Group) Members() []Announcement {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Announcement, 0, len(g.members))
	for _, id := range g.liveLocked() {
		if a, ok := g.members[id]; ok {
			out = append(out, a)
		}
	}
	return out
}

// liveLocked is the live set: the members announced, and this one while
// it is connected.
func (g *Group) liveLocked() []string {
	ids := make([]string, 0, len(g.members)+1)
	for id := range g.members {
		if id != g.cfg.ID {
			ids = append(ids, id)
		}
	}
	if g.connected {
		ids = append(ids, g.cfg.ID)
	}
	slices.Sort(ids)
	return ids
}

// SetShare tells the group what this member owns now; the announcement
// carries it.
func (g *Group) SetShare(s Share) {
	g.mu.Lock()
	changed := g.share != s
	g.share = s
	g.mu.Unlock()
	if changed {
		g.poke()
	}
}

// Connected is told of each (re)connect to the broker, once its
// subscriptions are made.
func (g *Group) Connected() {
	g.mu.Lock()
	// The members are not cleared here but when the connection was lost:
	// the retained announcements of this connection may have arrived
	// before its connect handler told us.
	g.connected, g.since, g.announced, g.joined = true, time.Now(), false, false
	g.epoch++
	g.mu.Unlock()
	g.poke()
	g.notify()
}

// Disconnected is told when the broker connection is lost: this member
// owns nothing until it has joined again (its will cleared its
// announcement, and the others took its share).
func (g *Group) Disconnected() {
	g.mu.Lock()
	g.connected, g.announced, g.joined = false, false, false
	clear(g.members) // the next connection's retained announcements tell who lives
	g.mu.Unlock()
	g.notify()
}

// Observe takes a message of the members topic. A bad announcement is
// ignored (logged at debug): it may be anyone's.
func (g *Group) Observe(ctx context.Context, in bus.Inbound) {
	a, ok := g.cfg.Tree.Parse(in.Topic)
	if !ok || a.Kind != topics.Bridge || a.Verb != topics.Members || a.ID == "" {
		return
	}
	id := a.ID
	if len(in.Payload) == 0 {
		g.mu.Lock()
		_, was := g.members[id]
		delete(g.members, id)
		if id == g.cfg.ID {
			// Our own announcement cleared while we live (a will of an
			// earlier connection, or a duplicate's): announce again. Or a
			// duplicate's went: the id is free.
			g.announced, g.duplicate = false, nil
		}
		g.mu.Unlock()
		if was {
			g.log.Info().Str("left", id).Msg("member left the group")
			g.notify()
		}
		g.poke()
		return
	}
	var ann Announcement
	if len(in.Payload) > maxAnnouncement || json.Unmarshal(in.Payload, &ann) != nil || ann.ID != id ||
		ann.Group != g.cfg.Name {
		g.log.Debug().Str("topic", in.Topic).Msg("not a member announcement of this group; ignored")
		return
	}
	g.mu.Lock()
	if id == g.cfg.ID && ann.Session != g.session {
		dup := ann
		g.duplicate = &dup
		g.mu.Unlock()
		g.poke()
		return
	}
	old, was := g.members[id]
	g.members[id] = ann
	if id != g.cfg.ID && g.announced && !slices.Contains(ann.Sees, g.cfg.ID) {
		// It missed our announcement (it came back between two of our
		// looks, say): it would deal the farm without us.
		g.resend = true
	}
	joinedNow := false
	if !g.joined && g.announced && g.seenByAllLocked() {
		g.joined, joinedNow = true, true
	}
	g.mu.Unlock()
	if !was && id != g.cfg.ID {
		g.log.Info().Str("joined", id).Str("version", ann.Version).Msg("member in the group")
	}
	if joinedNow {
		g.log.Info().Strs("members", g.Live()).Msg("joined the group: taking this member's share")
	}
	if !was || joinedNow || !slices.Equal(old.Sees, ann.Sees) {
		g.notify()
		g.poke()
	} else if g.resendPending() {
		g.poke()
	}
}

func (g *Group) resendPending() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.resend
}

// seenByAllLocked reports whether every other live member's announcement
// sees this one.
func (g *Group) seenByAllLocked() bool {
	for id, a := range g.members {
		if id != g.cfg.ID && !slices.Contains(a.Sees, g.cfg.ID) {
			return false
		}
	}
	return true
}

func (g *Group) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *Group) notify() {
	for _, f := range g.watchers {
		f()
	}
}

// Run keeps this member's announcement up to date until ctx ends, then
// clears it (a clean stop: the others take its share at once). It
// returns ErrDuplicate, wrapped, when a live member of the group holds
// this member's id.
func (g *Group) Run(ctx context.Context) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var waitingDup time.Time
	for {
		select {
		case <-ctx.Done():
			g.leave()
			return nil
		case <-g.wake:
		case <-tick.C:
		}
		g.mu.Lock()
		connected, since, announced := g.connected, g.since, g.announced
		dup := g.duplicate
		g.mu.Unlock()
		if !connected || time.Since(since) < g.cfg.Settle {
			continue
		}
		if dup != nil && !announced {
			// Another process announced our id: wait for its will, as
			// long as a dead one's takes, then refuse.
			if waitingDup.IsZero() {
				waitingDup = time.Now()
				g.log.Warn().Str("session", dup.Session).Time("started", dup.Started).
					Msg("another process announces this INSTANCE_ID; waiting for it to go")
			}
			if time.Since(waitingDup) > g.cfg.KeepAlive*3/2+2*time.Second {
				return fmt.Errorf("%w: INSTANCE_ID %q is held by a live member of group %q (started %s): give each member "+
					"its own INSTANCE_ID", ErrDuplicate, g.cfg.ID, g.cfg.Name, dup.Started.Format(time.RFC3339))
			}
			continue
		}
		if dup != nil && announced {
			g.log.Error().Str("session", dup.Session).Msg("another process announces this INSTANCE_ID; " +
				"give each member its own (this one keeps it)")
			g.mu.Lock()
			g.duplicate = nil
			g.mu.Unlock()
		}
		g.announce(ctx)
		g.mu.Lock()
		joinedNow := false
		if g.announced && !g.joined && (g.seenByAllLocked() || time.Since(g.since) > g.cfg.KeepAlive+g.cfg.Settle) {
			g.joined, joinedNow = true, true
		}
		g.mu.Unlock()
		if joinedNow {
			g.log.Info().Strs("members", g.Live()).Msg("joined the group: taking this member's share")
			g.notify()
		}
	}
}

// announce publishes this member's announcement when it changed.
func (g *Group) announce(ctx context.Context) {
	g.mu.Lock()
	a := Announcement{ID: g.cfg.ID, Group: g.cfg.Name, Version: g.cfg.Version, Started: g.started, Session: g.session,
		Epoch: g.epoch, Sees: g.liveLocked(), Share: g.share}
	same := g.announced && !g.resend && slices.Equal(a.Sees, g.sent.Sees) && a.Share == g.sent.Share &&
		a.Epoch == g.sent.Epoch
	g.mu.Unlock()
	if same {
		return
	}
	b, _ := json.Marshal(a)
	msg := bus.Message{Topic: g.cfg.Tree.BridgeMember(g.cfg.ID), Payload: b, Retain: true}
	if err := g.pub.Publish(ctx, msg); err != nil {
		return
	}
	g.mu.Lock()
	g.sent, g.announced, g.resend = a, true, false
	g.members[g.cfg.ID] = a
	g.mu.Unlock()
}

// leave clears this member's announcement: a clean stop hands its share
// over at once, without waiting for a will.
func (g *Group) leave() {
	g.mu.Lock()
	announced := g.announced
	g.lastOut = g.connected && g.joined && len(g.liveLocked()) <= 1
	g.announced, g.joined = false, false
	g.mu.Unlock()
	if !announced {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g.pub.Publish(ctx, bus.Message{Topic: g.cfg.Tree.BridgeMember(g.cfg.ID), Retain: true})
	g.log.Info().Msg("left the group")
}

// OwnerAmong is the member of live that owns key: the one with the
// highest rendezvous weight for it (highest random weight hashing). Every
// member computes the same, and a member that leaves moves only the keys
// it owned.
func OwnerAmong(key string, live []string) string { return owner(key, live) }

func owner(key string, live []string) string {
	best, bestW := "", uint64(0)
	for _, id := range live {
		if w := weight(id, key); best == "" || w > bestW || w == bestW && id < best {
			best, bestW = id, w
		}
	}
	return best
}

// weight is the rendezvous weight of member for key: FNV-1a of both,
// mixed by splitmix64's finaliser (FNV alone spreads similar ids poorly).
func weight(member, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
