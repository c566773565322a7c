package discovery_test

// The validator checks every discovery payload the bridge emits for a rich
// simulated world against Home Assistant's discovery contract, taken as
// data from testdata/ha-mqtt-discovery.json (copied from the project's
// shared reference, ha-mqtt-discovery.json for HA 2026.9).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/render"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// contract is the part of ha-mqtt-discovery.json the validator uses.
type contract struct {
	SupportedComponents []string          `json:"supported_components"`
	Abbreviations       map[string]string `json:"abbreviations"`
	DeviceAbbreviations map[string]string `json:"device_abbreviations"`
	OriginAbbreviations map[string]string `json:"origin_abbreviations"`
	AvailabilityModes   []string          `json:"availability_modes"`
	AvailabilityEntry   struct {
		Required []string `json:"required"`
		Allowed  []string `json:"allowed"`
	} `json:"availability_entry"`
	DeviceInfo struct {
		Allowed      []string   `json:"allowed"`
		AtLeastOneOf [][]string `json:"at_least_one_of"`
	} `json:"device_info"`
	OriginInfo struct {
		Required []string `json:"required"`
		Allowed  []string `json:"allowed"`
	} `json:"origin_info"`
	DeviceBased struct {
		Required  []string `json:"required"`
		Allowed   []string `json:"allowed"`
		Inherited []string `json:"shared_options_inherited_by_components"`
	} `json:"device_based_discovery"`
	Components map[string]struct {
		Required   []string            `json:"required"`
		Allowed    []string            `json:"allowed"`
		ExactlyOne [][]string          `json:"exactly_one_of"`
		KeyValues  map[string][]string `json:"key_values"`
	} `json:"components"`
	SensorDeviceClasses       map[string][]*string `json:"sensor_device_classes"`
	SensorUnitNotChecked      []string             `json:"sensor_device_classes_unit_not_checked"`
	SensorNonNumeric          []string             `json:"sensor_non_numeric_device_classes"`
	SensorStateClasses        []string             `json:"sensor_state_classes"`
	SensorStateClassUnits     map[string][]string  `json:"sensor_state_class_units"`
	SensorClassStateClasses   map[string][]string  `json:"sensor_device_class_state_classes"`
	SensorClassesNoStateClass []string             `json:"sensor_device_classes_without_state_class"`
	BinarySensorDeviceClasses []string             `json:"binary_sensor_device_classes"`
	ButtonDeviceClasses       []string             `json:"button_device_classes"`
	UpdateDeviceClasses       []string             `json:"update_device_classes"`
	EventDeviceClasses        []string             `json:"event_device_classes"`
	EntityCategories          []string             `json:"entity_categories"`
	CategoriesRefused         map[string][]string  `json:"entity_categories_refused_by_platform"`
}

