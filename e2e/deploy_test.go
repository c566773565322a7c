package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
	"gopkg.in/yaml.v3"
)

// topicKinds are the shapes of every topic the bridge publishes or
// listens to, with X for an id.
// matchesTree reports whether an MQTT topic or filter names topics of
// the tree: the tree's own parser must accept it (an id may be +).
func matchesTree(topic string) bool {
	a, ok := topics.Tree{Base: topics.DefaultBase}.Parse(topic)
	return ok && a.ID != "#"
}

func TestNodeRedFlowUsesOurTopics(t *testing.T) {
	for _, f := range []string{"flow.json", "values-flow.json"} {
		t.Run(f, func(t *testing.T) { checkFlow(t, "../examples/node-red/"+f, f == "flow.json") })
	}
}

// checkFlow checks a Node-RED flow's wiring and topics; main says it is
// the main example, which must use the state, event, set and response
// topics.
func checkFlow(t *testing.T, path string, main bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []map[string]any
	if err := json.Unmarshal(b, &nodes); err != nil {
		t.Fatalf("%s is not a Node-RED flow: %v", path, err)
	}
	ids := map[string]bool{}
	for _, n := range nodes {
		ids[n["id"].(string)] = true
	}
	kinds := map[string]int{}
	for _, n := range nodes {
		typ, _ := n["type"].(string)
		kinds[typ]++
		for _, ws := range asList(n["wires"]) {
			for _, w := range asList(ws) {
				if !ids[w.(string)] {
					t.Errorf("node %s wires to missing node %s", n["id"], w)
				}
			}
		}
		if typ == "mqtt in" || typ == "mqtt out" {
			topic, _ := n["topic"].(string)
			if !matchesTree(topic) {
				t.Errorf("node %q uses topic %q, which is not in the bridge's topic tree", n["name"], topic)
			}
			if !ids[n["broker"].(string)] {
				t.Errorf("node %q has no broker node", n["name"])
			}
		}
		if typ == "mqtt out" && n["retain"] != "false" {
			t.Errorf("command node %q must not retain (retained commands are refused)", n["name"])
		}
	}
	if !main {
		return
	}
	topicsUsed := map[string]bool{}
	for _, n := range nodes {
		if tp, ok := n["topic"].(string); ok {
			topicsUsed[regexp.MustCompile(`/[^/]+/(set|state|event|response)$`).ReplaceAllString(tp, "/X/$1")] = true
		}
	}
	for _, want := range []string{"ultimaker/printers/X/state", "ultimaker/printers/X/event", "ultimaker/printers/X/set", "ultimaker/printers/X/response"} {
		if !topicsUsed[want] {
			t.Errorf("the flow does not use %s", want)
		}
	}
	if kinds["switch"] == 0 || !strings.Contains(string(b), `"print_finished"`) || !strings.Contains(string(b), "action: 'pause'") {
		t.Error("the flow lacks the print_finished notification or the pause command")
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func TestMatchesTree(t *testing.T) {
	for topic, want := range map[string]bool{
		"ultimaker/printers/+/state": true, "ultimaker/printers/p1/set": true, "ultimaker/bridge/request/refresh": true,
		"ultimaker/printer/+/state": false, "ultimaker/printers/+/status": false, "ultimaker/#": false, "other/printers/p/state": false,
	} {
		if got := matchesTree(topic); got != want {
			t.Errorf("matchesTree(%q) = %v", topic, got)
		}
	}
}

// docker-compose (Debian's package) validates the stack without an engine.
func TestComposeFileIsValid(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose not found: test.sh installs it (Debian package docker-compose)")
	}
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.yml", "Dockerfile", "deploy/mosquitto/mosquitto.conf"} {
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	example, _ := os.ReadFile("../config.example.env")
	os.WriteFile(filepath.Join(dir, "ultimaker2mqtt.env"), example, 0o600)
	out, err := exec.Command(bin, "-f", filepath.Join(dir, "docker-compose.yml"), "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for _, want := range []string{"mosquitto:", "ultimaker2mqtt:", "restart: unless-stopped", "/data", "MQTT_URL: tcp://mosquitto:1883"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("resolved compose file lacks %q", want)
		}
	}
	// The group of three runs only with its profile, instead of the one
	// bridge (docker-compose 1.x lists every profile's services here).
	var resolved struct {
		Services map[string]struct {
			Profiles    []string          `yaml:"profiles"`
			Environment map[string]string `yaml:"environment"`
			Deploy      struct {
				Replicas int `yaml:"replicas"`
			} `yaml:"deploy"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(out, &resolved); err != nil {
		t.Fatal(err)
	}
	single, grouped := resolved.Services["ultimaker2mqtt"], resolved.Services["ultimaker2mqtt-group"]
	if len(single.Profiles) != 0 || single.Environment["INSTANCE_GROUP"] != "" {
		t.Errorf("the default bridge: profiles %v, INSTANCE_GROUP %q; want it alone, in every stack", single.Profiles,
			single.Environment["INSTANCE_GROUP"])
	}
	if !slices.Equal(grouped.Profiles, []string{"group"}) || grouped.Deploy.Replicas != 3 ||
		grouped.Environment["INSTANCE_GROUP"] == "" {
		t.Errorf("the group: %+v; want profile group, 3 replicas, INSTANCE_GROUP set", grouped)
	}
}

// The Kubernetes Deployment runs three members of one group, each named
// by its pod.
func TestKubernetesDeployment(t *testing.T) {
	b, err := os.ReadFile("../deploy/kubernetes/ultimaker2mqtt.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string `yaml:"name"`
							Value     string `yaml:"value"`
							ValueFrom *struct {
								FieldRef struct {
									FieldPath string `yaml:"fieldPath"`
								} `yaml:"fieldRef"`
							} `yaml:"valueFrom"`
						} `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Kind != "Deployment" || d.Spec.Replicas != 3 || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want a Deployment of 3 replicas of one container: %+v", d)
	}
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil {
			env[e.Name] = "from " + e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["INSTANCE_GROUP"] == "" || env["INSTANCE_ID"] != "from metadata.name" {
		t.Errorf("env %v: want INSTANCE_GROUP set and INSTANCE_ID from the pod's name", env)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "\nUSER ", "HEALTHCHECK", `"/ultimaker2mqtt", "healthcheck"`, `VOLUME ["/data"]`,
		"org.opencontainers.image.version", "AS build"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^USER\s+(root|0)\b`).Match(b) {
		t.Error("Dockerfile runs as root")
	}
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }
