// Package topics defines the bridge's MQTT topic tree, the one place that knows its shape, in both directions.
package topics

import "strings"

// DefaultBase is the default MQTT_BASE_TOPIC.
const DefaultBase = "ultimaker"

// Availability payloads, of the bridge state topic (and its last will)
// and of every availability topic.
const (
	Online  = "online"
	Offline = "offline"
)

// Kind is what a topic addresses.
type Kind string

// Kinds of topic.
const (
	Bridge    Kind = "bridge"
	Printer   Kind = "printer"
	Cluster   Kind = "cluster"
	Workspace Kind = "workspace"
)

// Verbs: the last level of a printer or cluster topic, or the second of a
// bridge topic.
const (
	State        = "state"
	Availability = "availability"
	Event        = "event"
	Snapshot     = "snapshot"
	Picture      = "picture"
	Preview      = "preview"
	Camera       = "camera"
	Statistics   = "statistics"
	Set          = "set"
	Response     = "response"
	Info         = "info"
	Request      = "request"
	Probe        = "probe"
	// Members (a member of a group of bridges, by its INSTANCE_ID) and
	// Clusters (the account's cluster list the group's leader read) are
	// a group's own topics.
	Members  = "members"
	Clusters = "clusters"
	// Claims are a group member's word that it has taken a command on:
	// the others then never carry that command out.
	Claims = "claims"
	// Activity is the farm's activity feed (events and answers), retained,
	// and below it, in a group, the items each member adds.
	Activity = "activity"
)

// Address is a topic taken apart: what it addresses (Kind and ID: the
// printer or cluster id, or for bridge requests, responses and probes the
// action or instance) and the verb. Leaf is, for a topic below a state
// topic (MQTT_OUTPUT=attribute_and_json), the path of one value in the
// state's JSON: "job/progress".
type Address struct {
	Kind Kind
	ID   string
	Verb string
	Leaf string
}

// the shape of the tree: which verbs each kind has, and which of those
// are retained (removal and the stale sweep clear exactly these).
var (
	printerVerbs  = []string{State, Availability, Event, Snapshot, Picture, Preview, Camera, Statistics, Set, Response}
	workspaceVerb = []string{State, Set, Response} // <base>/workspace/<verb>
	clusterVerbs  = []string{State, Availability, Set, Response}
	bridgeVerbs   = []string{State, Info, Event, Clusters, Activity}              // <base>/bridge/<verb>
	bridgeIDVerb  = []string{Request, Response, Probe, Members, Claims, Activity} // <base>/bridge/<verb>/<id>
	retained      = map[Kind][]string{Printer: {State, Availability, Preview, Snapshot, Picture, Camera, Statistics},
		Cluster: {State, Availability}}
	collections = map[Kind]string{Printer: "printers", Cluster: "clusters"}
)

// Tree builds and parses topics below one base topic.
type Tree struct{ Base string }

// Topic builds the topic of a.
func (t Tree) Topic(a Address) string {
	if a.Leaf != "" {
		l := a
		l.Leaf = ""
		return t.Topic(l) + "/" + a.Leaf
	}
	if a.Kind == Workspace {
		return t.Base + "/workspace/" + a.Verb
	}
	if a.Kind == Bridge {
		if a.ID != "" {
			return t.Base + "/bridge/" + a.Verb + "/" + a.ID
		}
		return t.Base + "/bridge/" + a.Verb
	}
	return t.Base + "/" + collections[a.Kind] + "/" + a.ID + "/" + a.Verb
}

// Parse takes a topic of the tree apart; false for anything else.
func (t Tree) Parse(topic string) (Address, bool) {
	rest, ok := strings.CutPrefix(topic, t.Base+"/")
	if !ok {
		return Address{}, false
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		if p == "" {
			return Address{}, false
		}
	}
	// A value below a state topic: the state's address and the path.
	switch {
	case len(parts) > 2 && parts[0] == "workspace" && parts[1] == State:
		return Address{Kind: Workspace, Verb: State, Leaf: strings.Join(parts[2:], "/")}, true
	case len(parts) > 3 && (parts[0] == "printers" || parts[0] == "clusters") && parts[2] == State:
		return Address{Kind: map[string]Kind{"printers": Printer, "clusters": Cluster}[parts[0]], ID: parts[1], Verb: State,
			Leaf: strings.Join(parts[3:], "/")}, true
	}
	switch {
	case len(parts) == 2 && parts[0] == "workspace" && contains(workspaceVerb, parts[1]):
		return Address{Kind: Workspace, Verb: parts[1]}, true
	case len(parts) == 2 && parts[0] == "bridge" && contains(bridgeVerbs, parts[1]):
		return Address{Kind: Bridge, Verb: parts[1]}, true
	case len(parts) == 3 && parts[0] == "bridge" && contains(bridgeIDVerb, parts[1]):
		return Address{Kind: Bridge, ID: parts[2], Verb: parts[1]}, true
	case len(parts) == 3 && parts[0] == "printers" && contains(printerVerbs, parts[2]):
		return Address{Kind: Printer, ID: parts[1], Verb: parts[2]}, true
	case len(parts) == 3 && parts[0] == "clusters" && contains(clusterVerbs, parts[2]):
		return Address{Kind: Cluster, ID: parts[1], Verb: parts[2]}, true
	}
	return Address{}, false
}