func loadContract(t *testing.T) *contract {
	t.Helper()
	b, err := os.ReadFile("testdata/ha-mqtt-discovery.json")
	if err != nil {
		t.Fatal(err)
	}
	var c contract
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// world is what the bridge publishes for the simulated account: every
// message, and the retained topics with their latest payload.
type world struct {
	printers map[string]state.Printer // by host name, as last built
	msgs     []bus.Message
	retained map[string][]byte
	events   map[string][]byte // a sample payload per event topic
}

type recorder struct{ msgs []bus.Message }

func (r *recorder) Publish(_ context.Context, msgs ...bus.Message) error {
	r.msgs = append(r.msgs, msgs...)
	return nil
}
func (r *recorder) Republish(context.Context, ...string) error { return nil }
func (r *recorder) Forget(...string)                           {}

var testDisc = discovery.Config{Prefix: "homeassistant", Tree: topics.Tree{Base: "ultimaker"}, Version: "1.0.0-test", DeviceTriggers: true,
	Buttons: []string{"pause", "resume", "abort", "snapshot"}, Controls: []string{"settings", "note"}}

// lanPrinter is the printer buildWorld also reads on the LAN.
const lanPrinter = "ultimakersystem-4b0fc38e95e3"

// buildWorld polls the simulator twice, an hour of simulated time apart,
// so printers have jobs, finished jobs and events, and feeds the views to
// the bridge exactly as the poller would.
func buildWorld(t testing.TB) *world {
	t.Helper()
	clock := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	sim := simulator.New(simulator.Options{Seed: 5, Now: now})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	api, _ := connect.New(connect.Options{BaseURL: srv.URL + simulator.BasePath,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
	rec := &recorder{}
	disc := testDisc
	// A member of a group of two, so the bridge's member entities are
	// checked against bridge/info.
	group := render.Options{Members: func() []string { return []string{"m1", "m2"} }, Group: func() any {
		return map[string]any{"name": "farm", "member": "m1", "leader": "m1", "members": []map[string]any{{"id": "m1"}}}
	}}
	br := render.New(disc.Tree, rec, render.Info{Version: "1.0.0-test", Auth: "api_token"}, &disc, group, zerolog.Nop())
	ctx := context.Background()
	br.Start(ctx)
	clusters, err := api.Clusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	views := map[string]*state.View{}
	for round := range 3 {
		for _, cl := range clusters {
			st, err := api.ClusterStatus(ctx, cl.ClusterID)
			if err != nil {
				t.Fatal(err)
			}
			mt, _ := api.PendingMaintenance(ctx, cl.ClusterID)
			done, _ := api.CompletedMaintenance(ctx, cl.ClusterID, state.MaintenanceHistoryLength)
			prev := views[cl.ClusterID]
			obs := state.Observation{Cluster: cl, Status: st, Maintenance: mt, Completed: done, Now: clock}
			if cl.HostName == lanPrinter {
				// This printer is also read on the LAN (and refuses the
				// bridge's credential): temperatures, camera, sign-in.
				t1, t2, b, bt := 209.8, 210.0, 59.9, 60.0
				obs.Source = state.SourceBoth
				obs.Live = map[string]state.Live{lanPrinter: {
					Hotends:    []state.Temperature{{Current: &t1, Target: &t2}, {Current: &t1, Target: &t2}},
					BuildPlate: &state.Temperature{Current: &b, Target: &bt},
					Camera:     &state.Camera{SnapshotURL: "http://192.168.1.40/api/v1/camera/0/snapshot", StreamURL: "http://192.168.1.40/api/v1/camera/0/stream"},
					LocalAuth:  state.LocalAuthRequired,
					URL:        "http://192.168.1.40/",
				}}
			}
			v := state.Build(obs, prev)
			u := poller.Update{Cluster: &v.Cluster, Printers: v.Printers}
			if prev != nil {
				u.Events = state.Events(*prev, v)
			}
			br.Apply(ctx, u)
			views[cl.ClusterID] = &v
		}
		last := clock
		br.Apply(ctx, poller.Update{Stats: &poller.Stats{Ready: true, CloudReachable: true, Clusters: len(clusters), Printers: 6, LastPoll: &last}})
		clock = clock.Add(time.Duration(round+1) * 40 * time.Minute)
	}
	// The workspace and the statistics, as the poller computes them.
	settings, err := api.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	usage, _ := api.Usage(ctx)
	ids := map[string]string{}
	for _, v := range views {
		for _, p := range v.Printers {
			ids[p.UUID] = p.ID
			ids[v.Cluster.ClusterID] = p.ID // MakerBots: the cluster is the printer
		}
	}
	tally := state.NewTally(func(r connect.Report) string {
		if id := ids[r.PrinterUUID]; r.PrinterUUID != "" {
			return id
		}
		return ids[r.ClusterID]
	}, clock)
	if err := api.WalkReports(ctx, clock.Add(-30*24*time.Hour), clock, tally.Add); err != nil {
		t.Fatal(err)
	}
	all, per := tally.Result(clock)
	s := state.SettingsOf(*settings)
	br.Apply(ctx, poller.Update{Workspace: &state.Workspace{Settings: &s, Usage: usage, Statistics: &all, UpdatedAt: clock},
		Statistics: per})
	w := &world{printers: map[string]state.Printer{}, msgs: rec.msgs, retained: map[string][]byte{},
		events: map[string][]byte{}}
	for _, v := range views {
		for _, p := range v.Printers {
			w.printers[p.ID] = p
		}
	}
	// The broker connection, not the bridge, publishes the bridge state.
	w.retained[disc.Tree.BridgeState()] = []byte("online")
	for _, m := range rec.msgs {
		switch {
		case m.Retain && len(m.Payload) > 0:
			w.retained[m.Topic] = m.Payload
		case m.Retain:
			delete(w.retained, m.Topic)
		default:
			w.events[m.Topic] = m.Payload
		}
	}
	// Every printer has an event topic; give those without an event yet a
	// sample, so their templates can be checked.
	// The same for snapshot and preview topics, which appear when a
	// snapshot is taken or a job with a preview runs.
	sample, _ := json.Marshal(state.Event{Type: state.PrintFinished, Job: &state.EventJob{Name: "x"}})
	snapshot, _ := json.Marshal(render.Snapshot{URL: "http://example.test/s.jpg", TakenAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
		Via: "cloud", Size: 1234, Event: "print_finished", Job: "u"})
	for topic := range w.retained {
		if strings.HasPrefix(topic, "ultimaker/printers/") && strings.HasSuffix(topic, "/state") {
			ev := strings.TrimSuffix(topic, "/state") + "/event"
			if _, ok := w.events[ev]; !ok {
				w.events[ev] = sample
			}
			w.events[strings.TrimSuffix(topic, "/state")+"/snapshot"] = snapshot
			if _, ok := w.retained[strings.TrimSuffix(topic, "/state")+"/preview"]; !ok {
				// Published once the printer has had a job with a preview.
				w.events[strings.TrimSuffix(topic, "/state")+"/preview"] = []byte(`{"url":"http://example.test/p.jpg","job":"x","job_uuid":"u"}`)
			}
		}
	}
	return w
}

// problem collects rule violations with the rule that found them.
type problems struct {
	list  []string
	rules map[string]bool
}

func (p *problems) check(rule string, ok bool, format string, args ...any) {
	p.rules[rule] = true
	if !ok {
		p.list = append(p.list, rule+": "+fmt.Sprintf(format, args...))
	}
}

var (
	discoveryTopic = regexp.MustCompile(`^homeassistant/device/([a-zA-Z0-9_-]+)/config$`)
	componentID    = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	jsonPath       = regexp.MustCompile(`value_json((?:\.[a-zA-Z_][a-zA-Z0-9_]*|\[\d+\])+)`)
	enumList       = regexp.MustCompile(`in \[([^\]]*)\] else None`)
	iconRe         = regexp.MustCompile(`^[a-z]+:[a-z0-9-]+$`)
)

func expand(m map[string]any, table map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if long, ok := table[k]; ok {
			k = long
		}
		if _, exists := out[k]; exists {
			continue
		}
		out[k] = v
	}
	return out
}

// validate checks one device-discovery payload and returns the unique ids
// it declares.
func validate(c *contract, w *world, topic string, payload []byte, p *problems) []string {
	m := discoveryTopic.FindStringSubmatch(topic)
	p.check("topic-charset", m != nil, "%s: not <prefix>/device/<[a-zA-Z0-9_-]>/config", topic)
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		p.check("json-object", false, "%s: %v", topic, err)
		return nil
	}
	top := expand(raw, c.Abbreviations)
	for k := range top {
		p.check("top-level-keys", slices.Contains(c.DeviceBased.Allowed, k), "%s: top-level key %q is not allowed (HA rejects the payload)", topic, k)
	}
	for _, k := range c.DeviceBased.Required {
		p.check("top-level-required", top[k] != nil, "%s: %s missing", topic, k)
	}

	dev, _ := top["device"].(map[string]any)
	dev = expand(dev, c.DeviceAbbreviations)
	for k := range dev {
		p.check("device-keys", slices.Contains(c.DeviceInfo.Allowed, k), "%s: device key %q not allowed", topic, k)
	}
	ids, _ := dev["identifiers"].([]any)
	p.check("device-identifiers", len(ids) > 0 || dev["connections"] != nil, "%s: device has no identifiers", topic)
	for _, id := range ids {
		_, ok := id.(string)
		p.check("device-identifiers", ok, "%s: identifier %v is not a string", topic, id)
	}
	devName, _ := dev["name"].(string)
	p.check("device-name", devName != "", "%s: device has no name", topic)

	origin, _ := top["origin"].(map[string]any)
	origin = expand(origin, c.OriginAbbreviations)
	for k := range origin {
		p.check("origin-keys", slices.Contains(c.OriginInfo.Allowed, k), "%s: origin key %q not allowed", topic, k)
	}
	for _, k := range c.OriginInfo.Required {
		p.check("origin-required", origin[k] != nil, "%s: origin lacks %s", topic, k)
	}
	if u, ok := origin["support_url"].(string); ok {
		pu, err := url.Parse(u)
		p.check("origin-url", err == nil && (pu.Scheme == "https" || pu.Scheme == "http") && pu.Host != "", "%s: support_url %q", topic, u)
	}

	checkAvailability := func(where string, cfg map[string]any) {
		list, hasList := cfg["availability"].([]any)
		_, hasTopic := cfg["availability_topic"]
		p.check("availability-exclusive", !(hasList && hasTopic), "%s: both availability and availability_topic", where)
		for _, e := range list {
			entry, _ := e.(map[string]any)
			entry = expand(entry, c.Abbreviations)
			for k := range entry {
				p.check("availability-keys", slices.Contains(c.AvailabilityEntry.Allowed, k), "%s: availability key %q", where, k)
			}
			t, _ := entry["topic"].(string)
			payload, published := w.retained[t]
			p.check("availability-published", published, "%s: availability topic %q is not published retained", where, t)
			if tpl, ok := entry["value_template"].(string); ok && published {
				checkTemplate(where+" availability", tpl, payload, p)
			}
		}
		if mode, ok := cfg["availability_mode"].(string); ok {
			p.check("availability-mode", slices.Contains(c.AvailabilityModes, mode), "%s: availability_mode %q", where, mode)
		}
	}
	checkAvailability(topic, top)

	comps, _ := top["components"].(map[string]any)
	var uids []string
	triggers := map[string]bool{}
	for id, rawComp := range comps {
		where := topic + "#" + id
		p.check("component-id", componentID.MatchString(id), "%s: component id charset", where)
		cm, _ := rawComp.(map[string]any)
		cm = expand(cm, c.Abbreviations)
		platform, _ := cm["platform"].(string)
		p.check("platform", slices.Contains(c.SupportedComponents, platform), "%s: platform %q", where, platform)
		spec, known := c.Components[platform]
		p.check("platform-known", known, "%s: no contract for platform %q", where, platform)
		if !known {
			continue
		}
		if len(cm) == 1 {
			// {"p": platform} alone is how HA removes a component from a
			// device: a retired entity, nothing more to check.
			continue
		}
		// Shared options reach the component unless it sets them; one its
		// platform does not take is dropped, as HA drops unknown keys
		// (a device trigger reads its own topic, not the shared state).
		eff := map[string]any{}
		for _, k := range c.DeviceBased.Inherited {
			if v, ok := top[k]; ok && (slices.Contains(spec.Allowed, k) || strings.HasPrefix(k, "availability")) {
				eff[k] = v
			}
		}
		for k, v := range cm {
			eff[k] = v
		}
		// device and origin always come from the top level.
		eff["device"], eff["origin"] = top["device"], top["origin"]
		for k := range cm {
			p.check("component-keys", k == "platform" || slices.Contains(spec.Allowed, k), "%s: key %q is not a %s option (HA drops it silently)", where, k, platform)
		}
		for _, k := range spec.Required {
			p.check("component-required", eff[k] != nil, "%s: %s requires %s", where, platform, k)
		}
		for _, group := range spec.ExactlyOne {
			n := 0
			for _, k := range group {
				if eff[k] != nil {
					n++
				}
			}
			p.check("exactly-one-of", n == 1, "%s: exactly one of %v", where, group)
		}
		for k, vals := range spec.KeyValues {
			if v, ok := cm[k].(string); ok {
				p.check("key-values", slices.Contains(vals, v), "%s: %s=%q not in %v", where, k, v, vals)
			}
		}
		entity := platform != "device_automation" && platform != "tag"
		if entity {
			uid, _ := cm["unique_id"].(string)
			p.check("unique-id", uid != "", "%s: no unique_id", where)
			uids = append(uids, uid)
			checkAvailability(where, cm)
		}
		if cat, ok := cm["entity_category"].(string); ok {
			p.check("entity-category", slices.Contains(c.EntityCategories, cat) && !slices.Contains(c.CategoriesRefused[platform], cat),
				"%s: entity_category %q on %s", where, cat, platform)
		}
		if name, ok := cm["name"].(string); ok {
			p.check("name-not-device", !strings.HasPrefix(strings.ToLower(name), strings.ToLower(devName)),
				"%s: entity name %q repeats the device name %q", where, name, devName)
		}
		if icon, ok := cm["icon"].(string); ok {
			p.check("icon-format", iconRe.MatchString(icon), "%s: icon %q", where, icon)
		}
		if en, ok := cm["enabled_by_default"]; ok {
			_, isBool := en.(bool)
			p.check("bool-types", isBool, "%s: enabled_by_default %v", where, en)
		}
		dc, hasDC := cm["device_class"].(string)
		switch platform {
		case "sensor":
			validateSensor(c, w, where, cm, p)
		case "binary_sensor":
			p.check("binary-sensor-class", !hasDC || slices.Contains(c.BinarySensorDeviceClasses, dc), "%s: device_class %q", where, dc)
		case "button":
			p.check("button-class", !hasDC || slices.Contains(c.ButtonDeviceClasses, dc), "%s: device_class %q", where, dc)
		case "update":
			p.check("update-class", !hasDC || slices.Contains(c.UpdateDeviceClasses, dc), "%s: device_class %q", where, dc)
		case "event":
			types, _ := cm["event_types"].([]any)
			p.check("event-types", len(types) > 0, "%s: event_types empty", where)
			for _, et := range types {
				_, ok := et.(string)
				p.check("event-types", ok, "%s: event type %v not a string", where, et)
			}
			p.check("event-class", !hasDC || slices.Contains(c.EventDeviceClasses, dc), "%s: device_class %q", where, dc)
		case "image":
			p.check("image-content-type", !(cm["url_topic"] != nil && cm["content_type"] != nil), "%s: content_type with url_topic", where)
		case "device_automation":
			key := fmt.Sprint(cm["type"], "/", cm["subtype"])
			p.check("trigger-unique", !triggers[key], "%s: trigger %s twice on one device", where, key)
			triggers[key] = true
		}
		// Every topic a config reads is one the bridge publishes, and every
		// field its templates read exists in what is published there.
		for _, k := range []string{"state_topic", "json_attributes_topic", "url_topic", "topic"} {
			tp, ok := eff[k].(string)
			if !ok {
				continue
			}
			p.check("topic-no-wildcards", !strings.ContainsAny(tp, "+#"), "%s: %s %q has wildcards", where, k, tp)
			payload, retained := w.retained[tp]
			if !retained {
				payload = w.events[tp]
			}
			p.check("topic-published", payload != nil, "%s: %s %q is never published", where, k, tp)
			if payload == nil {
				continue
			}
			for _, tk := range templatesFor(k) {
				if tpl, ok := cm[tk].(string); ok {
					checkTemplate(where+" "+tk, tpl, payload, p)
				}
			}
		}
	}
	return uids
}

func templatesFor(topicKey string) []string {
	switch topicKey {
	case "state_topic", "topic":
		return []string{"value_template"}
	case "json_attributes_topic":
		return []string{"json_attributes_template"}
	case "url_topic":
		return []string{"url_template"}
	}
	return nil
}

// checkTemplate checks that every value_json path a template reads
// exists in the payload; a null on the way is fine (templates guard it), a
// missing key is not (HA logs a warning on every message).
func checkTemplate(where, tpl string, payload []byte, p *problems) {
	var doc any
	if err := json.Unmarshal(payload, &doc); err != nil {
		p.check("template-fields", false, "%s: payload is not JSON", where)
		return
	}
	for _, m := range jsonPath.FindAllStringSubmatch(tpl, -1) {
		cur := doc
		path := m[1]
		for _, part := range regexp.MustCompile(`\.[a-zA-Z_][a-zA-Z0-9_]*|\[\d+\]`).FindAllString(path, -1) {
			if cur == nil {
				break
			}
			if strings.HasPrefix(part, "[") {
				list, ok := cur.([]any)
				p.check("template-fields", ok, "%s: %s is not a list", where, path)
				i, _ := strconv.Atoi(strings.Trim(part, "[]"))
				if !ok || i >= len(list) {
					cur = nil
					continue
				}
				cur = list[i]
				continue
			}
			obj, ok := cur.(map[string]any)
			key := part[1:]
			_, has := obj[key]
			p.check("template-fields", ok && has, "%s: %s not found (at %s)", where, path, key)
			if !ok || !has {
				break
			}
			cur = obj[key]
		}
	}
}

func validateSensor(c *contract, w *world, where string, cm map[string]any, p *problems) {
	dc, hasDC := cm["device_class"].(string)
	unit, hasUnit := cm["unit_of_measurement"].(string)
	sc, hasSC := cm["state_class"].(string)
	if hasDC {
		units, known := c.SensorDeviceClasses[dc]
		p.check("sensor-class", known, "%s: device_class %q", where, dc)
		if known && !slices.Contains(c.SensorUnitNotChecked, dc) {
			if units == nil {
				p.check("sensor-unit", !hasUnit, "%s: %s takes no unit", where, dc)
			} else {
				ok := false
				for _, u := range units {
					if (u == nil && !hasUnit) || (u != nil && hasUnit && *u == unit) {
						ok = true
					}
				}
				p.check("sensor-unit", ok, "%s: unit %q not allowed for %s", where, unit, dc)
			}
		}
		if slices.Contains(c.SensorClassesNoStateClass, dc) {
			p.check("sensor-state-class", !hasSC, "%s: %s takes no state_class", where, dc)
		} else if hasSC {
			p.check("sensor-state-class", slices.Contains(c.SensorClassStateClasses[dc], sc), "%s: state_class %q impossible for %s", where, sc, dc)
		}
	}
	if hasSC {
		p.check("sensor-state-class", slices.Contains(c.SensorStateClasses, sc), "%s: state_class %q", where, sc)
		if units, ok := c.SensorStateClassUnits[sc]; ok {
			p.check("sensor-state-class", slices.Contains(units, unit), "%s: %s needs unit %v", where, sc, units)
		}
	}
	if opts, ok := cm["options"].([]any); ok {
		p.check("enum-options", dc == "enum" && len(opts) > 0 && !hasSC && !hasUnit, "%s: options need device_class enum, no state_class, no unit", where)
		tpl, _ := cm["value_template"].(string)
		m := enumList.FindStringSubmatch(tpl)
		p.check("enum-options", m != nil, "%s: enum template does not map values it does not list to None", where)
		if m != nil {
			var listed []string
			for _, q := range strings.Split(m[1], ",") {
				listed = append(listed, strings.Trim(strings.TrimSpace(q), "'"))
			}
			var want []string
			for _, o := range opts {
				want = append(want, fmt.Sprint(o))
			}
			// "unknown" is HA's own state for a value not listed: an option
			// of that name would make the two look alike.
			p.check("enum-options", !slices.Contains(want, "unknown") && slices.Equal(listed, want),
				"%s: template list %v differs from options %v, or lists unknown", where, listed, want)
		}
	} else {
		p.check("enum-options", dc != "enum", "%s: enum sensor without options", where)
	}
	if dc == "timestamp" {
		// The field the template reads must hold RFC 3339 with a zone.
		tpl, _ := cm["value_template"].(string)
		st, _ := cm["state_topic"].(string)
		var doc any
		json.Unmarshal(w.retained[st], &doc)
		if m := jsonPath.FindStringSubmatch(tpl); m != nil {
			if v, ok := lookup(doc, m[1]).(string); ok {
				ts, err := time.Parse(time.RFC3339, v)
				p.check("timestamp-zone", err == nil && strings.ContainsAny(v[len(v)-6:], "Z+-"), "%s: %q is not RFC 3339 with a zone", where, v)
				_ = ts
			}
		}
	}
}

func lookup(doc any, path string) any {
	cur := doc
	for _, part := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = obj[part]
	}
	return cur
}

