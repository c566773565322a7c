// Package topics defines the bridge's MQTT topic tree, the one place that knows its shape.
package topics

import "strings"

// DefaultBase is the default MQTT_BASE_TOPIC.
const DefaultBase = "ultimaker"

// Tree builds topics below one base topic.
type Tree struct{ Base string }

// Bridge topics.
func (t Tree) BridgeState() string { return t.Base + "/bridge/state" }

// BridgeInfo is the retained JSON summary of the bridge.
func (t Tree) BridgeInfo() string { return t.Base + "/bridge/info" }

// BridgeEvent carries every printer and cluster event.
func (t Tree) BridgeEvent() string { return t.Base + "/bridge/event" }

// BridgeProbe is a private topic of one bridge instance (named by its
// client id): the markers that end its retained-command checks.
func (t Tree) BridgeProbe(instance string) string {
	return t.Base + "/bridge/probe/" + Segment(instance)
}

// BridgeRequest is where bridge-level requests for action arrive.
func (t Tree) BridgeRequest(action string) string { return t.Base + "/bridge/request/" + action }

// BridgeResponse answers BridgeRequest.
func (t Tree) BridgeResponse(action string) string { return t.Base + "/bridge/response/" + action }

// PrinterState is a printer's retained JSON state.
func (t Tree) PrinterState(printer string) string { return t.Base + "/printers/" + printer + "/state" }

// PrinterAvailability is a printer's retained online/offline.
func (t Tree) PrinterAvailability(printer string) string {
	return t.Base + "/printers/" + printer + "/availability"
}

// PrinterEvent is a printer's event stream.
func (t Tree) PrinterEvent(printer string) string { return t.Base + "/printers/" + printer + "/event" }

// PrinterSnapshot holds the URL of a printer's latest webcam snapshot.
func (t Tree) PrinterSnapshot(printer string) string {
	return t.Base + "/printers/" + printer + "/snapshot"
}

// PrinterPreview holds the preview image URL of the printer's current (or
// last) job.
func (t Tree) PrinterPreview(printer string) string {
	return t.Base + "/printers/" + printer + "/preview"
}

// PrinterSet is a printer's command topic.
func (t Tree) PrinterSet(printer string) string { return t.Base + "/printers/" + printer + "/set" }

// PrinterResponse answers PrinterSet.
func (t Tree) PrinterResponse(printer string) string {
	return t.Base + "/printers/" + printer + "/response"
}

// ClusterState is a cluster's retained JSON state.
func (t Tree) ClusterState(cluster string) string { return t.Base + "/clusters/" + cluster + "/state" }

// ClusterAvailability is a cluster's retained online/offline.
func (t Tree) ClusterAvailability(cluster string) string {
	return t.Base + "/clusters/" + cluster + "/availability"
}

// ClusterSet is a cluster's command topic.
func (t Tree) ClusterSet(cluster string) string { return t.Base + "/clusters/" + cluster + "/set" }

// ClusterResponse answers ClusterSet.
func (t Tree) ClusterResponse(cluster string) string {
	return t.Base + "/clusters/" + cluster + "/response"
}

// Availability payloads.
const (
	Online  = "online"
	Offline = "offline"
)

// Segment makes s safe as one topic level: lower-cased, with every character
// outside [a-z0-9_-] replaced by '_'. It returns "" for an empty s so callers
// can fall back to another id.
func Segment(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// ValidBase reports whether base can prefix the tree: non-empty, no
// wildcards, no empty levels, not starting with '$'.
func ValidBase(base string) bool {
	if base == "" || strings.ContainsAny(base, "+#\x00") || strings.HasPrefix(base, "$") {
		return false
	}
	for _, lvl := range strings.Split(base, "/") {
		if lvl == "" {
			return false
		}
	}
	return true
}
