package local

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/mdns"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

func TestParseHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"192.168.1.40", "192.168.1.40", true},
		{" 192.168.1.40:8081 ", "192.168.1.40:8081", true},
		{"ultimakersystem-ccbdd30044ec.local", "ultimakersystem-ccbdd30044ec.local", true},
		{"fe80::1", "[fe80::1]", true},
		{"[fe80::1]:80", "[fe80::1]:80", true},
		{"", "", false},
		{"http://printer", "", false},
		{"printer/api", "", false},
		{"user@printer", "", false},
		{"printer:0", "", false},
		{"printer:65536", "", false},
		{"printer:08", "", false},
		{":80", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHost(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseHost(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "local-auth.json")
	a, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("p1"); ok {
		t.Fatal("empty store has a pairing")
	}
	if err := a.Put("p1", &Credential{ID: "id1", Key: "key1"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	// A second process (the pair command) writes beside a running bridge:
	// each keeps the other's pairings.
	b, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	if err := b.Put("p2", &Credential{ID: "id2", Key: "key2"}); err != nil {
		t.Fatal(err)
	}
	if c, ok := a.Get("p2"); !ok || c.Key != "key2" {
		t.Errorf("the first store does not see the second's pairing")
	}
	if err := a.Put("p1", nil); err != nil {
		t.Fatal(err)
	}
	c, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("p1"); ok {
		t.Errorf("a forgotten pairing came back")
	}
	if _, ok := c.Get("p2"); !ok {
		t.Errorf("the second pairing was lost")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	// A file that is not ours is an error naming the file, never its content.
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"printers": secret-looking-garbage`), 0o600)
	if _, err := OpenStore(bad); err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad file: %v", err)
	}
	// In memory only.
	m, _ := OpenStore("")
	if err := m.Put("p", &Credential{ID: "i", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get("p"); !ok {
		t.Errorf("in-memory store lost its pairing")
	}
}

func TestEntryHost(t *testing.T) {
	ip := net.ParseIP("192.168.1.40").To4()
	for _, tc := range []struct {
		name string
		e    *mdns.ServiceEntry
		want string
	}{
		{"printer on 80", &mdns.ServiceEntry{AddrV4: ip, Port: 80, InfoFields: []string{"type=printer", "name=Lab"}}, "192.168.1.40"},
		{"other port", &mdns.ServiceEntry{AddrV4: ip, Port: 8081, InfoFields: []string{"TYPE=printer"}}, "192.168.1.40:8081"},
		{"not a printer", &mdns.ServiceEntry{AddrV4: ip, Port: 80, InfoFields: []string{"type=material_station"}}, ""},
		{"no type", &mdns.ServiceEntry{AddrV4: ip, Port: 80}, ""},
		{"no address", &mdns.ServiceEntry{Port: 80, InfoFields: []string{"type=printer"}}, ""},
		{"bad port", &mdns.ServiceEntry{AddrV4: ip, Port: 0, InfoFields: []string{"type=printer"}}, ""},
		{"nil", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := EntryHost(tc.e)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("EntryHost = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// FuzzObserve feeds arbitrary printer and job JSON through the decoding
// and the model: nothing a printer says may panic, and the state stays
// valid JSON with the printer's key.
func FuzzObserve(f *testing.F) {
	f.Add([]byte(`{"status":"printing","bed":{"type":"glass","temperature":{"current":60.1,"target":60}},`+
		`"heads":[{"extruders":[{"hotend":{"id":"AA 0.4","temperature":{"current":215,"target":215}},`+
		`"active_material":{"guid":"g","GUID":"g"}}]}]}`),
		[]byte(`{"uuid":"u","name":"n","state":"printing","progress":0.5,"time_elapsed":10,"time_total":20,"result":""}`))
	f.Add([]byte(`{"status":7,"heads":"x","bed":{"temperature":{"current":"hot"}}}`), []byte(`{"time_total":"NaN","state":null}`))
	f.Add([]byte(`[]`), []byte(`{"state":"wait_cleanup","result":"Aborted","time_elapsed":1e308,"time_total":-5}`))
	f.Fuzz(func(t *testing.T, printer, job []byte) {
		var lp Printer
		if _, err := connect.DecodeLenient(printer, &lp); err != nil {
			return
		}
		var lj PrintJob
		r := reading{printer: &lp}
		if _, err := connect.DecodeLenient(job, &lj); err == nil {
			r.job = &lj
		}
		p := &Poller{}
		w := &watch{host: "192.168.1.40", client: NewClient("192.168.1.40", time.Second, nil),
			sys: &System{Hostname: "ultimakersystem-ccbdd30044ec", GUID: "g", Name: "Lab"}}
		obs := p.observe(w, r, time.Unix(1700000000, 0))
		v := state.Build(obs, nil)
		if len(v.Printers) != 1 || v.Printers[0].ID != "ultimakersystem-ccbdd30044ec" {
			t.Fatalf("printers %+v", v.Printers)
		}
		if !json.Valid(v.Printers[0].JSON()) {
			t.Fatalf("invalid state JSON")
		}
		v2 := state.Build(p.observe(w, r, time.Unix(1700000005, 0)), &v)
		if v2.PrinterChanged[0] && string(v2.Printers[0].JSON()) == string(v.Printers[0].JSON()) {
			t.Fatalf("changed without a change")
		}
	})
}

func TestKeyOf(t *testing.T) {
	// The cloud knows one printer, by its GUID.
	p := &Poller{cfg: Config{KnownAs: func(guid string) (string, bool) {
		return "ultimakersystem-cloudname", guid == "guid-in-cloud"
	}}}
	for _, tc := range []struct {
		host, hostname, guid, want string
	}{
		{"192.168.1.40", "ultimakersystem-ccbdd30044ec", "", "ultimakersystem-ccbdd30044ec"},
		{"192.168.1.40:8080", "localhost:8080", "", "192_168_1_40"}, // odd hostname (seen in a fixture)
		{"ultimakersystem-ab.local", "", "", "ultimakersystem-ab"},
		{"[fe80::1]", "", "", "fe80__1"},
		{"192.168.1.41", "lab-printer", "guid-in-cloud", "ultimakersystem-cloudname"},
		{"192.168.1.42", "lab-printer", "other-guid", "lab-printer"},
	} {
		w := &watch{host: tc.host}
		if tc.hostname != "" || tc.guid != "" {
			w.sys = &System{Hostname: tc.hostname, GUID: tc.guid}
		}
		if got := p.keyOf(w); got != tc.want {
			t.Errorf("keyOf(%s, %s) = %q, want %q", tc.host, tc.hostname, got, tc.want)
		}
	}
}

// An empty slot (no print core) reports 0 °C on the printer's API: it has
// no temperature, not a cold one.
func TestEmptySlotHasNoTemperature(t *testing.T) {
	zero, hot := 0.0, 215.0
	lp := &Printer{Heads: []Head{{Extruders: []Extruder{
		{Hotend: &Hotend{ID: "AA 0.4", Temperature: &Temperature{Current: &hot, Target: &hot}}},
		{Hotend: &Hotend{ID: "", Temperature: &Temperature{Current: &zero, Target: &zero}}},
	}}}}
	l := liveOf(lp)
	if len(l.Hotends) != 2 || l.Hotends[0].Current == nil || *l.Hotends[0].Current != 215 || l.Hotends[1].Current != nil {
		t.Errorf("hotends %+v", l.Hotends)
	}
}
