// Package discovery builds Home Assistant MQTT device-discovery payloads from the bridge's state; it does no I/O.
package discovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// DefaultPrefix is Home Assistant's default discovery prefix.
const DefaultPrefix = "homeassistant"

// Config says where discovery goes and what the bridge is.
type Config struct {
	Prefix  string      // HA_DISCOVERY_PREFIX
	Tree    topics.Tree // the bridge's own topics
	Version string      // the bridge version, for origin and the bridge device
	// Buttons are the printer commands offered as buttons (pause, resume,
	// abort, snapshot); none in read-only mode.
	Buttons []string
	// Controls are the other commands offered as entities: "settings"
	// (the workspace switches) and "note" (a cluster's note as text).
	Controls []string
	// DeviceTriggers offers a device trigger per print event.
	DeviceTriggers bool
}

// buttons describes each printer button: its label, icon, and the
// availability condition that offers it only when it can work. The job
// buttons' conditions are rendered from state.JobActionFrom, the lists
// the command handler checks.
var buttons = map[string]struct{ name, icon, when string }{
	"pause":    {"Pause", "mdi:pause", jobStatusIn("pause")},
	"resume":   {"Resume", "mdi:play", jobStatusIn("resume")},
	"abort":    {"Abort", "mdi:stop", jobStatusIn("abort")},
	"snapshot": {"Take snapshot", "mdi:camera", "value_json.online and value_json.uuid"},
}

func jobStatusIn(action string) string {
	return "value_json.job and value_json.job.status in " + jinjaList(state.JobActionFrom[action])
}

