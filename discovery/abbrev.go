package discovery

import (
	"encoding/json"
	"maps"
)

// Home Assistant's abbreviations of the keys the bridge uses (HA 2026.9,
// mqtt/abbreviations.py): HA expands them in device-based discovery, and
// they cut the payloads by a third. A test checks each against the
// contract.
var (
	abbreviations = map[string]string{
		"platform": "p", "unique_id": "uniq_id", "state_topic": "stat_t", "value_template": "val_tpl",
		"device_class": "dev_cla", "state_class": "stat_cla", "unit_of_measurement": "unit_of_meas",
		"json_attributes_topic": "json_attr_t", "json_attributes_template": "json_attr_tpl", "entity_category": "ent_cat",
		"enabled_by_default": "en", "icon": "ic", "options": "ops", "suggested_display_precision": "sug_dsp_prc",
		"availability": "avty", "command_topic": "cmd_t", "payload_press": "pl_prs", "url_topic": "url_t", "image_topic": "img_t", "content_type": "cont_type",
		"url_template": "url_tpl", "event_types": "evt_typ", "automation_type": "atype", "topic": "t", "subtype": "stype",
		"payload": "pl", "command_template": "cmd_tpl", "payload_on": "pl_on", "payload_off": "pl_off",
		"state_on": "stat_on", "state_off": "stat_off", "availability_mode": "avty_mode", "components": "cmps",
		"device": "dev", "origin": "o",
	}
	deviceAbbreviations = map[string]string{"identifiers": "ids", "manufacturer": "mf", "model": "mdl",
		"sw_version": "sw", "serial_number": "sn"}
	originAbbreviations = map[string]string{"sw_version": "sw", "support_url": "url"}
)

// abbreviate returns m with its keys abbreviated by table.
func abbreviate(m map[string]any, table map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if short, ok := table[k]; ok {
			k = short
		}
		out[k] = v
	}
	return out
}

// Expand turns a device payload back into HA's full key names, with the
// shared state topic copied into each component that has none, as HA
// itself reads it: for people and tests reading the payloads.
func Expand(payload []byte) (map[string]any, error) {
	var top map[string]any
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, err
	}
	long := invert(abbreviations)
	out := abbreviate(top, long)
	if d, ok := out["device"].(map[string]any); ok {
		out["device"] = abbreviate(d, invert(deviceAbbreviations))
	}
	if o, ok := out["origin"].(map[string]any); ok {
		out["origin"] = abbreviate(o, invert(originAbbreviations))
	}
	if av, ok := out["availability"].([]any); ok {
		out["availability"] = expandAll(av, long)
	}
	if cs, ok := out["components"].(map[string]any); ok {
		for id, raw := range cs {
			comp := abbreviate(raw.(map[string]any), long)
			if av, ok := comp["availability"].([]any); ok {
				comp["availability"] = expandAll(av, long)
			}
			// A component of its platform alone is a removal: it takes nothing.
			if _, own := comp["state_topic"]; !own && out["state_topic"] != nil && comp["platform"] != "device_automation" &&
				len(comp) > 1 {
				comp["state_topic"] = out["state_topic"]
			}
			cs[id] = comp
		}
	}
	return out, nil
}

func expandAll(entries []any, long map[string]string) []any {
	out := make([]any, len(entries))
	for i, e := range entries {
		out[i] = abbreviate(e.(map[string]any), long)
	}
	return out
}

func invert(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// Abbreviations, DeviceAbbreviations and OriginAbbreviations are copies of
// the tables used, long name to abbreviation, for tests against HA's.
func Abbreviations() map[string]string       { return maps.Clone(abbreviations) }
func DeviceAbbreviations() map[string]string { return maps.Clone(deviceAbbreviations) }
func OriginAbbreviations() map[string]string { return maps.Clone(originAbbreviations) }
