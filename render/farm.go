package render

import (
	"context"
	"encoding/json"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// MaxForeignState bounds a state another member publishes: a printer's is
// a few KB, a cluster's with its queue and notes tens.
const MaxForeignState = 512 << 10

// WatchFarm registers f to be told of every change of the whole farm's
// view: this bridge's updates (as Watch) and, in a group, the states the
// other members publish. f runs on the caller and must not block. Call
// it before the first Apply.
func (b *Renderer) WatchFarm(f func(poller.Update)) { b.farmWatchers = append(b.farmWatchers, f) }

// Foreign takes a state another member of the group published on
// <base>/printers/<p>/state or <base>/clusters/<c>/state: kept for the
// whole farm's view (the page and the API, commands, the stale sweep),
// never published by this bridge. This bridge's own states coming back
// are skipped. A state that does not decode is ignored: it may be
// anyone's.
func (b *Renderer) Foreign(ctx context.Context, in bus.Inbound) {
	a, ok := b.tree.Parse(in.Topic)
	if !ok || a.Verb != topics.State || a.Leaf != "" || in.Truncated || len(in.Payload) > MaxForeignState {
		return
	}
	var u poller.Update
	b.mu.Lock()
	switch a.Kind {
	case topics.Printer:
		if p, gone, ok := takeForeign(b.printers, b.foreign, a.ID, in.Payload); ok && gone {
			u.RemovedPrinters = []state.Printer{p}
		} else if ok {
			u.Printers = []state.Printer{p}
		}
	case topics.Cluster:
		if c, gone, ok := takeForeign(b.clusters, b.foreignClusters, a.ID, in.Payload); ok && gone {
			u.RemovedClusters = []state.Cluster{c}
		} else if ok {
			u.Cluster = &c
		}
	}
	b.mu.Unlock()
	if u.Cluster == nil && len(u.Printers) == 0 && len(u.RemovedPrinters) == 0 && len(u.RemovedClusters) == 0 {
		return
	}
	for _, f := range b.farmWatchers {
		f(u)
	}
}

// takeForeign keeps in foreign the state payload another member
// published for id, or forgets it when payload is empty (gone: it was
// known). It reports ok when the farm's view changed: never for an id own
// holds (this bridge's own state coming back), nor for a payload that
// does not decode or names another id.
func takeForeign[T interface{ TopicID() string }](own, foreign map[string]T, id string,
	payload []byte) (v T, gone, ok bool) {
	if _, mine := own[id]; mine {
		return v, false, false
	}
	if len(payload) == 0 {
		v, ok = foreign[id]
		delete(foreign, id)
		return v, true, ok
	}
	if json.Unmarshal(payload, &v) != nil || v.TopicID() != id {
		return v, false, false
	}
	foreign[id] = v
	return v, false, true
}

// release hands the printers and clusters of u.Released over to the farm's
// view: another member owns them now and publishes their topics; this
// bridge forgets what it published there, so that a reconnect does not
// send its older payloads over the new owner's. Called with b.mu held.
func (b *Renderer) release(u poller.Update) {
	var prefixes []string
	for _, p := range u.Released {
		own, ok := b.printers[p.ID]
		if !ok {
			continue
		}
		b.foreign[p.ID] = own
		delete(b.printers, p.ID)
		b.forgetSighting(p.ID)
		delete(b.configKeys, p.ID)
		delete(b.published, b.tree.PrinterState(p.ID))
		prefixes = append(prefixes, b.tree.PrinterPrefix(p.ID))
		if b.disc != nil {
			prefixes = append(prefixes, b.disc.DeviceTopic(b.disc.PrinterObjectID(p.ID)))
		}
	}
	for _, c := range u.ReleasedClusters {
		own, ok := b.clusters[c.ID]
		if !ok {
			continue
		}
		b.foreignClusters[c.ID] = own
		delete(b.clusters, c.ID)
		delete(b.published, b.tree.ClusterState(c.ID))
		prefixes = append(prefixes, b.tree.ClusterPrefix(c.ID))
		if b.disc != nil && b.clusterDevices[c.ID] {
			prefixes = append(prefixes, b.disc.DeviceTopic(b.disc.ClusterObjectID(c.ID)))
			delete(b.clusterDevices, c.ID)
		}
	}
	if len(prefixes) > 0 {
		b.pub.Forget(prefixes...)
	}
}

// leads reports whether this bridge publishes the bridge's own topics
// (bridge/info, the bridge's device): alone it does, in a group only its
// leader.
func (b *Renderer) leads() bool { return b.opts.Leads == nil || b.opts.Leads() }

// Lead publishes the bridge's own topics, when this member of a group has
// become its leader.
func (b *Renderer) Lead(ctx context.Context) {
	if b.leads() {
		b.Start(ctx)
	}
}
