package render

import (
	"strings"
	"testing"
)

func TestLeaves(t *testing.T) {
	doc := `{"status":"printing","online":true,"job":{"progress":42.5,"name":"part","preview_url":""},"last_job":null,` +
		`"extruders":[{"index":0,"material":{"brand":"Generic"}},{"index":1}],"errors":[],"build_plate":{},` +
		`"usage":{"Odd/Key #1":3}}`
	got := map[string]string{}
	if err := leaves([]byte(doc), func(path string, v []byte) { got[path] = string(v) }); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"status": "printing", "online": "true", "job/progress": "42.5", "job/name": "part",
		"job/preview_url": `""`, "last_job": "null", "extruders/0/index": "0", "extruders/0/material/brand": "Generic",
		"extruders/1/index": "1", "usage/odd_key__1": "3"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d leaves, want %d: %v", len(got), len(want), got)
	}
}

// TestLeafMessages: only values that changed or appeared are sent, and a
// value that disappeared is cleared.
func TestLeafMessages(t *testing.T) {
	old := `{"status":"printing","job":{"name":"part","progress":10},"errors":["E1"]}`
	next := `{"status":"printing","job":{"name":"part","progress":11},"errors":[],"updated_at":"t"}`
	got := map[string]string{}
	for _, m := range leafMessages("u/printers/p/state", []byte(old), []byte(next)) {
		if !m.Retain {
			t.Errorf("%s is not retained", m.Topic)
		}
		got[strings.TrimPrefix(m.Topic, "u/printers/p/state/")] = string(m.Payload)
	}
	want := map[string]string{"job/progress": "11", "errors/0": "", "updated_at": "t"}
	if len(got) != len(want) {
		t.Errorf("messages %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: %q (sent %v), want %q", k, g, ok, v)
		}
	}
	if n := len(leafMessages("u/x/state", []byte(next), nil)); n != 4 {
		t.Errorf("a state gone clears %d values, want 4", n)
	}
}

// FuzzLeaves: any document (the cloud's usage is passed through) gives
// bounded leaves, none with an empty payload or an unsafe path, and no
// panic.
func FuzzLeaves(f *testing.F) {
	for _, s := range []string{`{"a":{"b":[1,2,{"c":null}]}}`, `[]`, `"x"`, `{"":""}`, `{"a":` + strings.Repeat("[", 50)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		n := 0
		leaves([]byte(doc), func(path string, v []byte) {
			n++
			if len(v) == 0 || strings.ContainsAny(path, "+#") || strings.Contains(path, "//") || strings.Count(path, "/") >= maxLeafDepth {
				t.Fatalf("leaf %q = %q", path, v)
			}
		})
		if n > maxLeaves {
			t.Fatalf("%d leaves", n)
		}
	})
}
