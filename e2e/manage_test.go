package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/commands"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/discovery"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// TestManagementEndToEnd sends every management command of issue 11
// through mosquitto to the bridge and the simulator: each good command
// does what it says, each bad one is answered with its code, and input
// refused locally sends nothing to the cloud.
func TestManagementEndToEnd(t *testing.T) {
	w := fastWorld(t, "mg")
	dir := t.TempDir()
	material := []byte("<fdmmaterial>generic PLA</fdmmaterial>")
	os.WriteFile(filepath.Join(dir, "pla.xml.fdm_material"), material, 0o600)
	all := slices.Concat(commands.PrinterActions, commands.ClusterActions, commands.BridgeActions, commands.WorkspaceActions)
	w.env = append(w.env, "ALLOWED_ACTIONS="+strings.Join(all, ","), "MATERIALS_DIR="+dir, "POLL_REPORTS_INTERVAL=1h")
	watch := mqtttest.Watch(t, w.broker.URL(), "mg/#")
	startBridge(t, w.env)
	waitForPrinters(t, w, "mg")

	farm, lab := "mg/clusters/ultimakersystem-ccbdd30044ec", "mg/printers/ultimakersystem-4b0fc38e95e3"
	var queued string
	watch.WaitFor(5*time.Second, "the farm's queue", func(m map[string]mqtttest.Message) bool {
		var c struct{ Queue []struct{ UUID string } }
		json.Unmarshal([]byte(m[farm+"/state"].Payload), &c)
		if len(c.Queue) > 0 {
			queued = c.Queue[0].UUID
		}
		return queued != ""
	})
	n := 0
	send := func(topic, payload string) []answer {
		t.Helper()
		n++
		tx := `"m` + string(rune('a'+n/26)) + string(rune('a'+n%26)) + `"`
		if payload == "{}" {
			payload = `{"transaction":` + tx + `}`
		} else if strings.HasPrefix(payload, "{") {
			payload = `{"transaction":` + tx + "," + strings.TrimPrefix(payload, "{")
		}
		resp := strings.TrimSuffix(topic, "/set") + "/response"
		if i := strings.Index(topic, "/request/"); i >= 0 {
			resp = topic[:i] + "/response/" + topic[i+len("/request/"):]
		}
		return command(t, watch, topic, resp, payload, tx)
	}
	code := func(as []answer) string {
		if last := as[len(as)-1]; last.Error != nil {
			return last.Error.Code
		}
		return statuses(as)
	}
	tests := []struct {
		name, topic, payload, want, route string // route: no request to it for a local refusal
	}{
		{"SettingsNoField", "mg/workspace/set", `{"action":"settings"}`, "bad_request", "/settings"},
		{"SettingsWrongType", "mg/workspace/set", `{"action":"settings","enable_print_prep":"yes"}`, "bad_request", "/settings"},
		{"SettingsForeignField", "mg/workspace/set", `{"action":"settings","note":"x"}`, "bad_request", "/settings"},
		{"Settings", "mg/workspace/set", `{"action":"settings","require_print_approval":true}`, "ok", ""},
		{"NoteTooLong", farm + "/set", `{"action":"note","note":"` + strings.Repeat("n", 3501) + `"}`, "bad_request", "/note"},
		{"NoteOversize", farm + "/set", `{"action":"note","note":"` + strings.Repeat("n", 17000) + `"}`, "bad_request", "/note"},
		{"NoteMissing", farm + "/set", `{"action":"note"}`, "bad_request", "/note"},
		{"Note", farm + "/set", `{"action":"note","note":"nozzle swapped"}`, "ok", ""},
		{"NoteOnGroupPrinter", "mg/printers/ultimakersystem-ccbdd3005a11/set", `{"action":"note","note":"x"}`, "unknown_action", "/note"},
		{"NoteOnSinglePrinter", lab + "/set", `{"action":"note","note":"lab printer"}`, "ok", ""},
		{"JobNoteUnknownJob", farm + "/set", `{"action":"job_note","job":"00000000-0000-4000-8000-000000000000","note":"x"}`, "not_found", "/print_jobs/00000000"},
		{"JobNoteTooLong", farm + "/set", `{"action":"job_note","job":"` + queued + `","note":"` + strings.Repeat("j", 501) + `"}`, "bad_request", "/print_jobs/" + queued},
		{"JobNote", farm + "/set", `{"action":"job_note","job":"` + queued + `","note":"blue please"}`, "ok", ""},
		{"ShareBoth", farm + "/set", `{"action":"share","organization_shared":true,"team_ids":["t1"]}`, "bad_request", "/share"},
		{"ShareTeams", farm + "/set", `{"action":"share","team_ids":["t1"]}`, "ok", ""},
		{"DeleteWrongConfirm", "mg/clusters/makerbot-method-x-23a9/set", `{"action":"delete","confirm":"other"}`, "bad_request", "DELETE"},
		{"RenameShort", lab + "/set", `{"action":"rename","name":"x"}`, "bad_request", "/action/rename"},
		{"Rename", lab + "/set", `{"action":"rename","name":"Lab-S5-renamed"}`, "pending,ok", ""},
		{"ImportBadID", lab + "/set", `{"action":"import_material","material_profile_id":"nope"}`, "bad_request", "/action/import_material"},
		{"ImportUnknown", lab + "/set", `{"action":"import_material","material_profile_id":"TWF0ZXJpYWxOb3RVcGxvYWRlZDAwMDAwMDAwMDAwMDA="}`, "not_found", ""},
		{"UploadNothing", "mg/bridge/request/upload_material", `{"name":"a.xml"}`, "bad_request", "/materials"},
		{"UploadOutside", "mg/bridge/request/upload_material", `{"file":"../../etc/passwd"}`, "not_found", "/materials"},
		{"UploadNotBase64", "mg/bridge/request/upload_material", `{"name":"a.xml","content":"%%%"}`, "bad_request", "/materials"},
		{"UploadContent", "mg/bridge/request/upload_material", `{"name":"pla.xml.fdm_material","content":"` + base64.StdEncoding.EncodeToString(material) + `"}`, "ok", ""},
		{"UploadFileAndImport", "mg/bridge/request/upload_material", `{"file":"pla.xml.fdm_material","printers":["ultimakersystem-4b0fc38e95e3"]}`, "ok", ""},
		{"UploadUnknownPrinter", "mg/bridge/request/upload_material", `{"file":"pla.xml.fdm_material","printers":["ghost"]}`, "not_found", "/materials"},
		{"JobNeedsCluster", "mg/bridge/request/job", `{"job":"` + queued + `"}`, "bad_request", "/print_jobs/"},
		{"JobUnknownCluster", "mg/bridge/request/job", `{"cluster":"ghost","job":"` + queued + `"}`, "not_found", "/print_jobs/"},
		{"Job", "mg/bridge/request/job", `{"cluster":"ultimakersystem-ccbdd30044ec","job":"` + queued + `"}`, "ok", ""},
		{"PrintJobsLimit", "mg/bridge/request/print_jobs", `{"limit":500}`, "bad_request", "/print_jobs"},
		{"PrintJobsStatus", "mg/bridge/request/print_jobs", `{"status":"bogus"}`, "bad_request", "/print_jobs"},
		{"PrintJobs", "mg/bridge/request/print_jobs", `{"limit":5,"status":"history"}`, "ok", ""},
		{"ReportBadTimes", "mg/bridge/request/report", `{"start":"yesterday","end":"now"}`, "bad_request", "/reports"},
		{"Report", "mg/bridge/request/report", `{"start":"` + time.Now().Add(-40*24*time.Hour).UTC().Format(time.RFC3339) + `","end":"` + time.Now().UTC().Format(time.RFC3339) + `"}`, "ok", ""},
		{"Filters", "mg/bridge/request/filters", `{}`, "ok", ""},
		{"RegisterTwo", "mg/bridge/request/register", `{"pin":"A1B2C3","connection_id":"x"}`, "bad_request", "/confirm-registration"},
		{"RegisterBadPIN", "mg/bridge/request/register", `{"pin":"abc"}`, "bad_request", "/confirm-registration"},
		{"Register", "mg/bridge/request/register", `{"pin":"A1B2C3"}`, "ok", ""},
		{"TeamCountEmpty", "mg/bridge/request/team_count", `{}`, "bad_request", "/team_count"},
		{"TeamCount", "mg/bridge/request/team_count", `{"team_ids":["t1"]}`, "ok", ""},
		{"Cluster", "mg/bridge/request/cluster", `{"cluster":"ultimakersystem-ccbdd30044ec"}`, "ok", ""},
		{"MakerBots", "mg/bridge/request/makerbot_printers", `{}`, "ok", ""},
		{"UserClustersUnknown", "mg/bridge/request/user_clusters", `{"user":"nobody"}`, "not_found", ""},
		{"Spec", "mg/bridge/request/spec", `{}`, "ok", ""},
		{"API", "mg/bridge/request/api", `{}`, "ok", ""},
		{"DeleteTeamUnconfirmed", "mg/bridge/request/delete_team", `{"team":"t1"}`, "bad_request", "/teams/"},
		{"DeleteTeam", "mg/bridge/request/delete_team", `{"team":"t1","confirm":"t1"}`, "ok", ""},
		{"ShareAll", "mg/bridge/request/share_all", `{"organization_shared":true}`, "ok", ""},
		{"Delete", "mg/clusters/makerbot-method-x-23a9/set", `{"action":"delete","confirm":"makerbot-method-x-23a9"}`, "ok", ""},
	}
	for _, tt := range tests {
		before := 0
		if tt.route != "" {
			before = w.sim.Requests(tt.route)
		}
		as := send(tt.topic, tt.payload)
		if got := code(as); got != tt.want {
			t.Errorf("%s: %s (%+v), want %s", tt.name, got, as[len(as)-1].Error, tt.want)
			continue
		}
		if tt.route != "" && w.sim.Requests(tt.route) != before {
			t.Errorf("%s: refused, yet the cloud got a request on %s", tt.name, tt.route)
		}
		last := as[len(as)-1]
		switch tt.name {
		case "Settings":
			if last.Data["require_print_approval"] != true {
				t.Errorf("settings answer %+v", last.Data)
			}
		case "UploadFileAndImport":
			if ims, _ := last.Data["imports"].([]any); len(ims) != 1 || ims[0].(map[string]any)["action_id"] == nil {
				t.Errorf("imports %+v", last.Data)
			}
		case "PrintJobs":
			if items, _ := last.Data["items"].([]any); len(items) != 5 || last.Data["truncated"] != false {
				t.Errorf("print_jobs %d items, %+v", len(items), last.Data["truncated"])
			}
		case "Register":
			if last.Data["cluster_id"] == "" || last.Data["host_name"] == "" {
				t.Errorf("register %+v", last.Data)
			}
		case "API":
			if last.Data["teapot"] != true || last.Data["ok"] != true {
				t.Errorf("api %+v", last.Data)
			}
		}
	}
	// A cloud failure is answered with its code.
	w.sim.AddFault(simulator.Fault{Kind: simulator.FaultServerError, PathContains: "/note", Count: 1})
	if got := code(send(farm+"/set", `{"action":"note","note":"again"}`)); got != "cloud_error" {
		t.Errorf("note during a cloud 500: %s, want cloud_error", got)
	}
	w.sim.AddFault(simulator.Fault{Kind: simulator.FaultUnavailable, PathContains: "/settings", Count: 1})
	if got := code(send("mg/workspace/set", `{"action":"settings","enable_print_prep":false}`)); got != "cloud_error" {
		t.Errorf("settings during a cloud 503: %s, want cloud_error", got)
	}
	// What the commands changed shows in the state within seconds.
	watch.WaitFor(10*time.Second, "state after the commands", func(m map[string]mqtttest.Message) bool {
		var ws struct {
			Settings struct {
				RequirePrintApproval bool `json:"require_print_approval"`
			}
			Statistics *struct {
				JobsFinished int `json:"jobs_finished"`
			}
		}
		var c struct {
			Note    string
			TeamIDs []string `json:"team_ids"`
		}
		var p struct {
			FriendlyName string `json:"friendly_name"`
		}
		json.Unmarshal([]byte(m["mg/workspace/state"].Payload), &ws)
		json.Unmarshal([]byte(m[farm+"/state"].Payload), &c)
		json.Unmarshal([]byte(m[lab+"/state"].Payload), &p)
		registered := false
		for topic := range m {
			registered = registered || (strings.HasPrefix(topic, "mg/printers/ultimakersystem-") && strings.HasSuffix(topic, "/state") &&
				!slices.Contains(printerIDs(), strings.Split(topic, "/")[2]))
		}
		deleted := m["mg/clusters/makerbot-method-x-23a9/state"].Payload == ""
		return ws.Settings.RequirePrintApproval && ws.Statistics != nil && ws.Statistics.JobsFinished > 0 &&
			c.Note == "nozzle swapped" && p.FriendlyName == "Lab-S5-renamed" && registered && deleted
	})
	if got := mqtttest.Retained(t, w.broker.URL(), "mg/printers/ultimakersystem-4b0fc38e95e3/statistics", 200*time.Millisecond); len(got) != 1 {
		t.Errorf("no retained printer statistics")
	}
}

