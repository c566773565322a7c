// Command testreport runs the test suite for test.sh and tells how it goes: a line per package as it ends, a line per slow test, the output of what failed, and one line at the end.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// runs are the test runs of the suite: everything with the race detector,
// then the demo's tests without it (its embedded broker, mochi-mqtt, has
// a known race of its own: mochi-mqtt/server#200).
var runs = []struct {
	label string
	args  []string
}{
	{"", []string{"test", "-race", "-count=1", "-timeout", "10m", "-json", "./..."}},
	{"the demo, without -race", []string{"test", "-count=1", "-timeout", "5m", "-run", "TestDemo", "-json", "."}},
}

// slow is how long a test runs before its end gets a line of its own.
const slow = 5 * time.Second

func main() {
	var t tally
	ok := true
	for _, r := range runs {
		cmd := exec.Command("go", r.args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
		t.read(out, r.label, os.Stdout)
		if err := cmd.Wait(); err != nil {
			ok = false
		}
	}
	fmt.Println(t.summary())
	if !ok || t.failed > 0 {
		os.Exit(1)
	}
}

// event is one line of go test -json (test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// tally counts the top-level tests and keeps the output of each test
// until it ends (printed only when it failed).
type tally struct {
	passed, failed, skipped int
	output                  map[string][]string // by package and test
}

func (t *tally) read(r io.Reader, label string, w io.Writer) {
	if t.output == nil {
		t.output = map[string][]string{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Fprintln(w, sc.Text()) // a build error, say
			continue
		}
		t.take(e, label, w)
	}
}

func (t *tally) take(e event, label string, w io.Writer) {
	key := e.Package + " " + e.Test
	pkg := strings.TrimPrefix(e.Package, "github.com/ultimaker2mqtt/ultimaker2mqtt")
	if pkg == "" {
		pkg = "."
	} else {
		pkg = strings.TrimPrefix(pkg, "/")
	}
	if label != "" {
		pkg += " (" + label + ")"
	}
	took := time.Duration(e.Elapsed * float64(time.Second)).Round(100 * time.Millisecond)
	top := e.Test != "" && !strings.Contains(e.Test, "/")
	switch e.Action {
	case "output":
		if len(t.output[key]) < 2000 {
			t.output[key] = append(t.output[key], e.Output)
		}
	case "pass", "fail", "skip":
		switch {
		case e.Test == "" && e.Action == "fail":
			fmt.Fprintf(w, "FAIL  %s (%s)\n", pkg, took)
			for _, l := range t.output[key] {
				fmt.Fprint(w, "      ", l)
			}
		case e.Test == "" && e.Action == "pass":
			fmt.Fprintf(w, "ok    %s (%s)\n", pkg, took)
		case e.Test == "":
			fmt.Fprintf(w, "--    %s: no tests\n", pkg)
		case top && e.Action == "fail":
			t.failed++
			fmt.Fprintf(w, "FAIL  %s %s (%s)\n", pkg, e.Test, took)
			for _, l := range t.output[key] {
				fmt.Fprint(w, "      ", l)
			}
		case top && e.Action == "pass":
			t.passed++
			if took >= slow {
				fmt.Fprintf(w, "  ok  %s %s (%s)\n", pkg, e.Test, took)
			}
		case top:
			t.skipped++
		}
		delete(t.output, key)
	}
}

func (t *tally) summary() string {
	s := fmt.Sprintf("%d tests passed, %d failed", t.passed, t.failed)
	if t.skipped > 0 {
		s += fmt.Sprintf(", %d skipped", t.skipped)
	}
	return s
}
