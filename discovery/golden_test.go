package discovery_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