func TestDiscoveryPayloadsMeetContract(t *testing.T) {
	c := loadContract(t)
	w := buildWorld(t)
	p := &problems{rules: map[string]bool{}}
	seen := map[string]string{}
	devices := 0
	for topic, payload := range w.retained {
		if !strings.HasPrefix(topic, "homeassistant/") {
			continue
		}
		devices++
		for _, uid := range validate(c, w, topic, payload, p) {
			p.check("unique-id-unique", seen[uid] == "", "unique_id %q in %s and %s", uid, seen[uid], topic)
			seen[uid] = topic
		}
	}
	if devices != 9 { // six printers, one multi-printer cluster, the workspace, the bridge
		t.Errorf("%d devices discovered, want 9", devices)
	}
	for _, s := range p.list {
		t.Error(s)
	}
	t.Logf("%d devices, %d entities, %d rules checked", devices, len(seen), len(p.rules))
	if len(p.rules) < 30 {
		t.Errorf("only %d rules ran; the validator lost some", len(p.rules))
	}
}

// The validator itself must catch what it claims to: each broken payload
// below violates one rule.
func TestValidatorCatchesMistakes(t *testing.T) {
	c := loadContract(t)
	w := buildWorld(t)
	var base []byte
	var topic string
	for tp, pl := range w.retained {
		if strings.Contains(tp, "_printer_ultimakersystem-4b0fc38e95e3/") {
			topic, base = tp, pl
		}
	}
	mutate := func(f func(m map[string]any)) []byte {
		// Mutated in full key names (the validator reads both).
		m, err := discovery.Expand(base)
		if err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	comp := func(m map[string]any, id string) map[string]any {
		return m["components"].(map[string]any)[id].(map[string]any)
	}
	tests := []struct {
		rule string
		f    func(m map[string]any)
	}{
		{"top-level-keys", func(m map[string]any) { m["~"] = "ultimaker" }},
		{"device-keys", func(m map[string]any) { m["device"].(map[string]any)["colour"] = "red" }},
		{"origin-required", func(m map[string]any) { delete(m["origin"].(map[string]any), "name") }},
		{"component-keys", func(m map[string]any) { comp(m, "progress")["object_id"] = "x" }},
		{"sensor-unit", func(m map[string]any) { comp(m, "time_remaining")["unit_of_measurement"] = "sec" }},
		{"sensor-state-class", func(m map[string]any) { comp(m, "print_start")["state_class"] = "measurement" }},
		{"enum-options", func(m map[string]any) { comp(m, "status")["options"] = []string{"idle"} }},
		{"entity-category", func(m map[string]any) { comp(m, "job_owner")["entity_category"] = "config" }},
		{"template-fields", func(m map[string]any) { comp(m, "job_name")["value_template"] = "{{ value_json.job_title }}" }},
		{"topic-published", func(m map[string]any) { comp(m, "job_name")["state_topic"] = "ultimaker/printers/nope/state" }},
		{"unique-id", func(m map[string]any) { delete(comp(m, "job_name"), "unique_id") }},
		{"name-not-device", func(m map[string]any) { comp(m, "job_name")["name"] = "Lab-S5-1 Job" }},
		{"availability-published", func(m map[string]any) { m["availability"] = []any{map[string]any{"topic": "x/y"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			p := &problems{rules: map[string]bool{}}
			validate(c, w, topic, mutate(tt.f), p)
			found := false
			for _, s := range p.list {
				found = found || strings.HasPrefix(s, tt.rule+":")
			}
			if !found {
				t.Errorf("rule %s did not fire; problems: %v", tt.rule, p.list)
			}
		})
	}
}

// TestAbbreviationsAreHAs: every abbreviation the payloads use is Home
// Assistant's own, from the contract's tables.
func TestAbbreviationsAreHAs(t *testing.T) {
	c := loadContract(t)
	for table, pairs := range map[string][2]map[string]string{
		"component": {discovery.Abbreviations(), c.Abbreviations},
		"device":    {discovery.DeviceAbbreviations(), c.DeviceAbbreviations},
		"origin":    {discovery.OriginAbbreviations(), c.OriginAbbreviations},
	} {
		for long, short := range pairs[0] {
			if pairs[1][short] != long {
				t.Errorf("%s abbreviation %s -> %s: HA expands %s to %q", table, long, short, short, pairs[1][short])
			}
		}
	}
}

// TestDiscoveryBytesPerPrinter reports the size of each printer's device
// payload and checks what the abbreviations and the shared state topic
// save against the same payload in full key names: at least a sixth.
func TestDiscoveryBytesPerPrinter(t *testing.T) {
	w := buildWorld(t)
	for topic, p := range w.retained {
		if !strings.Contains(topic, "_printer_") {
			continue
		}
		full, err := discovery.Expand(p)
		if err != nil {
			t.Fatal(err)
		}
		long, _ := json.Marshal(full)
		t.Logf("%s: %d bytes (%d in full key names)", topic, len(p), len(long))
		if len(p) > len(long)*5/6 {
			t.Errorf("%s: %d bytes, %d in full key names: the abbreviations save too little", topic, len(p), len(long))
		}
	}
}