func jinjaList(items []string) string {
	quoted := make([]string, len(items))
	for i, o := range items {
		quoted[i] = "'" + o + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// NodeID prefixes every discovery object id and unique id of this bridge.
// It includes the base topic when that is not the default, so two bridges
// with different base topics never claim the same ids.
func (c Config) NodeID() string {
	if c.Tree.Base == topics.DefaultBase {
		return "ultimaker2mqtt"
	}
	return "ultimaker2mqtt_" + topics.Segment(strings.ReplaceAll(c.Tree.Base, "/", "_"))
}

// PrinterObjectID, ClusterObjectID and BridgeObjectID name the devices.
func (c Config) PrinterObjectID(printer string) string { return c.NodeID() + "_printer_" + printer }

// ClusterObjectID is the object id of a cluster's device.
func (c Config) ClusterObjectID(cluster string) string { return c.NodeID() + "_cluster_" + cluster }

// WorkspaceObjectID is the object id of the workspace's device.
func (c Config) WorkspaceObjectID() string { return c.NodeID() + "_workspace" }

// BridgeObjectID is the object id of the bridge's own device.
func (c Config) BridgeObjectID() string { return c.NodeID() + "_bridge" }

// DeviceTopic is the device-discovery config topic of objectID.
func (c Config) DeviceTopic(objectID string) string {
	return c.Prefix + "/device/" + objectID + "/config"
}

// DeviceFilter matches every device-discovery config topic.
func (c Config) DeviceFilter() string { return c.Prefix + "/device/+/config" }

// Ours reports whether a device-discovery topic belongs to this bridge.
func (c Config) Ours(topic string) bool {
	_, _, ok := c.DeviceOf(topic)
	return ok
}

// Device kinds, as DeviceOf names them.
const (
	DevicePrinter   = "printer"
	DeviceCluster   = "cluster"
	DeviceBridge    = "bridge"
	DeviceWorkspace = "workspace"
)

// DeviceOf says which device of this bridge a device-discovery topic is
// for: its kind, and the printer's or cluster's id; false for a topic
// that is not one of this bridge's.
func (c Config) DeviceOf(topic string) (kind, id string, ok bool) {
	rest, ok := strings.CutPrefix(topic, c.Prefix+"/device/")
	if !ok {
		return "", "", false
	}
	obj, ok := strings.CutSuffix(rest, "/config")
	if !ok || strings.Contains(obj, "/") {
		return "", "", false
	}
	switch {
	case obj == c.BridgeObjectID():
		return DeviceBridge, "", true
	case obj == c.WorkspaceObjectID():
		return DeviceWorkspace, "", true
	}
	if id, ok := strings.CutPrefix(obj, c.PrinterObjectID("")); ok && id != "" {
		return DevicePrinter, id, true
	}
	if id, ok := strings.CutPrefix(obj, c.ClusterObjectID("")); ok && id != "" {
		return DeviceCluster, id, true
	}
	return "", "", false
}

// PrinterFingerprint changes exactly when the device config of p changes: the
// config depends on these fields only (and on inGroup), so callers can
// skip rendering it on every state change. It is a hash, kept per printer
// by the renderer: 8 bytes rather than the 150 of the fields.
func (c Config) PrinterFingerprint(p state.Printer, inGroup bool) uint64 {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%s|%s|%v|%v|%v|%v|%v|%v|%v|%v|", p.ID, p.UUID, p.FriendlyName, p.MachineVariant, p.Firmware.Version,
		p.Cluster, p.LocalURL, p.ClusterID != "", inGroup, p.Chamber != nil, c.Buttons, c.Controls, p.Camera != nil, onLAN(p),
		p.BuildPlate != nil && p.BuildPlate.Target != nil)
	for _, e := range p.Extruders {
		b.WriteByte(map[bool]byte{true: 'r', false: '-'}[e.MaterialRemaining != nil])
		b.WriteByte(map[bool]byte{true: 't', false: '-'}[e.HotendTemperature != nil || e.HotendTarget != nil])
	}
	return maphash.String(fingerprintSeed, b.String())
}

var fingerprintSeed = maphash.MakeSeed()

// canSnapshot reports whether a picture of p can be taken: with its own
// camera on the LAN, or by the cloud (which needs its GUID).
func canSnapshot(p state.Printer) bool {
	return p.Camera != nil || p.UUID != "" && p.ClusterID != ""
}

// retiredPrinterComponents are components a printer's device had in an
// earlier version, by id and platform: sent as {"p": platform}, which is
// how HA removes one component of a device.
var retiredPrinterComponents = map[string]string{"snapshot": "image", "job_status": "sensor", "ip_address": "sensor",
	"unique_name": "sensor", "firmware_update_status": "sensor", "maintenance_tasks": "sensor", "jobs_finished": "sensor",
	"print_time": "sensor"}

// retiredBridgeComponents are the bridge device's: its version is the
// device's sw_version.
var retiredBridgeComponents = map[string]string{"version": "sensor"}

// retire adds the retired components that cs does not have again.
func retire(cs components, retired map[string]string) {
	for id, platform := range retired {
		if _, ok := cs[id]; !ok {
			cs[id] = Component{"platform": platform}
		}
	}
}

// onLAN reports whether a printer is (also) read on the LAN.
func onLAN(p state.Printer) bool {
	return p.Source == state.SourceLocal || p.Source == state.SourceBoth
}

// Printer returns the device config of printer p. A printer of a cluster
// with several printers (inGroup) hangs under the cluster's device; any
// other under the bridge's. The entity set is the one a Home Assistant
// user would choose (the README's table says why each is there): values
// that only clutter the device stay in the JSON state instead.
func (c Config) Printer(p state.Printer, inGroup bool) bus.Message {
	obj := c.PrinterObjectID(p.ID)
	st := c.Tree.PrinterState(p.ID)
	cs := components{}
	uid := func(key string) string { return obj + "_" + key }
	bridgeOnly := []any{availability(c.Tree.BridgeState())}

	job := func(field string) string {
		return fmt.Sprintf("{{ value_json.job.%s if value_json.job else None }}", field)
	}
	// A text the cloud names (a job's name or owner) is cut to what a
	// state holds: a longer one would make the entity unknown.
	jobText := func(field string) string {
		return fmt.Sprintf("{{ value_json.job.%s[:%d] if value_json.job else None }}", field, StateShown)
	}
	// The device's main entity: it shows as the printer's name.
	cs.add("status", sensor(uid("status"), "", st, enumTemplate("value_json.status", PrinterStatuses), "enum").
		with("name", nil).with("options", PrinterStatuses).with("icon", "mdi:printer-3d"))
	cs.add("online", binarySensor(uid("online"), "Online", st, "{{ 'ON' if value_json.online else 'OFF' }}", "connectivity").
		with("entity_category", "diagnostic").
		// Reachability must stay visible while the printer is offline, so
		// it follows the bridge only.
		with("availability", bridgeOnly))
	cs.add("printing", binarySensor(uid("printing"), "Printing", st, "{{ 'ON' if value_json.printing else 'OFF' }}", "running"))
	cs.add("problem", binarySensor(uid("problem"), "", st,
		"{{ 'ON' if value_json.status in ['error', 'wait_user_action'] or value_json.errors | length > 0 else 'OFF' }}", "problem").
		with("json_attributes_topic", st).with("json_attributes_template", `{{ {'errors': value_json.errors} | tojson }}`))
	cs.add("maintenance_required", binarySensor(uid("maintenance_required"), "Maintenance required", st,
		"{{ 'ON' if value_json.maintenance.required else 'OFF' }}", "problem").with("icon", "mdi:wrench-clock").
		with("json_attributes_topic", st).with("json_attributes_template",
		`{{ {'tasks': value_json.maintenance.tasks_due, 'count': value_json.maintenance.tasks_due | length} | tojson }}`))
	cs.add("accepting_jobs", binarySensor(uid("accepting_jobs"), "Accepting jobs", st, "{{ 'ON' if value_json.enabled else 'OFF' }}", "").
		with("entity_category", "diagnostic").with("icon", "mdi:tray-arrow-down"))

	cs.add("job_name", sensor(uid("job_name"), "Job", st, jobText("name"), "").with("icon", "mdi:file-cad"))
	cs.add("progress", sensor(uid("progress"), "Progress", st, "{{ value_json.job.progress if value_json.job else None }}", "").
		with("unit_of_measurement", "%").with("state_class", "measurement").with("icon", "mdi:progress-clock").
		with("suggested_display_precision", 0))
	// The running times tick; print start and estimated finish say the
	// same once. A countdown has no long-term statistics worth keeping.
	for _, d := range []struct {
		key, name string
		enabled   bool
	}{{"time_elapsed", "Time elapsed", false}, {"time_total", "Time total", false}, {"time_remaining", "Time remaining", true}} {
		cs.add(d.key, sensor(uid(d.key), d.name, st, job(d.key), "duration").with("unit_of_measurement", "s").
			withIf(!d.enabled, "enabled_by_default", false))
	}
	cs.add("print_start", sensor(uid("print_start"), "Print start", st,
		"{{ value_json.job.started_at if value_json.job and value_json.job.started_at else None }}", "timestamp"))
	cs.add("print_finish", sensor(uid("print_finish"), "Estimated finish", st,
		"{{ value_json.job.eta if value_json.job and value_json.job.eta else None }}", "timestamp"))
	cs.add("job_owner", sensor(uid("job_owner"), "Job owner", st, jobText("owner"), "").with("entity_category", "diagnostic").with("icon", "mdi:account"))
	cs.add("last_job_result", sensor(uid("last_job_result"), "Last job result", st,
		"{% set s = value_json.last_job.result if value_json.last_job else 'none' %}"+enumPick("s", JobResults), "enum").
		with("options", JobResults).with("json_attributes_topic", st).
		with("json_attributes_template", "{{ {'job': value_json.last_job.name if value_json.last_job else None} | tojson }}"))
	cs.add("last_job_ended", sensor(uid("last_job_ended"), "Last job ended", st,
		"{{ value_json.last_job.ended_at if value_json.last_job and value_json.last_job.ended_at else None }}", "timestamp"))
	preview := c.Tree.PrinterPreview(p.ID)
	cs.add("preview", Component{"platform": "image", "unique_id": uid("preview"), "name": "Job preview", "url_topic": preview,
		"url_template": "{{ value_json.url }}", "json_attributes_topic": preview,
		"json_attributes_template": "{{ {'job': value_json.job} | tojson }}"})

	for i, e := range p.Extruders {
		n := i + 1
		path := fmt.Sprintf("value_json.extruders[%d]", i)
		guard := fmt.Sprintf("value_json.extruders | length > %d", i)
		key := func(k string) string { return fmt.Sprintf("extruder_%d_%s", n, k) }
		cs.add(key("print_core"), sensor(uid(key("print_core")), fmt.Sprintf("Print core %d", n), st,
			fmt.Sprintf("{{ %s.print_core if %s else None }}", path, guard), "").with("icon", "mdi:printer-3d-nozzle").
			with("entity_category", "diagnostic"))
		cs.add(key("material"), sensor(uid(key("material")), fmt.Sprintf("Material %d", n), st,
			fmt.Sprintf("{{ %s.material if %s else None }}", path, guard), "").with("icon", "mdi:printer-3d-nozzle-outline").
			with("json_attributes_topic", st).
			with("json_attributes_template", fmt.Sprintf("{{ ({'brand': %[1]s.brand, 'color': %[1]s.color, 'guid': %[1]s.material_guid} if %[2]s else {}) | tojson }}", path, guard)))
		if e.MaterialRemaining != nil {
			cs.add(key("material_remaining"), sensor(uid(key("material_remaining")), fmt.Sprintf("Material %d remaining", n), st,
				fmt.Sprintf("{{ %s.material_remaining if %s else None }}", path, guard), "").
				with("unit_of_measurement", "%").with("state_class", "measurement").with("icon", "mdi:spool"))
		}
		if e.HotendTemperature != nil || e.HotendTarget != nil {
			cs.add(key("hotend_temperature"), temperature(uid(key("hotend_temperature")), fmt.Sprintf("Hotend %d temperature", n), st,
				fmt.Sprintf("{{ %s.hotend_temperature if %s else None }}", path, guard)))
			cs.add(key("hotend_target"), temperature(uid(key("hotend_target")), fmt.Sprintf("Hotend %d target", n), st,
				fmt.Sprintf("{{ %s.hotend_target if %s else None }}", path, guard)).with("enabled_by_default", false))
		}
	}
	cs.add("build_plate", sensor(uid("build_plate"), "Build plate", st,
		"{{ value_json.build_plate.type if value_json.build_plate else None }}", "").with("entity_category", "diagnostic").with("icon", "mdi:layers"))
	cs.add("build_plate_temperature", temperature(uid("build_plate_temperature"), "Build plate temperature", st,
		"{{ value_json.build_plate.temperature if value_json.build_plate else None }}"))
	if p.BuildPlate != nil && p.BuildPlate.Target != nil {
		cs.add("build_plate_target", temperature(uid("build_plate_target"), "Build plate target", st,
			"{{ value_json.build_plate.target if value_json.build_plate else None }}").with("enabled_by_default", false))
	}
	snapshot := slices.Contains(c.Buttons, "snapshot") && canSnapshot(p)
	if p.Camera != nil || snapshot {
		// The latest picture as bytes: HA shows each new one (a URL that
		// never changed kept HA's first image), and it is the picture
		// taken then, not whatever the camera sees when HA asks.
		snap := c.Tree.PrinterSnapshot(p.ID)
		cs.add("camera", Component{"platform": "image", "unique_id": uid("camera"), "name": "Camera",
			"image_topic": c.Tree.PrinterPicture(p.ID), "content_type": "image/jpeg", "json_attributes_topic": snap,
			"json_attributes_template": "{{ {'taken_at': value_json.taken_at, 'event': value_json.event, " +
				"'job': value_json.job, 'via': value_json.via} | tojson }}"})
	}
	if onLAN(p) {
		// The printer refuses the bridge on the LAN: pairing needed.
		cs.add("local_auth", binarySensor(uid("local_auth"), "LAN sign-in", st,
			"{{ 'ON' if value_json.local_auth is defined and value_json.local_auth == 'required' else 'OFF' }}", "problem").
			with("entity_category", "diagnostic").with("icon", "mdi:lock-alert"))
	}
	if p.Chamber != nil {
		cs.add("chamber_temperature", temperature(uid("chamber_temperature"), "Chamber temperature", st,
			"{{ value_json.chamber.temperature if value_json.chamber else None }}"))
	}
	// The update entity says it all: installed and latest, an update
	// under way, and the cloud's word for it as an attribute.
	cs.add("firmware", Component{"platform": "update", "unique_id": uid("firmware"), "state_topic": st,
		"device_class": "firmware", "entity_category": "diagnostic",
		"value_template": "{{ {'installed_version': value_json.firmware.version, " +
			"'latest_version': value_json.firmware.latest or value_json.firmware.version, " +
			"'in_progress': value_json.firmware.update_status == 'update_in_progress'} | tojson }}",
		"json_attributes_topic": st, "json_attributes_template": "{{ {'update_status': value_json.firmware.update_status} | tojson }}"})

	for _, a := range c.Buttons {
		bt, ok := buttons[a]
		if !ok || (a == "snapshot" && !snapshot) {
			continue
		}
		cs.add("button_"+a, Component{"platform": "button", "unique_id": uid("button_" + a), "name": bt.name, "icon": bt.icon,
			"command_topic": c.Tree.PrinterSet(p.ID), "payload_press": a,
			"availability": []any{availability(c.Tree.BridgeState()), availability(c.Tree.PrinterAvailability(p.ID)),
				map[string]any{"topic": st, "value_template": "{{ 'online' if " + bt.when + " else 'offline' }}"}}})
	}

	stats := c.Tree.PrinterStatistics(p.ID)
	cs.add("success_rate", sensor(uid("success_rate"), "Success rate (30 days)", stats,
		"{{ value_json.success_rate if value_json else None }}", "").
		with("unit_of_measurement", "%").with("state_class", "measurement").with("icon", "mdi:check-circle-outline").
		with("json_attributes_topic", stats).with("json_attributes_template",
		"{{ {'prints_finished': value_json.jobs_finished, 'print_hours': (value_json.print_seconds / 3600) | round(1) "+
			"if value_json.print_seconds is not none else None, 'utilisation_7d': value_json.utilisation_7d, "+
			"'utilisation_30d': value_json.utilisation_30d} | tojson }}"))
	if !inGroup {
		// A cluster of one printer has no device of its own: its note and
		// maintenance log show on the printer.
		c.addClusterExtras(cs, uid, p.Cluster)
	}

	ev := c.Tree.PrinterEvent(p.ID)
	cs.add("events", Component{"platform": "event", "unique_id": uid("events"), "name": "Print events", "state_topic": ev,
		"event_types": state.EventTypes, "icon": "mdi:printer-3d",
		// HA drops an event while its entity is unavailable, and the
		// printer is unavailable exactly when printer_offline happens.
		"availability":   bridgeOnly,
		"value_template": "{{ {'event_type': value_json.event, 'job': value_json.job.name if value_json.job else None, 'detail': value_json.detail, 'late': value_json.late} | tojson }}"})
	for _, t := range state.EventTypes {
		if c.DeviceTriggers {
			cs.add("trigger_"+t, Component{"platform": "device_automation", "automation_type": "trigger", "topic": ev,
				"type": t, "subtype": "printer", "value_template": "{{ value_json.event }}", "payload": t})
		} else {
			cs.add("trigger_"+t, Component{"platform": "device_automation"})
		}
	}
	retire(cs, retiredPrinterComponents)

	via := c.BridgeObjectID()
	if inGroup {
		via = c.ClusterObjectID(p.Cluster)
	}
	dev := map[string]any{
		"identifiers":  []string{obj},
		"name":         nonEmpty(p.FriendlyName, p.ID),
		"manufacturer": manufacturer(p.MachineVariant),
		"model":        nonEmpty(p.MachineVariant, "unknown"),
		"via_device":   via,
	}
	if p.Firmware.Version != "" {
		dev["sw_version"] = p.Firmware.Version
	}
	if p.UUID != "" {
		dev["serial_number"] = p.UUID
	}
	if p.LocalURL != "" {
		dev["configuration_url"] = p.LocalURL // the printer's own page
	}
	return c.device(obj, dev, cs, []any{availability(c.Tree.BridgeState()), availability(c.Tree.PrinterAvailability(p.ID))})
}

// Cluster returns the device config of cluster cl, and false for a
// cluster of one printer: that printer's device says it all.
func (c Config) Cluster(cl state.Cluster) (bus.Message, bool) {
	if len(cl.Printers) < 2 {
		return bus.Message{}, false
	}
	obj := c.ClusterObjectID(cl.ID)
	st := c.Tree.ClusterState(cl.ID)
	uid := func(key string) string { return obj + "_" + key }
	cs := components{}
	cs.add("online", binarySensor(uid("online"), "Online", st, "{{ 'ON' if value_json.online else 'OFF' }}", "connectivity").
		with("availability", []any{availability(c.Tree.BridgeState())}))
	cs.add("queue_length", sensor(uid("queue_length"), "Queue", st, "{{ value_json.queue | length }}", "").
		with("state_class", "measurement").with("icon", "mdi:tray-full").with("json_attributes_topic", st).
		with("json_attributes_template", "{{ {'jobs': value_json.queue | map(attribute='name') | list} | tojson }}"))
	cs.add("printers_online", sensor(uid("printers_online"), "Printers online", st, "{{ value_json.printers_online }}", "").
		with("state_class", "measurement").with("icon", "mdi:printer-3d"))
	cs.add("maintenance_due", binarySensor(uid("maintenance_due"), "Maintenance due", st,
		"{{ 'ON' if value_json.maintenance_due else 'OFF' }}", "problem").with("json_attributes_topic", st).
		with("json_attributes_template", "{{ {'tasks': value_json.maintenance | selectattr('due') | map(attribute='code') | list} | tojson }}"))
	c.addClusterExtras(cs, uid, cl.ID)
	dev := map[string]any{
		"identifiers":  []string{obj},
		"name":         nonEmpty(cl.FriendlyName, cl.ID),
		"manufacturer": "UltiMaker",
		"model":        "Printer group",
		"via_device":   c.BridgeObjectID(),
	}
	if cl.HostVersion != "" {
		dev["sw_version"] = cl.HostVersion
	}
	return c.device(obj, dev, cs, []any{availability(c.Tree.BridgeState()), availability(c.Tree.ClusterAvailability(cl.ID))}), true
}

// Bridge returns the bridge's own device config: diagnostics only. In a
// group of bridges, each of members is a connectivity entity: on while
// bridge/info lists it among the live members.
func (c Config) Bridge(members ...string) bus.Message {
	obj := c.BridgeObjectID()
	info := c.Tree.BridgeInfo()
	uid := func(key string) string { return obj + "_" + key }
	diag := func(comp Component) Component { return comp.with("entity_category", "diagnostic") }
	cs := components{}
	cs.add("cloud", diag(binarySensor(uid("cloud"), "Cloud", info, "{{ 'ON' if value_json.cloud_reachable else 'OFF' }}", "connectivity")))
	cs.add("sign_in_problem", diag(binarySensor(uid("sign_in_problem"), "Sign-in problem", info,
		"{{ 'ON' if value_json.auth == 'auth_required' else 'OFF' }}", "problem")).
		with("json_attributes_topic", info).with("json_attributes_template", "{{ {'auth': value_json.auth} | tojson }}"))
	cs.add("rate_limited", diag(binarySensor(uid("rate_limited"), "Rate limited", info,
		"{{ 'ON' if value_json.rate_limited_until else 'OFF' }}", "problem")).
		with("json_attributes_topic", info).with("json_attributes_template", "{{ {'until': value_json.rate_limited_until} | tojson }}"))
	cs.add("last_poll", diag(sensor(uid("last_poll"), "Last successful poll", info,
		"{{ value_json.last_poll if value_json.last_poll else None }}", "timestamp")))
	cs.add("poll_errors", diag(sensor(uid("poll_errors"), "Poll errors", info, "{{ value_json.poll_errors }}", "")).
		with("state_class", "total_increasing").with("icon", "mdi:alert-circle-outline"))
	cs.add("printers", diag(sensor(uid("printers"), "Printers discovered", info, "{{ value_json.printers }}", "")).
		with("state_class", "measurement").with("icon", "mdi:printer-3d"))
	for _, m := range members {
		cs.add("member_"+m, diag(binarySensor(uid("member_"+m), "Member "+m, info,
			"{{ 'ON' if value_json.group is defined and value_json.group.members | selectattr('id', 'eq', '"+m+
				"') | list | count > 0 else 'OFF' }}", "connectivity")))
	}
	retire(cs, retiredBridgeComponents)
	dev := map[string]any{
		"identifiers":  []string{obj},
		"name":         "ultimaker2mqtt",
		"manufacturer": "ultimaker2mqtt",
		"model":        "Digital Factory bridge",
		"sw_version":   c.Version,
	}
	return c.device(obj, dev, cs, []any{availability(c.Tree.BridgeState())})
}

// Workspace returns the workspace's device config: its settings as
// switches (unless read-only) and its 30-day statistics.
func (c Config) Workspace() bus.Message {
	obj := c.WorkspaceObjectID()
	st := c.Tree.WorkspaceState()
	uid := func(key string) string { return obj + "_" + key }
	cs := components{}
	if slices.Contains(c.Controls, "settings") {
		for _, s := range []struct{ key, name, icon string }{
			{"require_print_approval", "Require print approval", "mdi:account-check"},
			{"enable_print_prep", "Print preparation", "mdi:clipboard-check"},
		} {
			cs.add(s.key, Component{"platform": "switch", "unique_id": uid(s.key), "name": s.name, "icon": s.icon,
				"entity_category": "config", "state_topic": st, "command_topic": c.Tree.WorkspaceSet(),
				"value_template": "{{ 'ON' if value_json.settings and value_json.settings." + s.key + " else 'OFF' }}",
				"payload_on":     `{"action":"settings","` + s.key + `":true}`,
				"payload_off":    `{"action":"settings","` + s.key + `":false}`, "state_on": "ON", "state_off": "OFF"})
		}
	}
	addStatistics(cs, uid, st)
	cs.add("jobs_aborted", sensor(uid("jobs_aborted"), "Prints aborted (30 days)", st,
		"{{ value_json.statistics.jobs_aborted if value_json.statistics else None }}", "").
		with("state_class", "measurement").with("icon", "mdi:printer-3d-off"))
	cs.add("jobs_failed", sensor(uid("jobs_failed"), "Prints failed (30 days)", st,
		"{{ value_json.statistics.jobs_failed if value_json.statistics else None }}", "").
		with("state_class", "measurement").with("icon", "mdi:alert-octagon"))
	dev := map[string]any{"identifiers": []string{obj}, "name": "Digital Factory workspace", "manufacturer": "UltiMaker",
		"model": "Digital Factory workspace", "via_device": c.BridgeObjectID()}
	return c.device(obj, dev, cs, []any{availability(c.Tree.BridgeState())})
}

// addStatistics adds the workspace's 30-day totals, read from its state.
func addStatistics(cs components, uid func(string) string, topic string) {
	guard, path := "value_json.statistics", "value_json.statistics."
	// A null value renders as None by itself; only arithmetic needs the
	// check.
	field := func(f string) string { return "{{ " + path + f + " if " + guard + " else None }}" }
	cs.add("jobs_finished", sensor(uid("jobs_finished"), "Prints finished (30 days)", topic,
		field("jobs_finished"), "").with("state_class", "measurement").with("icon", "mdi:printer-3d-nozzle-heat"))
	cs.add("print_time", sensor(uid("print_time"), "Print time (30 days)", topic,
		"{{ ("+path+"print_seconds / 3600) | round(1) if "+guard+" and "+path+"print_seconds is not none else None }}", "duration").
		with("unit_of_measurement", "h").with("state_class", "measurement"))
	cs.add("success_rate", sensor(uid("success_rate"), "Success rate (30 days)", topic,
		field("success_rate"), "").
		with("unit_of_measurement", "%").with("state_class", "measurement").with("icon", "mdi:check-circle-outline"))
}

// NoteShown is how much of a cluster's note its Note text entity shows:
// HA's text entities hold at most 255 characters. A note of exactly what
// was shown of a longer one is HA saving it unchanged (commands keep the
// note whole then).
const NoteShown = StateShown

// StateShown is the longest state Home Assistant keeps: a sensor given a
// longer one logs an error and shows unknown.
const StateShown = 255

// addClusterExtras adds a cluster's note (text, when notes are a
// control) and its last maintenance, read from the cluster's state.
func (c Config) addClusterExtras(cs components, uid func(string) string, cluster string) {
	st := c.Tree.ClusterState(cluster)
	if slices.Contains(c.Controls, "note") {
		cs.add("note", Component{"platform": "text", "unique_id": uid("note"), "name": "Note", "icon": "mdi:note-text",
			"entity_category": "config", "state_topic": st, "command_topic": c.Tree.ClusterSet(cluster),
			"value_template":   fmt.Sprintf("{{ value_json.note[:%d] if value_json.note else '' }}", NoteShown),
			"command_template": "{{ {'action': 'note', 'note': value} | tojson }}", "max": NoteShown, "mode": "text"})
	}
	cs.add("last_maintenance", sensor(uid("last_maintenance"), "Last maintenance", st,
		"{{ value_json.maintenance_history[0].completed_at if value_json.maintenance_history else None }}", "timestamp").
		with("entity_category", "diagnostic").with("json_attributes_topic", st).
		with("json_attributes_template", "{{ {'tasks': value_json.maintenance_history[0].task_codes if value_json.maintenance_history else []} | tojson }}"))
}

// Clear is the empty retained message that removes a device.
func (c Config) Clear(objectID string) bus.Message {
	return bus.Message{Topic: c.DeviceTopic(objectID), Retain: true}
}

func (c Config) device(obj string, dev map[string]any, cs components, avail []any) bus.Message {
	// The state topic most components read is said once, as a shared
	// option; a component with another state topic keeps its own.
	count := map[string]int{}
	for _, comp := range cs {
		if t, ok := comp["state_topic"].(string); ok {
			count[t]++
		}
	}
	shared, most := "", 1
	for t, n := range count {
		if n > most || n == most && t < shared {
			shared, most = t, n
		}
	}
	cmps := make(map[string]any, len(cs))
	for id, comp := range cs {
		short := make(map[string]any, len(comp))
		for k, v := range comp {
			if k == "state_topic" && v == shared {
				continue
			}
			if k == "availability" {
				v = abbreviateAll(v.([]any))
			}
			if s, ok := abbreviations[k]; ok {
				k = s
			}
			short[k] = v
		}
		cmps[id] = short
	}
	payload := map[string]any{
		"dev":       abbreviate(dev, deviceAbbreviations),
		"o":         map[string]any{"name": "ultimaker2mqtt", "sw": c.Version, "url": "https://github.com/ultimaker2mqtt/ultimaker2mqtt"},
		"cmps":      cmps,
		"avty":      abbreviateAll(avail),
		"avty_mode": "all",
		"qos":       1,
	}
	if shared != "" {
		payload["stat_t"] = shared
	}
	// Templates hold < and >: keep them readable rather than \u003c.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(payload); err != nil {
		panic("discovery: " + err.Error()) // maps of strings, lists and bools always marshal
	}
	return bus.Message{Topic: c.DeviceTopic(obj), Payload: bytes.TrimSpace(buf.Bytes()), Retain: true}
}

