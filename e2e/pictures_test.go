package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// snapshotMsg is a snapshot topic's payload.
type snapshotMsg struct {
	URL, Via, Event, Job string
	Size                 int
	TakenAt              time.Time `json:"taken_at"`
}

// snapshots are the snapshot messages seen on topic, in order.
func snapshots(watch *mqtttest.Watcher, topic string) []snapshotMsg {
	var out []snapshotMsg
	for _, m := range watch.All() {
		var s snapshotMsg
		if m.Topic == topic && json.Unmarshal([]byte(m.Payload), &s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// jobOf is the uuid of the job on a printer, from its retained state.
func jobOf(t *testing.T, watch *mqtttest.Watcher, state string) string {
	t.Helper()
	var j string
	watch.WaitFor(15*time.Second, "a job on "+state, func(m map[string]mqtttest.Message) bool {
		var st struct {
			Job *struct {
				UUID, Status string
			}
		}
		json.Unmarshal([]byte(m[state].Payload), &st)
		if st.Job != nil && st.Job.Status == "printing" {
			j = st.Job.UUID
		}
		return j != ""
	})
	return j
}

// TestPictureWhenAPrintEnds: when a job ends, a picture is taken at once,
// from the printer's own camera when it is read on the LAN, else with the
// cloud's webcam action, and published as the snapshot with the event and
// the job; one per ended job (issue 20).
func TestPictureWhenAPrintEnds(t *testing.T) {
	w := fastWorld(t, "end")
	_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	env := append(slices.Clone(w.env), "LOCAL_PRINTERS="+addr, "LOCAL_POLL_INTERVAL=300ms", "CAMERA_INTERVAL=0",
		"LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "end/#")
	startBridge(t, env)
	// The Lab S5 by its camera on the LAN; the farm's host (cloud only)
	// with the cloud's webcam action.
	for _, tc := range []struct{ printer, via string }{{labS5, "local"}, {farmHost, "cloud"}} {
		t.Run(tc.via, func(t *testing.T) {
			base := "end/printers/" + tc.printer
			job := jobOf(t, watch, base+"/state")
			webcam := w.sim.Requests("get_webcam_snapshot")
			if err := w.sim.FinishJob(tc.printer); err != nil {
				t.Fatal(err)
			}
			watch.WaitFor(20*time.Second, "the picture of the finished print", func(map[string]mqtttest.Message) bool {
				return slices.ContainsFunc(snapshots(watch, base+"/snapshot"), func(s snapshotMsg) bool { return s.Job == job })
			})
			var mine []snapshotMsg
			for _, s := range snapshots(watch, base+"/snapshot") {
				if s.Job == job {
					mine = append(mine, s)
				}
			}
			s := mine[0]
			if s.Event != "print_finished" || s.Via != tc.via || s.Size == 0 || time.Since(s.TakenAt) > time.Minute {
				t.Errorf("snapshot %+v, want print_finished via %s", s, tc.via)
			}
			if got := mqtttest.Retained(t, w.broker.URL(), base+"/picture", 300*time.Millisecond)[base+"/picture"]; !picture.IsJPEG([]byte(got)) ||
				len(got) != s.Size {
				t.Errorf("picture topic holds %d bytes, want the %d-byte JPEG", len(got), s.Size)
			}
			if n := w.sim.Requests("get_webcam_snapshot") - webcam; (tc.via == "cloud") != (n == 1) {
				t.Errorf("%d webcam actions in the cloud for a picture via %s", n, tc.via)
			}
			// The job goes on to wait_cleanup and leaves the printer: still
			// one picture of it.
			time.Sleep(2 * time.Second)
			n := 0
			for _, s := range snapshots(watch, base+"/snapshot") {
				if s.Job == job {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d pictures of the ended job, want 1", n)
			}
		})
	}
}

// TestCameraRefreshWhilePrinting: a printer whose camera is read on the
// LAN is pictured every CAMERA_INTERVAL while it prints, and not once it is
// idle (issue 20: the camera image never refreshed in Home Assistant).
func TestCameraRefreshWhilePrinting(t *testing.T) {
	w := fastWorld(t, "cam")
	_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	env := append(lanEnv(w, "cam", addr), "CAMERA_INTERVAL=1s", "LOCAL_POLL_INTERVAL=300ms",
		"LOCAL_AUTH_FILE="+filepath.Join(t.TempDir(), "a.json"))
	watch := mqtttest.Watch(t, w.broker.URL(), "cam/#")
	startBridge(t, env)
	snap := "cam/printers/" + labS5 + "/snapshot"
	refreshes := func() int {
		n := 0
		for _, s := range snapshots(watch, snap) {
			if s.Event == "" && s.Via == "local" {
				n++
			}
		}
		return n
	}
	watch.WaitFor(15*time.Second, "three pictures while printing", func(map[string]mqtttest.Message) bool { return refreshes() >= 3 })
	if err := w.sim.FinishJob(labS5); err != nil {
		t.Fatal(err)
	}
	watch.WaitFor(20*time.Second, "the printer no longer printing", func(m map[string]mqtttest.Message) bool {
		return strings.Contains(m["cam/printers/"+labS5+"/state"].Payload, `"printing":false`)
	})
	idle := refreshes()
	time.Sleep(3 * time.Second)
	if n := refreshes() - idle; n != 0 {
		t.Errorf("%d pictures while the printer was idle, want none", n)
	}
}