// Retained lists the retained topics of a printer or cluster: what its
// removal clears.
func (t Tree) Retained(kind Kind, id string) []string {
	out := make([]string, 0, len(retained[kind]))
	for _, v := range retained[kind] {
		out = append(out, t.Topic(Address{Kind: kind, ID: id, Verb: v}))
	}
	return out
}

// IsRetained reports whether a is one of the retained topics of a
// printer or cluster (state and the values below it, availability,
// preview, snapshot, …).
func IsRetained(a Address) bool { return contains(retained[a.Kind], a.Verb) }

// Leaf is the topic of one value of a state's JSON below its state topic:
// path is the keys and array indexes that lead to it, joined by '/'.
func Leaf(stateTopic, path string) string { return stateTopic + "/" + path }

// CommandFilters are the subscriptions of every command topic: printer
// and cluster set topics and bridge requests.
func (t Tree) CommandFilters() []string {
	return []string{t.Base + "/printers/+/" + Set, t.Base + "/clusters/+/" + Set, t.Base + "/bridge/" + Request + "/+",
		t.Topic(Address{Kind: Workspace, Verb: Set})}
}

// DeviceFilters match every printer and cluster topic, and every value
// below a state topic, for the sweep of what an earlier run left.
func (t Tree) DeviceFilters() []string {
	return []string{t.Base + "/printers/+/+", t.Base + "/clusters/+/+", t.Base + "/printers/+/" + State + "/#",
		t.Base + "/clusters/+/" + State + "/#", t.Base + "/workspace/" + State + "/#"}
}

// All matches everything below the base.
func (t Tree) All() string { return t.Base + "/#" }

// ResponseTo is the topic that answers a command topic.
func (t Tree) ResponseTo(a Address) string {
	a.Verb = Response
	return t.Topic(a)
}

// BridgeState is the bridge's retained online/offline (its last will).
func (t Tree) BridgeState() string { return t.Topic(Address{Kind: Bridge, Verb: State}) }

// BridgeInfo is the retained JSON summary of the bridge.
func (t Tree) BridgeInfo() string { return t.Topic(Address{Kind: Bridge, Verb: Info}) }

// BridgeEvent carries every printer and cluster event.
func (t Tree) BridgeEvent() string { return t.Topic(Address{Kind: Bridge, Verb: Event}) }

// BridgeProbe is a private topic of one bridge instance (named by its
// client id): the markers that end its retained-command checks.
func (t Tree) BridgeProbe(instance string) string {
	return t.Topic(Address{Kind: Bridge, ID: Segment(instance), Verb: Probe})
}

// BridgeMember is where a member of a group of bridges announces itself
// (retained; its last will clears it).
func (t Tree) BridgeMember(instance string) string {
	return t.Topic(Address{Kind: Bridge, ID: instance, Verb: Members})
}

// BridgeMembers matches every member's announcement.
func (t Tree) BridgeMembers() string { return t.Base + "/bridge/" + Members + "/+" }

// BridgeClaim is where a member of a group claims the commands it takes
// on (not retained).
func (t Tree) BridgeClaim(instance string) string {
	return t.Topic(Address{Kind: Bridge, ID: instance, Verb: Claims})
}

// BridgeClaims matches every member's claims.
func (t Tree) BridgeClaims() string { return t.Base + "/bridge/" + Claims + "/+" }

// BridgeActivity is the farm's activity feed, its newest items
// (retained): a restart, and every member of a group, shows the same.
func (t Tree) BridgeActivity() string { return t.Topic(Address{Kind: Bridge, Verb: Activity}) }

// BridgeActivityOf is where a member of a group shares the items it adds
// to the feed (not retained).
func (t Tree) BridgeActivityOf(instance string) string {
	return t.Topic(Address{Kind: Bridge, ID: Segment(instance), Verb: Activity})
}

// BridgeActivities matches every member's shared items.
func (t Tree) BridgeActivities() string { return t.Base + "/bridge/" + Activity + "/+" }

