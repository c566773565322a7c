package e2e

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestANewcomersStart: with no HTTP_LISTEN the page is on 127.0.0.1:8080;
// once every cluster has been read the log says, in one line at info
// level, what is bridged and where the page is; a token the cloud refuses
// is said at error level with what to do (issue 29).
func TestANewcomersStart(t *testing.T) {
	w := newWorld(t, "newcomer")
	env := slices.DeleteFunc(slices.Clone(w.env), func(kv string) bool {
		return strings.HasPrefix(kv, "HTTP_LISTEN=") || strings.HasPrefix(kv, "LOG_LEVEL=")
	})
	env = append(env, "LOG_LEVEL=info")
	if ln, err := net.Listen("tcp", "127.0.0.1:8080"); err != nil {
		t.Skipf("127.0.0.1:8080 is taken on this machine (%v): the default cannot be tried", err)
	} else {
		ln.Close()
	}
	_, logs := startBridge(t, env)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "bridging 6 printers in 4 clusters") {
		if time.Now().After(deadline) {
			t.Fatalf("no line saying what is bridged:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "bridging 6 printers") {
			line = l
		}
	}
	if !strings.Contains(line, `"level":"info"`) || !strings.Contains(line, "(6 from the cloud, 0 on the LAN)") ||
		!strings.Contains(line, "the farm page is on http://127.0.0.1:8080/") {
		t.Errorf("the line: %s", line)
	}
	resp, err := http.Get("http://127.0.0.1:8080/healthz")
	if err != nil {
		t.Fatalf("the page's endpoint on the default address: %v", err)
	}
	resp.Body.Close()

	// A token the cloud refuses.
	bad := slices.DeleteFunc(slices.Clone(w.env), func(kv string) bool { return strings.HasPrefix(kv, "ULTIMAKER_API_TOKEN=") })
	bad = append(bad, "ULTIMAKER_API_TOKEN=umapi-not-the-right-one", "MQTT_BASE_TOPIC=refused", "MQTT_CLIENT_ID=refused")
	_, badLogs := startBridge(t, bad)
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(badLogs.String(), "refuses the bridge's token"); {
		if time.Now().After(deadline) {
			t.Fatalf("no word of the refused token:\n%s", badLogs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range strings.Split(badLogs.String(), "\n") {
		if strings.Contains(l, "refuses the bridge's token") && (!strings.Contains(l, `"level":"error"`) ||
			!strings.Contains(l, "ULTIMAKER_API_TOKEN") || !strings.Contains(l, "check")) {
			t.Errorf("the refusal: %s", l)
		}
		if strings.Contains(l, "umapi-not-the-right-one") {
			t.Error("the token reached the log")
		}
	}
}
