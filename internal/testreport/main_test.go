package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	stream := strings.Join([]string{
		`{"Action":"run","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/web","Test":"TestA"}`,
		`{"Action":"output","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/web","Test":"TestA","Output":"fine\n"}`,
		`{"Action":"pass","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/web","Test":"TestA","Elapsed":0.1}`,
		`{"Action":"output","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/web","Test":"TestB","Output":"    b_test.go:9: broke\n"}`,
		`{"Action":"fail","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/web","Test":"TestB/sub","Elapsed":0.1}`,
		`{"Action":"fail","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/web","Test":"TestB","Elapsed":0.2}`,
		`{"Action":"pass","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/e2e","Test":"TestSlow","Elapsed":12}`,
		`{"Action":"skip","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/e2e","Test":"TestNot","Elapsed":0}`,
		`{"Action":"fail","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/web","Elapsed":1}`,
		`{"Action":"pass","Package":"github.com/ultimaker2mqtt/ultimaker2mqtt/e2e","Elapsed":20}`,
		`# github.com/ultimaker2mqtt/ultimaker2mqtt/x [build failed]`,
	}, "\n")
	var out bytes.Buffer
	var tl tally
	tl.read(strings.NewReader(stream), "", &out)
	got := out.String()
	for _, want := range []string{"FAIL  web TestB (200ms)", "b_test.go:9: broke", "  ok  e2e TestSlow (12s)", "FAIL  web (1s)",
		"ok    e2e (20s)", "[build failed]"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TestA") || strings.Contains(got, "fine") {
		t.Errorf("a quick passing test was reported:\n%s", got)
	}
	if s := tl.summary(); s != "2 tests passed, 1 failed, 1 skipped" {
		t.Errorf("summary %q", s)
	}
}