// BridgeClusters is the account's cluster list as a group's leader read
// it (retained): the other members deal their share from it.
func (t Tree) BridgeClusters() string { return t.Topic(Address{Kind: Bridge, Verb: Clusters}) }

// PrinterStates matches every printer's state: what a restart reads
// back, to derive the events it missed.
func (t Tree) PrinterStates() string { return t.Base + "/printers/+/" + State }

// StateFilters match every printer's and cluster's state: what the other
// members of a group publish, for the whole farm's view.
func (t Tree) StateFilters() []string {
	return []string{t.PrinterStates(), t.Base + "/clusters/+/" + State}
}

// ResponseFilters match every answer to a command: a group's members
// see which commands were answered.
func (t Tree) ResponseFilters() []string {
	return []string{t.Base + "/printers/+/" + Response, t.Base + "/clusters/+/" + Response,
		t.Base + "/bridge/" + Response + "/+", t.Topic(Address{Kind: Workspace, Verb: Response})}
}

// BridgeRequest is where bridge-level requests for action arrive.
func (t Tree) BridgeRequest(action string) string {
	return t.Topic(Address{Kind: Bridge, ID: action, Verb: Request})
}

// BridgeResponse answers BridgeRequest.
func (t Tree) BridgeResponse(action string) string {
	return t.Topic(Address{Kind: Bridge, ID: action, Verb: Response})
}

// PrinterState is a printer's retained JSON state.
func (t Tree) PrinterState(printer string) string { return t.printer(printer, State) }

// PrinterAvailability is a printer's retained online/offline.
func (t Tree) PrinterAvailability(printer string) string { return t.printer(printer, Availability) }

// PrinterEvent is a printer's event stream.
func (t Tree) PrinterEvent(printer string) string { return t.printer(printer, Event) }

// PrinterSnapshot describes a printer's latest picture (PrinterPicture):
// when, how and for what it was taken, and the cloud's URL of it.
func (t Tree) PrinterSnapshot(printer string) string { return t.printer(printer, Snapshot) }

// PrinterPicture holds a printer's latest picture, as JPEG bytes; its
// snapshot topic says when, how and for what it was taken.
func (t Tree) PrinterPicture(printer string) string { return t.printer(printer, Picture) }

// PrinterPreview holds the preview image URL of the printer's current (or
// last) job.
func (t Tree) PrinterPreview(printer string) string { return t.printer(printer, Preview) }

// PrinterCamera holds the URLs of a printer's own camera on the LAN.
func (t Tree) PrinterCamera(printer string) string { return t.printer(printer, Camera) }

// PrinterStatistics is a printer's retained 30-day statistics.
func (t Tree) PrinterStatistics(printer string) string { return t.printer(printer, Statistics) }

// WorkspaceState is the workspace's retained JSON state.
func (t Tree) WorkspaceState() string { return t.Topic(Address{Kind: Workspace, Verb: State}) }

// WorkspaceSet is the workspace's command topic.
func (t Tree) WorkspaceSet() string { return t.Topic(Address{Kind: Workspace, Verb: Set}) }

// PrinterSet is a printer's command topic.
func (t Tree) PrinterSet(printer string) string { return t.printer(printer, Set) }

// PrinterResponse answers PrinterSet.
func (t Tree) PrinterResponse(printer string) string { return t.printer(printer, Response) }

// ClusterState is a cluster's retained JSON state.
func (t Tree) ClusterState(cluster string) string { return t.cluster(cluster, State) }

// ClusterAvailability is a cluster's retained online/offline.
func (t Tree) ClusterAvailability(cluster string) string { return t.cluster(cluster, Availability) }

// ClusterSet is a cluster's command topic.
func (t Tree) ClusterSet(cluster string) string { return t.cluster(cluster, Set) }

// ClusterResponse answers ClusterSet.
func (t Tree) ClusterResponse(cluster string) string { return t.cluster(cluster, Response) }

// PrinterPrefix is what every topic of a printer starts with.
func (t Tree) PrinterPrefix(printer string) string {
	return t.Base + "/" + collections[Printer] + "/" + printer + "/"
}

// ClusterPrefix is what every topic of a cluster starts with.
func (t Tree) ClusterPrefix(cluster string) string {
	return t.Base + "/" + collections[Cluster] + "/" + cluster + "/"
}

func (t Tree) printer(id, verb string) string {
	return t.Topic(Address{Kind: Printer, ID: id, Verb: verb})
}

func (t Tree) cluster(id, verb string) string {
	return t.Topic(Address{Kind: Cluster, ID: id, Verb: verb})
}

// AvailabilityPayload is the payload of an availability topic.
func AvailabilityPayload(online bool) []byte {
	if online {
		return []byte(Online)
	}
	return []byte(Offline)
}

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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
