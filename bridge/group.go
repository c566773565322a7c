package bridge

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/activity"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/group"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// groupInbox is the broker client's inbox in a group: every member reads
// every state the others publish, a farm's worth after a connect.
const groupInbox = 8192

// maxClusterList bounds the cluster list a group's leader hands over.
const maxClusterList = 8 << 20

// subscribeGroup subscribes the group's topics: the members, the states
// the others publish, the cluster list the leader read, every answer and
// claim. Called from New once every part exists.
func (b *Bridge) subscribeGroup() {
	g := b.group
	b.mq.OnConnect(func(context.Context) { g.Connected() })
	b.mq.OnLost(g.Disconnected)
	b.mq.OnLost(b.cmd.Disconnected)
	b.mq.Subscribe(mqttpub.Subscription{Filter: b.tree.BridgeMembers(), QoS: 1, Handle: g.Observe,
		MaxPayload: func(string) int { return 64 << 10 }})
	for _, f := range b.tree.StateFilters() {
		b.mq.Subscribe(mqttpub.Subscription{Filter: f, QoS: 1, Handle: b.render.Foreign,
			MaxPayload: func(string) int { return render.MaxForeignState }})
	}
	if b.poll != nil {
		b.mq.Subscribe(mqttpub.Subscription{Filter: b.tree.BridgeClusters(), QoS: 1, Handle: b.clusterList,
			MaxPayload: func(string) int { return maxClusterList }})
	}
	// A lone member's held will may fire just as another joins (it died
	// before it saw the newcomer): a live member says "online" again.
	b.mq.Subscribe(mqttpub.Subscription{Filter: b.tree.BridgeState(), QoS: 1, Handle: b.bridgeState,
		MaxPayload: func(string) int { return 64 }})
	// The activity feed: the copy the leader keeps, and what each member adds.
	for _, f := range []string{b.tree.BridgeActivity(), b.tree.BridgeActivities()} {
		b.mq.Subscribe(mqttpub.Subscription{Filter: f, QoS: 1, Handle: b.feed.Observe,
			MaxPayload: func(string) int { return activity.MaxPayload }})
	}
	for _, f := range b.cmd.GroupFilters() {
		b.mq.Subscribe(mqttpub.Subscription{Filter: f, QoS: 1, Handle: b.cmd.Observed})
	}
	g.OnChange(func() {
		if b.poll != nil {
			b.poll.Reshare()
		}
		if b.lan != nil {
			b.lan.Reshare()
		}
		select {
		case b.reshared <- struct{}{}:
		default:
		}
	})
}

// bridgeState answers an "offline" on the bridge's state while this
// member is in the group with "online".
func (b *Bridge) bridgeState(ctx context.Context, in bus.Inbound) {
	if string(in.Payload) != topics.Offline || !b.group.Joined() {
		return
	}
	b.mq.Forget(b.tree.BridgeState()) // sent even though this client said "online" before
	b.mq.Publish(ctx, bus.Message{Topic: b.tree.BridgeState(), Payload: []byte(topics.Online), Retain: true})
}

// publishClusterList hands the cluster list the leader read to the other
// members (retained: one that joins later has it at once).
func (b *Bridge) publishClusterList(list []connect.Cluster) {
	payload, err := json.Marshal(list)
	if err != nil || len(payload) > maxClusterList {
		b.log.Error().Int("clusters", len(list)).Msg("cluster list too large to hand to the group")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.mq.Publish(ctx, bus.Message{Topic: b.tree.BridgeClusters(), Payload: payload, Retain: true})
}

// clusterList takes the cluster list the leader handed over. A list that
// does not decode is ignored (logged once): anyone may publish there.
func (b *Bridge) clusterList(_ context.Context, in bus.Inbound) {
	if b.group.Leads() || len(in.Payload) == 0 {
		return
	}
	var list []connect.Cluster
	if in.Truncated || json.Unmarshal(in.Payload, &list) != nil {
		b.log.Warn().Str("topic", in.Topic).Msg("the group's cluster list does not decode; ignored")
		return
	}
	b.poll.SetClusters(list)
}

// groupInfo is bridge/info's group: its name, this member, the leader and
// every live member's announcement (id, version, start, share).
func (b *Bridge) groupInfo() any {
	g := b.group
	return map[string]any{"name": g.Name(), "member": g.ID(), "leader": g.Owner(group.AccountKey), "members": g.Members()}
}

// seeMembers adds the live members to those seen this run, and reports
// whether one is new: the bridge's device shows each as an entity, on
// while it is live.
func (b *Bridge) seeMembers() bool {
	b.membersMu.Lock()
	defer b.membersMu.Unlock()
	added := false
	for _, id := range b.group.Live() {
		if !slices.Contains(b.membersSeen, id) {
			b.membersSeen, added = append(b.membersSeen, id), true
		}
	}
	slices.Sort(b.membersSeen)
	return added
}

// members are the members seen this run, for the bridge's device.
func (b *Bridge) members() []string {
	b.membersMu.Lock()
	defer b.membersMu.Unlock()
	return slices.Clone(b.membersSeen)
}

// ownsLAN tells the LAN poller whether this member reads the printer with
// this GUID: the owner of its cloud cluster when the farm knows it there,
// else the leader.
func (b *Bridge) ownsLAN(guid string) bool {
	if cluster, ok := b.render.CloudClusterOf(guid); ok && guid != "" {
		return b.group.Owns(cluster)
	}
	return b.group.Leads()
}

// runGroup runs this member in its group until ctx ends: the
// announcement, the bridge's own topics once it leads, the bridge's
// "offline" will while it is alone, and its share in the announcement. A
// duplicate INSTANCE_ID ends the bridge (fail).
func (b *Bridge) runGroup(ctx context.Context, fail func(error)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := b.group.Run(ctx); err != nil {
			fail(err)
		}
	})
	wg.Go(func() { b.cmd.RunGroup(ctx) })
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var (
		leading bool
		will    *heldWill
	)
	defer func() { will.stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.reshared:
		case <-tick.C:
		}
		newMember := b.seeMembers()
		if leads := b.group.Leads(); leads != leading || leads && newMember {
			if leads && !leading {
				b.log.Info().Msg("leading the group: the account's work and the bridge's own topics are this member's")
			}
			leading = leads
			b.render.Lead(ctx) // the bridge's device and info, with the members (sent only when changed)
		}
		// The bridge is "offline" when its last member goes: the lone
		// member holds a connection whose will says so.
		switch alone := b.group.Alone(); {
		case alone && will == nil:
			will = b.holdWill(ctx)
		case !alone && will != nil:
			will.stop()
			will = nil
		}
		st := b.render.Stats()
		b.group.SetShare(group.Share{Leader: leading, Clusters: st.Clusters, Printers: st.Printers})
	}
}

// heldWill is the connection whose will is the bridge's "offline".
type heldWill struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// holdWill starts holding the bridge's "offline" will, and waits (a
// connect's time at most) until it is held: the share this lone member
// announces next is covered by it.
func (b *Bridge) holdWill(ctx context.Context) *heldWill {
	wctx, cancel := context.WithCancel(ctx)
	h := &heldWill{cancel: cancel, done: make(chan struct{})}
	held := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(h.done)
		b.mq.HoldWill(wctx, b.tree.BridgeState(), topics.AvailabilityPayload(false),
			func() { once.Do(func() { close(held) }) })
	}()
	select {
	case <-held:
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
	}
	return h
}

// stop ends the connection cleanly: the broker drops its will.
func (h *heldWill) stop() {
	if h != nil {
		h.cancel()
		<-h.done
	}
}