// abbreviateAll abbreviates the keys of availability entries.
func abbreviateAll(entries []any) []any {
	out := make([]any, len(entries))
	for i, e := range entries {
		out[i] = abbreviate(e.(map[string]any), abbreviations)
	}
	return out
}

// Component is one entity or trigger of a device, with full key names.
type Component map[string]any

func (c Component) with(k string, v any) Component { c[k] = v; return c }

// withIf is with when cond holds.
func (c Component) withIf(cond bool, k string, v any) Component {
	if cond {
		c[k] = v
	}
	return c
}
func (c Component) without(k string) Component { delete(c, k); return c }

type components map[string]Component

func (cs components) add(id string, c Component) { cs[id] = c }

// sensor is a sensor component; an empty name leaves it out, so HA names
// the entity after its device class.
func sensor(uid, name, stateTopic, tpl, deviceClass string) Component {
	c := Component{"platform": "sensor", "unique_id": uid, "state_topic": stateTopic, "value_template": tpl}
	if name != "" {
		c["name"] = name
	}
	if deviceClass != "" {
		c["device_class"] = deviceClass
	}
	return c
}

// binarySensor is a binary sensor component; an empty name as sensor's.
func binarySensor(uid, name, stateTopic, tpl, deviceClass string) Component {
	c := Component{"platform": "binary_sensor", "unique_id": uid, "state_topic": stateTopic, "value_template": tpl}
	if name != "" {
		c["name"] = name
	}
	if deviceClass != "" {
		c["device_class"] = deviceClass
	}
	return c
}

