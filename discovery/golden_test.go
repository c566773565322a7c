package discovery_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// Golden files hold the discovery payload of one device of each kind, for
// review by eye: go test ./discovery -run Golden -update rewrites them.
func TestGolden(t *testing.T) {
	w := buildWorld(t)
	want := map[string]string{
		"printer_s5_two_extruders": "ultimaker2mqtt_printer_ultimakersystem-4b0fc38e95e3",
		"printer_s3_in_group":      "ultimaker2mqtt_printer_ultimakersystem-ccbdd3005a11",
		"printer_makerbot":         "ultimaker2mqtt_printer_makerbot-method-x-23a9",
		"printer_um3_offline":      "ultimaker2mqtt_printer_ultimakersystem-0030d6123abc",
		"cluster_group":            "ultimaker2mqtt_cluster_ultimakersystem-ccbdd30044ec",
		"bridge":                   "ultimaker2mqtt_bridge",
		"workspace":                "ultimaker2mqtt_workspace",
	}
	for name, obj := range want {
		t.Run(name, func(t *testing.T) {
			payload, ok := w.retained["homeassistant/device/"+obj+"/config"]
			if !ok {
				t.Fatalf("no discovery for %s", obj)
			}
			var v any
			json.Unmarshal(payload, &v)
			got, _ := json.MarshalIndent(v, "", "  ")
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantB, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, wantB) {
				t.Errorf("%s differs from %s; review and run with -update:\n%s", obj, path, firstDiff(string(wantB), string(got)))
			}
		})
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return "line " + itoa(i+1) + ":\n- " + al[i] + "\n+ " + bl[i]
		}
	}
	return "lengths differ"
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestTemperaturesAndGroups: every printer has a build-plate temperature
// sensor, the S7 (which reports one) a chamber sensor, and printers of a
// multi-printer cluster hang under the cluster's device (issue 9.15).
func TestTemperaturesAndGroups(t *testing.T) {
	w := buildWorld(t)
	cfg := func(obj string) map[string]any {
		v, err := discovery.Expand(w.retained["homeassistant/device/"+obj+"/config"])
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		return v
	}
	s7 := cfg("ultimaker2mqtt_printer_ultimakersystem-ccbdd3007c42")
	cmps := s7["components"].(map[string]any)
	for _, id := range []string{"build_plate_temperature", "chamber_temperature"} {
		c, ok := cmps[id].(map[string]any)
		if !ok || c["device_class"] != "temperature" || c["unit_of_measurement"] != "°C" || c["state_class"] != "measurement" {
			t.Errorf("S7 %s: %v", id, c)
		}
	}
	if _, ok := cfg("ultimaker2mqtt_printer_ultimakersystem-4b0fc38e95e3")["components"].(map[string]any)["chamber_temperature"]; ok {
		t.Errorf("the S5 reports no chamber but got a chamber sensor")
	}
	for obj, via := range map[string]string{
		"ultimaker2mqtt_printer_ultimakersystem-ccbdd3007c42": "ultimaker2mqtt_cluster_ultimakersystem-ccbdd30044ec",
		"ultimaker2mqtt_printer_ultimakersystem-ccbdd30044ec": "ultimaker2mqtt_cluster_ultimakersystem-ccbdd30044ec",
		"ultimaker2mqtt_printer_ultimakersystem-4b0fc38e95e3": "ultimaker2mqtt_bridge",
	} {
		if got := cfg(obj)["device"].(map[string]any)["via_device"]; got != via {
			t.Errorf("%s via %v, want %s", obj, got, via)
		}
	}
}
