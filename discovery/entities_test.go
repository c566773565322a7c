package discovery_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// device is a device config read back into full key names.
type device struct {
	Device     map[string]any            `json:"device"`
	Components map[string]map[string]any `json:"components"`
}

func expandDevice(t *testing.T, payload []byte) device {
	t.Helper()
	full, err := discovery.Expand(payload)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(full)
	var d device
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPrinterEntitySet checks each decision of the curated entity set on
// an S5 with two extruders read by the cloud and the LAN (issue 20).
func TestPrinterEntitySet(t *testing.T) {
	w := buildWorld(t)
	d := expandDevice(t, w.retained["homeassistant/device/ultimaker2mqtt_printer_"+lanPrinter+"/config"])
	comp := func(id string) map[string]any {
		c, ok := d.Components[id]
		if !ok {
			t.Fatalf("no component %s", id)
		}
		return c
	}
	retired := func(id string) bool { c, ok := d.Components[id]; return ok && len(c) == 1 && c["platform"] != nil }
	tests := []struct {
		name string
		ok   func() bool
	}{
		{"TextsFromTheCloudCutToAState", func() bool {
			// A job's name over 255 characters would make the entity unknown.
			cut := fmt.Sprintf("[:%d]", discovery.StateShown)
			return strings.Contains(comp("job_name")["value_template"].(string), "value_json.job.name"+cut) &&
				strings.Contains(comp("job_owner")["value_template"].(string), "value_json.job.owner"+cut)
		}},
		{"StatusIsTheMainEntity", func() bool {
			name, has := comp("status")["name"]
			return has && name == nil
		}},
		{"NoEnumListsUnknownOrOffline", func() bool {
			for id, c := range d.Components {
				for _, o := range asStrings(c["options"]) {
					if o == "unknown" || id == "status" && o == "offline" {
						return false
					}
				}
			}
			return len(asStrings(comp("status")["options"])) > 0
		}},
		{"Dropped", func() bool {
			for _, id := range []string{"job_status", "ip_address", "unique_name", "firmware_update_status", "maintenance_tasks",
				"jobs_finished", "print_time", "snapshot"} {
				if !retired(id) {
					return false
				}
			}
			return true
		}},
		{"Diagnostic", func() bool {
			for _, id := range []string{"online", "extruder_1_print_core", "extruder_2_print_core", "last_maintenance"} {
				if comp(id)["entity_category"] != "diagnostic" {
					return false
				}
			}
			return true
		}},
		{"DisabledByDefault", func() bool {
			for _, id := range []string{"time_elapsed", "time_total", "extruder_1_hotend_target", "extruder_2_hotend_target",
				"build_plate_target"} {
				if comp(id)["enabled_by_default"] != false {
					return false
				}
			}
			_, off := comp("time_remaining")["enabled_by_default"]
			return !off
		}},
		{"NoStateClassOnTimeRemaining", func() bool { _, has := comp("time_remaining")["state_class"]; return !has }},
		{"NamesFromTheDeviceClass", func() bool {
			_, p := comp("problem")["name"]
			_, f := comp("firmware")["name"]
			return !p && !f && comp("problem")["device_class"] == "problem" && comp("firmware")["device_class"] == "firmware"
		}},
		{"MaintenanceTasksAsAttributes", func() bool {
			tpl, _ := comp("maintenance_required")["json_attributes_template"].(string)
			return strings.Contains(tpl, "'tasks'") && strings.Contains(tpl, "'count'")
		}},
		{"FirmwareUpdateInProgress", func() bool {
			tpl, _ := comp("firmware")["value_template"].(string)
			attrs, _ := comp("firmware")["json_attributes_template"].(string)
			return strings.Contains(tpl, "in_progress") && strings.Contains(attrs, "update_status")
		}},
		{"SuccessRateWithFinishedAndTimeAsAttributes", func() bool {
			attrs, _ := comp("success_rate")["json_attributes_template"].(string)
			return strings.Contains(attrs, "prints_finished") && strings.Contains(attrs, "print_hours")
		}},
		{"EventsFollowTheBridgeOnly", func() bool {
			av, _ := comp("events")["availability"].([]any)
			if len(av) != 1 {
				return false
			}
			e, _ := av[0].(map[string]any)
			return e["topic"] == "ultimaker/bridge/state"
		}},
		{"DeviceTriggers", func() bool {
			n := 0
			for _, c := range d.Components {
				if c["platform"] == "device_automation" && c["type"] != nil {
					n++
				}
			}
			return n == len(state.EventTypes)
		}},
		{"ConfigurationURLIsThePrintersPage", func() bool { return d.Device["configuration_url"] == "http://192.168.1.40/" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok() {
				t.Errorf("decision not met")
			}
		})
	}
	// The bridge's version is its device's sw_version, not a sensor.
	b := expandDevice(t, w.retained["homeassistant/device/ultimaker2mqtt_bridge/config"])
	if c := b.Components["version"]; len(c) != 1 || b.Device["sw_version"] == nil {
		t.Errorf("bridge version: %v, sw_version %v", c, b.Device["sw_version"])
	}
}

// TestDeviceTriggersOff: HA_DEVICE_TRIGGERS=false leaves the triggers out
// (removed from a device that had them), the event entity stays.
func TestDeviceTriggersOff(t *testing.T) {
	disc := testDisc
	disc.DeviceTriggers = false
	p := state.Printer{ID: "p", UUID: "u", FriendlyName: "P"}
	d := expandDevice(t, disc.Printer(p, false).Payload)
	for _, ev := range state.EventTypes {
		if c := d.Components["trigger_"+ev]; len(c) != 1 || c["platform"] != "device_automation" {
			t.Errorf("trigger_%s: %v, want only its platform (removed)", ev, c)
		}
	}
	if d.Components["events"]["platform"] != "event" {
		t.Error("the event entity is gone too")
	}
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return slices.Clip(out)
}