func temperature(uid, name, stateTopic, tpl string) Component {
	return sensor(uid, name, stateTopic, tpl, "temperature").with("unit_of_measurement", "°C").
		with("state_class", "measurement").with("suggested_display_precision", 1)
}

func availability(topic string) map[string]any { return map[string]any{"topic": topic} }

// enumTemplate renders the value at path, or None (HA's unknown) when the
// cloud sends a value the entity does not list (HA would reject it).
func enumTemplate(path string, options []string) string {
	return "{% set s = " + path + " %}" + enumPick("s", options)
}

func enumPick(v string, options []string) string {
	return "{{ " + v + " if " + v + " in " + jinjaList(options) + " else None }}"
}

func manufacturer(variant string) string {
	if strings.HasPrefix(strings.ToLower(variant), "makerbot") {
		return "MakerBot"
	}
	return "UltiMaker"
}

func nonEmpty(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// PrinterStatuses are the values of the printer status entity: not
// "offline" (the entity is unavailable then) nor "unknown", which is HA's
// own state for a value the entity does not list.
var PrinterStatuses = []string{"idle", "sent_to_printer", "pre_print", "printing", "pausing", "paused", "resuming", "post_print",
	"wait_cleanup", "wait_user_action", "aborting", "aborted", "finished", "failed", "error", "maintenance", "booting",
	"disabled"}

// JobStatuses are the statuses a job on a printer can have (the printer
// status entity shows them while a job is on it).
var JobStatuses = []string{"queued", "sent_to_printer", "wait_for_configuration", "pre_print", "printing", "pausing",
	"paused", "resuming", "post_print", "wait_cleanup", "wait_user_action", "aborting", "aborted", "finished", "failed",
	"error"}

// JobResults are the values of the last job result entity; "none" when
// the printer has not ended a job yet.
var JobResults = []string{"none", "finished", "aborted", "failed"}
