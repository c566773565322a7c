// Package merge joins what the cloud and the LAN see of each printer into the one state the bridge publishes.
package merge

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

type side int

const (
	cloudSide side = iota
	localSide
)

// Merger sits between the two sources and the renderer: each source
// hands it its own updates, and it hands on one state per printer and
// cluster (state.Merge decides which fields come from where), the events
// between merged states, and stats of both. A printer keeps one state
// whichever source polled last, so the sources never make it flap.
type Merger struct {
	out poller.Sink

	mu       sync.Mutex
	printers [2]map[string]state.Printer
	clusters [2]map[string]state.Cluster
	merged   map[string]state.Printer
	shown    map[string]side // which side's cluster is shown, by key
	stats    [2]*poller.Stats
	byUUID   map[string]string // the cloud's printer ids, by printer uuid
}

// New returns a Merger that hands what changed to out. The bridge is
// ready when both sources are.
func New(out poller.Sink) *Merger {
	m := &Merger{out: out, merged: map[string]state.Printer{}, shown: map[string]side{}, byUUID: map[string]string{}}
	for i := range m.printers {
		m.printers[i], m.clusters[i] = map[string]state.Printer{}, map[string]state.Cluster{}
	}
	return m
}

// Cloud is the sink of the cloud poller.
func (m *Merger) Cloud() poller.Sink { return sink{m, cloudSide} }

// Local is the sink of the LAN poller.
func (m *Merger) Local() poller.Sink { return sink{m, localSide} }

type sink struct {
	m *Merger
	s side
}

func (k sink) Apply(ctx context.Context, u poller.Update) { k.m.apply(ctx, k.s, u) }

func (m *Merger) apply(ctx context.Context, s side, u poller.Update) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := poller.Update{Workspace: u.Workspace, Statistics: u.Statistics}
	now := time.Now()
	for _, p := range u.Printers {
		if s == cloudSide && p.UUID != "" {
			m.byUUID[strings.ToLower(p.UUID)] = p.ID
		}
		m.printers[s][p.ID] = p
		m.remerge(&out, p.ID, p.UpdatedAt)
		m.printers[s][p.ID] = p.Compact() // kept: see state.Printer.Compact
	}
	for _, p := range u.RemovedPrinters {
		if s == cloudSide && m.byUUID[strings.ToLower(p.UUID)] == p.ID {
			delete(m.byUUID, strings.ToLower(p.UUID))
		}
		delete(m.printers[s], p.ID)
		m.remerge(&out, p.ID, now)
	}
	if c := u.Cluster; c != nil {
		m.clusters[s][c.ID] = c.Compact()
		if m.showCluster(c.ID, s) {
			cl := *c
			out.Cluster = &cl
		}
	}
	// A cluster the other side still sees is shown as that side has it;
	// an update carries one cluster, so each goes in an update of its own.
	var again []state.Cluster
	for _, c := range u.RemovedClusters {
		delete(m.clusters[s], c.ID)
		other := 1 - s
		if oc, ok := m.clusters[other][c.ID]; ok {
			m.shown[c.ID] = other
			again = append(again, oc)
			continue
		}
		delete(m.shown, c.ID)
		out.RemovedClusters = append(out.RemovedClusters, c)
	}
	// Released (a group member handed them to another): gone from this
	// side; passed on when the other side has none of them either.
	for _, p := range u.Released {
		delete(m.printers[s], p.ID)
		if _, other := m.printers[1-s][p.ID]; other {
			m.remerge(&out, p.ID, now)
			continue
		}
		out.Released = append(out.Released, p)
	}
	for _, c := range u.ReleasedClusters {
		delete(m.clusters[s], c.ID)
		if _, other := m.clusters[1-s][c.ID]; !other {
			delete(m.shown, c.ID)
			out.ReleasedClusters = append(out.ReleasedClusters, c)
		}
	}
	if u.Stats != nil {
		st := *u.Stats
		m.stats[s] = &st
		out.Stats = m.combinedStats()
	}
	if out.Cluster != nil || len(out.Printers) > 0 || len(out.RemovedPrinters) > 0 || len(out.RemovedClusters) > 0 ||
		len(out.Released) > 0 || len(out.ReleasedClusters) > 0 || out.Stats != nil || out.Workspace != nil ||
		len(out.Statistics) > 0 || len(out.Events) > 0 {
		m.out.Apply(ctx, out)
	}
	for _, c := range again {
		m.out.Apply(ctx, poller.Update{Cluster: &c})
	}
}

// CloudKey is the topic id the cloud knows the printer with this uuid by:
// the LAN poller takes it for a printer whose host name differs from the
// cloud's unique_name (local.Config.KnownAs).
func (m *Merger) CloudKey(uuid string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byUUID[strings.ToLower(uuid)]
	return id, ok
}

// showCluster reports whether side s's cluster id is the one shown: the
// cloud's when it knows the cluster (it has the queue's history, notes,
// sharing), else the LAN's.
func (m *Merger) showCluster(id string, s side) bool {
	if _, inCloud := m.clusters[cloudSide][id]; inCloud && s == localSide {
		return false
	}
	m.shown[id] = s
	return true
}

// remerge recomputes printer id from both sides into out.
func (m *Merger) remerge(out *poller.Update, id string, at time.Time) {
	var cloud, local *state.Printer
	if p, ok := m.printers[cloudSide][id]; ok {
		cloud = &p
	}
	if p, ok := m.printers[localSide][id]; ok {
		local = &p
	}
	prev, had := m.merged[id]
	if cloud == nil && local == nil {
		if had {
			delete(m.merged, id)
			out.RemovedPrinters = append(out.RemovedPrinters, prev)
		}
		return
	}
	var prevPtr *state.Printer
	if had {
		prevPtr = &prev
	}
	p, changed := state.Merge(cloud, local, prevPtr, at)
	m.merged[id] = p.Compact()
	if !changed {
		return
	}
	out.Printers = append(out.Printers, p)
	if cloud == nil && !m.ready(cloudSide) || local == nil && !m.ready(localSide) {
		// The other side may still bring this printer's fields of its own
		// (maintenance, firmware, history): not news when it does.
		out.Unsettled = append(out.Unsettled, id)
	}
	if had {
		out.Events = append(out.Events, state.PrinterEvents(prev, p)...)
	}
}

// ready reports whether side s has finished its first round.
func (m *Merger) ready(s side) bool { return m.stats[s] != nil && m.stats[s].Ready }

// combinedStats are the stats of the bridge as a whole: ready when every
// source in use is; cloud figures from the cloud, LAN ones from the LAN,
// counts of the merged model.
func (m *Merger) combinedStats() *poller.Stats {
	var st poller.Stats
	if c := m.stats[cloudSide]; c != nil {
		st = *c
	}
	st.Ready = true
	for _, ss := range m.stats {
		if ss == nil || !ss.Ready {
			st.Ready = false
		}
	}
	if l := m.stats[localSide]; l != nil {
		st.LocalPrinters, st.LocalAnswering = l.LocalPrinters, l.LocalAnswering
		if st.LastPoll == nil || l.LastPoll != nil && l.LastPoll.After(*st.LastPoll) {
			st.LastPoll = l.LastPoll
		}
	}
	st.Printers, st.Clusters = len(m.merged), len(m.shown)
	return &st
}
