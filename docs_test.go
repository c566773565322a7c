package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// The reference in docs/ says every setting -h lists: none goes
// undocumented (issue 29).
func TestDocsNameEveryVariable(t *testing.T) {
	b, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Vars() {
		if !strings.Contains(string(b), "`"+v.Name+"`") {
			t.Errorf("docs/configuration.md does not name %s", v.Name)
		}
	}
}

// docs/topics.md has every topic of the tree, as the bridge builds it.
func TestDocsNameEveryTopic(t *testing.T) {
	b, err := os.ReadFile("docs/topics.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	tree := topics.Tree{Base: "<base>"}
	want := []string{tree.BridgeState(), tree.BridgeInfo(), tree.BridgeEvent(), tree.BridgeActivity(),
		"<base>/bridge/activity/<member>", tree.BridgeMember("<id>"), tree.BridgeClaim("<id>"), tree.BridgeClusters(),
		tree.BridgeRequest("<action>"), tree.BridgeResponse("<action>"), tree.WorkspaceState(), tree.WorkspaceSet()}
	for _, verb := range []string{topics.State, topics.Availability, topics.Event, topics.Snapshot, topics.Picture,
		topics.Preview, topics.Camera, topics.Statistics, topics.Set} {
		want = append(want, "<base>/printers/<printer>/"+verb)
	}
	for _, verb := range []string{topics.State, topics.Availability, topics.Set} {
		want = append(want, "<base>/clusters/<cluster>/"+verb)
	}
	for _, topic := range want {
		if !strings.Contains(doc, topic) {
			t.Errorf("docs/topics.md does not name %s", topic)
		}
	}
}

// Every link between the README and docs/ leads somewhere: a file that
// is there, a heading that is in it.
func TestDocsLinks(t *testing.T) {
	files, _ := filepath.Glob("docs/*.md")
	files = append(files, "README.md", "ARCHITECTURE.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading := regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		b, _ := os.ReadFile(path)
		for _, m := range heading.FindAllStringSubmatch(string(b), -1) {
			a[slug(m[1])] = true
		}
		anchors[path] = a
		return a
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			full := f
			if path != "" {
				full = filepath.Join(filepath.Dir(f), path)
				if _, err := os.Stat(full); err != nil {
					t.Errorf("%s links to %s, which is not there", f, target)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(full, ".md") && !anchorsOf(full)[anchor] {
				t.Errorf("%s links to %s: no such heading", f, target)
			}
		}
	}
}

// slug is a heading's anchor as GitHub makes it.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 && r != '·' && r != '→' && r != '–' && r != '—':
			b.WriteRune(r)
		}
	}
	return b.String()
}