func printerIDs() []string {
	return []string{"ultimakersystem-4b0fc38e95e3", "ultimakersystem-ccbdd30044ec", "ultimakersystem-ccbdd3005a11",
		"ultimakersystem-ccbdd3007c42", "makerbot-method-x-23a9", "ultimakersystem-0030d6123abc"}
}

// TestDeleteNeedsExplicitPermission: with ALLOWED_ACTIONS empty, delete
// is refused not_allowed and nothing reaches the cloud (issue 11).
func TestDeleteNeedsExplicitPermission(t *testing.T) {
	w := fastWorld(t, "del")
	watch := mqtttest.Watch(t, w.broker.URL(), "del/#")
	startBridge(t, w.env)
	waitForPrinters(t, w, "del")
	as := command(t, watch, "del/clusters/makerbot-method-x-23a9/set", "del/clusters/makerbot-method-x-23a9/response",
		`{"action":"delete","confirm":"makerbot-method-x-23a9","transaction":"d"}`, `"d"`)
	if len(as) != 1 || as[0].Error == nil || as[0].Error.Code != "not_allowed" {
		t.Fatalf("answers %+v", as)
	}
	if n := w.sim.Requests("DELETE"); n != 0 {
		t.Errorf("%d delete requests", n)
	}
}

// TestNoteShownTruncatedIsNotWrittenBack: Home Assistant's Note entity
// shows 255 characters of a longer note; saving that back (unchanged, as
// HA sends it) keeps the whole note and sends nothing (issue 20).
func TestNoteShownTruncatedIsNotWrittenBack(t *testing.T) {
	w := fastWorld(t, "note")
	watch := mqtttest.Watch(t, w.broker.URL(), "note/#")
	startBridge(t, w.env)
	waitForPrinters(t, w, "note")
	farm := "note/clusters/ultimakersystem-ccbdd30044ec"
	long := strings.Repeat("nozzle swapped on B, ", 15) // 315 characters
	if as := command(t, watch, farm+"/set", farm+"/response", `{"action":"note","note":"`+long+`","transaction":"n1"}`, `"n1"`); statuses(as) != "ok" {
		t.Fatalf("setting a long note answered %s", statuses(as))
	}
	noteOf := func(m map[string]mqtttest.Message) string {
		var c struct{ Note string }
		json.Unmarshal([]byte(m[farm+"/state"].Payload), &c)
		return c.Note
	}
	watch.WaitFor(10*time.Second, "the long note in the state", func(m map[string]mqtttest.Message) bool { return noteOf(m) == long })
	puts := w.sim.Requests("/note")
	shown := long[:discovery.NoteShown]
	as := command(t, watch, farm+"/set", farm+"/response", `{"action":"note","note":"`+shown+`","transaction":"n2"}`, `"n2"`)
	if statuses(as) != "ok" || as[0].Data["unchanged"] != true {
		t.Errorf("saving the shown part answered %s %v", statuses(as), as[0].Data)
	}
	if n := w.sim.Requests("/note") - puts; n != 0 {
		t.Errorf("%d note requests reached the cloud; the truncated note would overwrite the whole one", n)
	}
	time.Sleep(1500 * time.Millisecond) // a poll
	if got := noteOf(watch.Snapshot()); got != long {
		t.Errorf("the note is now %d characters, want the whole %d", len(got), len(long))
	}
	// A real edit of the shown text is written.
	if as := command(t, watch, farm+"/set", farm+"/response", `{"action":"note","note":"`+shown+` (edited)","transaction":"n3"}`,
		`"n3"`); statuses(as) != "ok" || w.sim.Requests("/note") == puts {
		t.Errorf("an edit answered %s and was not sent", statuses(as))
	}
}
