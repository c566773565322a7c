package commands

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// fakeCloud records calls and answers from its fields.
type fakeCloud struct {
	mu       sync.Mutex
	calls    []string
	err      error         // returned by every call when set
	statuses []string      // successive action statuses, then success
	stuck    bool          // actions never settle
	image    string        // image URL on success
	block    chan struct{} // when set, calls wait for it
	// moved, when set, is told of each job action on a printer's job
	// (by the printer's uuid): the fake state follows.
	moved func(printer, action string)
}

var _ Cloud = (*fakeCloud)(nil)

func (f *fakeCloud) call(s string) error {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	err, block := f.err, f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	return err
}

func (f *fakeCloud) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeCloud) PrintJobAction(_ context.Context, cid, job, action string, body *connect.PrintJobActionBody) (*connect.ActionStatus, error) {
	s := "job " + cid + " " + job + " " + action
	if body != nil && body.ToPosition != nil {
		s += " to 0"
	}
	if err := f.call(s); err != nil {
		return nil, err
	}
	if f.moved != nil && job == "job-1" {
		// job-1 is on printer "printing" or "paused": both move.
		f.moved("printing", action)
		f.moved("paused", action)
	}
	return &connect.ActionStatus{ActionID: "a1", Status: "pending"}, nil
}

func (f *fakeCloud) PrinterAction(_ context.Context, cid, pid, action string, _ *connect.PrinterActionBody) (*connect.ActionStatus, error) {
	if err := f.call("printer " + cid + " " + pid + " " + action); err != nil {
		return nil, err
	}
	return &connect.ActionStatus{ActionID: "a1", Status: "pending"}, nil
}

func (f *fakeCloud) ActionStatus(_ context.Context, cid, id string) (*connect.ActionStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := "success"
	switch {
	case f.stuck:
		st = "pending"
	case len(f.statuses) > 0:
		st, f.statuses = f.statuses[0], f.statuses[1:]
	}
	a := &connect.ActionStatus{ActionID: id, Status: st}
	if st == "success" && f.image != "" {
		a.StatusDetails = json.RawMessage(`{"type":"x","value":{"image_url":"` + f.image + `"}}`)
	}
	return a, nil
}

func (f *fakeCloud) Print(_ context.Context, cid, jobID string) (*connect.PrintRequest, error) {
	if err := f.call("print " + cid + " " + jobID); err != nil {
		return nil, err
	}
	return &connect.PrintRequest{JobInstanceUUID: "new-job", Status: "queued"}, nil
}

func (f *fakeCloud) Reprint(_ context.Context, cid, orig, job string) (*connect.PrintRequest, error) {
	if err := f.call("reprint " + cid + " " + job); err != nil {
		return nil, err
	}
	return &connect.PrintRequest{JobInstanceUUID: "again", Status: "queued"}, nil
}

// fakeJPEG is what the fake cloud's pictures hold.
var fakeJPEG = []byte{0xff, 0xd8, 0xff, 0xe0, 1, 2, 3}

func (f *fakeCloud) Picture(_ context.Context, url string) ([]byte, error) {
	if err := f.call("picture " + url); err != nil {
		return nil, err
	}
	return fakeJPEG, nil
}

func (f *fakeCloud) CompleteMaintenance(_ context.Context, cid string, codes []string) error {
	return f.call("maintenance " + cid + " " + strings.Join(codes, ","))
}

// fakeState holds one printer of each situation and one cluster. Job
// actions the fake cloud takes change the job's status here, as the next
// poll would show them.
type fakeState struct {
	mu     sync.Mutex
	status map[string]string // printer id -> its job's status, when an action changed it
}

// jobAction moves the job of printer id as the cloud would, at once.
func (f *fakeState) jobAction(id, action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == nil {
		f.status = map[string]string{}
	}
	f.status[id] = map[string]string{"pause": "paused", "print": "printing", "abort": "aborted"}[action]
}

func (f *fakeState) Printer(id string) (state.Printer, bool) {
	p := state.Printer{ID: id, UUID: "uuid-" + id, ClusterID: "cid", FriendlyName: id, Online: true}
	f.mu.Lock()
	moved := f.status[id]
	f.mu.Unlock()
	switch id {
	case "printing":
		p.Job = &state.Job{UUID: "job-1", Status: cmp.Or(moved, "printing")}
	case "paused":
		p.Job = &state.Job{UUID: "job-1", Status: cmp.Or(moved, "paused")}
	case "idle":
	case "offline":
		p.Online = false
	case "makerbot":
		p.UUID = ""
	case "nocam":
		p.Cluster = "nocam"
	default:
		return p, false
	}
	return p, true
}

func (*fakeState) Cluster(id string) (state.Cluster, bool) {
	if id == "nocam" {
		return state.Cluster{ID: "nocam", ClusterID: "nocam-id", Online: true, Capabilities: []string{"print_job_action", "queue"}}, true
	}
	if id != "farm" && id != "cid" {
		return state.Cluster{}, false
	}
	return state.Cluster{ID: "farm", ClusterID: "cid", Online: true,
		Queue:             []state.QueuedJob{{UUID: "q1", Status: "queued"}, {UUID: "q2", Status: "queued"}},
		RecentlyCompleted: []state.CompletedJob{{UUID: "done1", Result: "finished"}},
		Maintenance:       []state.MaintenanceTask{{Code: "clean", Due: true}, {Code: "lube"}}}, true
}

// answers records published answers.
type answers struct {
	mu   sync.Mutex
	msgs []bus.Message
	note chan struct{}
}

func (a *answers) Publish(_ context.Context, msgs ...bus.Message) error {
	a.mu.Lock()
	a.msgs = append(a.msgs, msgs...)
	a.mu.Unlock()
	select {
	case a.note <- struct{}{}:
	default:
	}
	return nil
}

type refreshes struct {
	mu    sync.Mutex
	ids   []string
	maint []string // RefreshMaintenance calls
}

func (r *refreshes) Refresh(id string) { r.mu.Lock(); r.ids = append(r.ids, id); r.mu.Unlock() }
func (r *refreshes) RefreshWorkspace() {
	r.mu.Lock()
	r.ids = append(r.ids, "workspace")
	r.mu.Unlock()
}
func (r *refreshes) RefreshMaintenance(id string) {
	r.mu.Lock()
	r.ids = append(r.ids, id)
	r.maint = append(r.maint, id)
	r.mu.Unlock()
}

// pictures records the pictures the handler hands on.
type pictures struct {
	mu   sync.Mutex
	pics []picture.Picture
}

func (p *pictures) Picture(_ context.Context, pic picture.Picture) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pics = append(p.pics, pic)
}

type rig struct {
	h        *Handler
	pictures *pictures
	state    *fakeState
	cloud    *fakeCloud
	out      *answers
	refresh  *refreshes
}

func newRig(cfg Config) *rig {
	cfg.Tree = topics.Tree{Base: "u"}
	if cfg.PollEvery == 0 {
		cfg.PollEvery = time.Millisecond
	}
	r := &rig{state: &fakeState{}, cloud: &fakeCloud{statuses: []string{"sent", "success"}}, out: &answers{note: make(chan struct{}, 1)},
		refresh: &refreshes{}, pictures: &pictures{}}
	cfg.Pictures = r.pictures
	r.h = New(cfg, r.cloud, r.state, r.out, r.refresh, zerolog.Nop())
	r.cloud.moved = func(printer, action string) {
		r.state.jobAction(printer, action)
		r.h.StateChanged()
	}
	return r
}

// send handles one message and returns the answers, after every command
// in progress finished.
func (r *rig) send(topic, payload string, retained bool) []Response {
	r.out.mu.Lock()
	start := len(r.out.msgs)
	r.out.mu.Unlock()
	r.h.Handle(context.Background(), bus.Inbound{Topic: topic, Payload: []byte(payload), Retained: retained})
	r.h.Wait()
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	var out []Response
	for _, m := range r.out.msgs[start:] {
		if !strings.Contains(m.Topic, "/response") {
			continue // the snapshot URL, not an answer
		}
		var resp Response
		if err := json.Unmarshal(m.Payload, &resp); err != nil {
			panic(err)
		}
		out = append(out, resp)
	}
	return out
}

func final(rs []Response) Response {
	if len(rs) == 0 {
		return Response{}
	}
	return rs[len(rs)-1]
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name, topic, payload, code string
	}{
		{"MalformedJSON", "u/printers/printing/set", `{"action":`, CodeBadRequest},
		{"TrailingData", "u/printers/printing/set", `{"action":"pause"} {}`, CodeBadRequest},
		{"WrongType", "u/printers/printing/set", `{"action":5}`, CodeBadRequest},
		{"UnknownField", "u/printers/printing/set", `{"action":"pause","transction":"x"}`, CodeBadRequest},
		{"ObjectTransaction", "u/printers/printing/set", `{"action":"pause","transaction":{"a":1}}`, CodeBadRequest},
		{"Array", "u/printers/printing/set", `["pause"]`, CodeBadRequest},
		{"NotAWord", "u/printers/printing/set", `pause now!`, CodeBadRequest},
		{"TooLarge", "u/printers/printing/set", `{"action":"pause","job":"` + strings.Repeat("x", 5000) + `"}`, CodeBadRequest},
		{"Binary", "u/printers/printing/set", "\x00\xff\xfe", CodeBadRequest},
		{"UnknownPrinterAction", "u/printers/printing/set", `explode`, CodeUnknownAction},
		{"ClusterActionOnPrinter", "u/printers/printing/set", `remove`, CodeUnknownAction},
		{"UnknownBridgeRequest", "u/bridge/request/reboot", ``, CodeUnknownAction},
		{"BridgeActionMismatch", "u/bridge/request/refresh", `{"action":"print"}`, CodeBadRequest},
		{"ClusterNeedsJob", "u/clusters/farm/set", `move_to_top`, CodeBadRequest},
		{"PrintNeedsJobID", "u/bridge/request/print", `{"cluster":"farm"}`, CodeBadRequest},
		{"PrintNeedsCluster", "u/bridge/request/print", `{"job_id":"x"}`, CodeBadRequest},
		{"UnknownPrinter", "u/printers/ghost/set", `pause`, CodeNotFound},
		{"UnknownCluster", "u/clusters/ghost/set", `{"action":"remove","job":"q1"}`, CodeNotFound},
		{"UnknownQueuedJob", "u/clusters/farm/set", `{"action":"remove","job":"nope"}`, CodeNotFound},
		{"UnknownRecentJob", "u/clusters/farm/set", `{"action":"reprint","job":"q1"}`, CodeNotFound},
		{"UnknownTask", "u/bridge/request/maintenance_done", `{"cluster":"farm","tasks":["fly"]}`, CodeNotFound},
		{"PauseIdle", "u/printers/idle/set", `pause`, CodeConflict},
		{"PausePaused", "u/printers/paused/set", `pause`, CodeConflict},
		{"ResumePrinting", "u/printers/printing/set", `resume`, CodeConflict},
		{"AbortIdle", "u/printers/idle/set", `abort`, CodeConflict},
		{"Offline", "u/printers/offline/set", `snapshot`, CodeConflict},
		{"SnapshotMakerBot", "u/printers/makerbot/set", `snapshot`, CodeConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(Config{})
			rs := r.send(tt.topic, tt.payload, false)
			if len(rs) != 1 || rs[0].Status != "error" || rs[0].Error == nil || rs[0].Error.Code != tt.code {
				t.Fatalf("answers %+v, want one error %s", rs, tt.code)
			}
			if rs[0].Error.Message == "" {
				t.Errorf("no message")
			}
			if c := r.cloud.Calls(); len(c) != 0 {
				t.Errorf("cloud called: %v", c)
			}
		})
	}
}

func TestTransactionEchoed(t *testing.T) {
	r := newRig(Config{})
	for _, tx := range []string{`"abc"`, `42`, `-1.5`} {
		rs := r.send("u/printers/idle/set", `{"action":"pause","transaction":`+tx+`}`, false)
		if string(final(rs).Transaction) != tx {
			t.Errorf("transaction %s echoed as %s", tx, final(rs).Transaction)
		}
	}
	// Even a bad command echoes what it can.
	rs := r.send("u/printers/idle/set", `{"action":"pause","transaction":"t1","bogus":1}`, false)
	if string(final(rs).Transaction) != `"t1"` || final(rs).Error.Code != CodeBadRequest {
		t.Errorf("bad command answer %+v", final(rs))
	}
	rs = r.send("u/printers/idle/set", `pause`, false)
	if string(final(rs).Transaction) != "null" || final(rs).Action != "pause" {
		t.Errorf("bare word answer %+v", final(rs))
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		name, topic, payload, call string
		async                      bool
	}{
		{"Pause", "u/printers/printing/set", `pause`, "job cid job-1 pause", true},
		{"Resume", "u/printers/paused/set", `{"action":"resume"}`, "job cid job-1 print", true},
		{"AbortPrinting", "u/printers/printing/set", `abort`, "job cid job-1 abort", true},
		{"AbortPaused", "u/printers/paused/set", `ABORT`, "job cid job-1 abort", true},
		{"Snapshot", "u/printers/idle/set", `snapshot`, "printer cid uuid-idle get_webcam_snapshot", true},
		{"MoveToTop", "u/clusters/farm/set", `{"action":"move_to_top","job":"q2"}`, "job cid q2 move to 0", true},
		{"Remove", "u/clusters/farm/set", `{"action":"remove","job":"q1"}`, "job cid q1 remove", true},
		{"Force", "u/clusters/farm/set", `{"action":"force","job":"q1"}`, "job cid q1 force", true},
		{"Reprint", "u/clusters/farm/set", `{"action":"reprint","job":"done1"}`, "reprint cid done1", false},
		{"Print", "u/bridge/request/print", `{"cluster":"farm","job_id":"lib-1"}`, "print cid lib-1", false},
		{"MaintenanceDue", "u/bridge/request/maintenance_done", `{"cluster":"farm"}`, "maintenance cid clean", false},
		{"MaintenanceNamed", "u/bridge/request/maintenance_done", `{"cluster":"cid","tasks":["lube","clean"]}`, "maintenance cid lube,clean", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(Config{})
			r.cloud.image = "http://img/1.jpg"
			rs := r.send(tt.topic, tt.payload, false)
			if c := r.cloud.Calls(); len(c) == 0 || c[0] != tt.call {
				t.Fatalf("cloud calls %v, want [%s …]", c, tt.call)
			}
			want := []string{"ok"}
			if tt.async {
				want = []string{"pending", "ok"}
			}
			var got []string
			for _, x := range rs {
				got = append(got, x.Status)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("answers %v, want %v: %+v", got, want, rs)
			}
			if len(r.refresh.ids) == 0 || r.refresh.ids[0] != "cid" {
				t.Errorf("no fast polling after the command: %v", r.refresh.ids)
			}
			if tt.name == "Snapshot" {
				d, _ := final(rs).Data.(map[string]any)
				if d["image_url"] != "http://img/1.jpg" {
					t.Errorf("snapshot answer %+v", final(rs))
				}
				// The cloud's picture is fetched and handed on, with its URL.
				if c := r.cloud.Calls(); len(c) != 2 || c[1] != "picture http://img/1.jpg" {
					t.Errorf("cloud calls %v: the picture was not fetched", c)
				}
				r.pictures.mu.Lock()
				defer r.pictures.mu.Unlock()
				if len(r.pictures.pics) != 1 || r.pictures.pics[0].URL != "http://img/1.jpg" ||
					!bytes.Equal(r.pictures.pics[0].JPEG, fakeJPEG) || r.pictures.pics[0].Printer != "idle" {
					t.Errorf("pictures handed on: %+v", r.pictures.pics)
				}
			}
		})
	}
}

func TestRefreshRequest(t *testing.T) {
	r := newRig(Config{ReadOnly: true})
	if rs := r.send("u/bridge/request/refresh", ``, false); final(rs).Status != "ok" {
		t.Fatalf("refresh: %+v", rs)
	}
	r.send("u/bridge/request/refresh", `{"cluster":"farm"}`, false)
	if strings.Join(r.refresh.ids, ",") != ",cid" {
		t.Errorf("refreshed %q, want all then cid", r.refresh.ids)
	}
}

func TestSafety(t *testing.T) {
	t.Run("RetainedAnsweredOnceNeverRun", func(t *testing.T) {
		r := newRig(Config{})
		first := r.send("u/printers/printing/set", `abort`, true)
		again := r.send("u/printers/printing/set", `abort`, true)
		if len(first) != 1 || first[0].Error.Code != CodeRetained || len(again) != 0 {
			t.Errorf("answers %+v then %+v", first, again)
		}
		if len(r.cloud.Calls()) != 0 {
			t.Errorf("retained abort reached the cloud")
		}
	})
	t.Run("DuplicateTransaction", func(t *testing.T) {
		r := newRig(Config{})
		r.send("u/printers/printing/set", `{"action":"snapshot","transaction":"t-1"}`, false)
		rs := r.send("u/printers/printing/set", `{"action":"snapshot","transaction":"t-1"}`, false)
		if final(rs).Error == nil || final(rs).Error.Code != CodeDuplicate {
			t.Errorf("second delivery answered %+v", rs)
		}
		if n := len(r.cloud.Calls()); n != 1 {
			t.Errorf("cloud called %d times", n)
		}
		// After the window the id may be used again.
		r.h.now = func() time.Time { return time.Now().Add(11 * time.Minute) }
		r.send("u/printers/printing/set", `{"action":"snapshot","transaction":"t-1"}`, false)
		if n := len(r.cloud.Calls()); n != 2 {
			t.Errorf("after the window: %d calls", n)
		}
	})
	t.Run("ReadOnly", func(t *testing.T) {
		r := newRig(Config{ReadOnly: true})
		for _, c := range []struct{ topic, payload string }{{"u/printers/printing/set", "pause"}, {"u/clusters/farm/set", `{"action":"remove","job":"q1"}`},
			{"u/bridge/request/print", `{"cluster":"farm","job_id":"x"}`}} {
			if rs := r.send(c.topic, c.payload, false); final(rs).Error == nil || final(rs).Error.Code != CodeReadOnly {
				t.Errorf("%s %s: %+v", c.topic, c.payload, rs)
			}
		}
		if len(r.cloud.Calls()) != 0 {
			t.Errorf("read-only called the cloud: %v", r.cloud.Calls())
		}
	})
	t.Run("AllowedActions", func(t *testing.T) {
		r := newRig(Config{AllowedActions: []string{"pause"}})
		if rs := r.send("u/printers/printing/set", "abort", false); final(rs).Error.Code != CodeNotAllowed {
			t.Errorf("%+v", rs)
		}
		if rs := r.send("u/printers/printing/set", "pause", false); final(rs).Status != "ok" {
			t.Errorf("%+v", rs)
		}
	})
	t.Run("Busy", func(t *testing.T) {
		r := newRig(Config{MaxInFlight: 1})
		r.cloud.block = make(chan struct{})
		r.h.Handle(context.Background(), bus.Inbound{Topic: "u/printers/printing/set", Payload: []byte("pause")})
		rs := r.send2("u/printers/idle/set", "snapshot")
		close(r.cloud.block)
		r.h.Wait()
		if final(rs).Error == nil || final(rs).Error.Code != CodeBusy {
			t.Errorf("%+v", rs)
		}
	})
}

// send2 handles a message without waiting for commands in progress.
func (r *rig) send2(topic, payload string) []Response {
	r.out.mu.Lock()
	start := len(r.out.msgs)
	r.out.mu.Unlock()
	r.h.Handle(context.Background(), bus.Inbound{Topic: topic, Payload: []byte(payload)})
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	var out []Response
	for _, m := range r.out.msgs[start:] {
		var resp Response
		json.Unmarshal(m.Payload, &resp)
		out = append(out, resp)
	}
	return out
}

func TestCloudErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"Busy", &connect.APIError{Kind: connect.KindConflict, HTTPStatus: 409, Code: "printerNotAcceptingJobs", Title: "Printer is not accepting jobs"}, CodeConflict},
		{"Gone", &connect.APIError{Kind: connect.KindNotFound, HTTPStatus: 404, Title: "The given record does not exist"}, CodeNotFound},
		{"Expired", &connect.APIError{Kind: connect.KindAuth, HTTPStatus: 403, Code: "tokenExpired", Title: "The given token has expired"}, CodeUnauthorized},
		{"Server", &connect.APIError{Kind: connect.KindServer, HTTPStatus: 500, Title: "An unexpected error has occurred"}, CodeCloudError},
		{"Limited", &connect.APIError{Kind: connect.KindRateLimited, HTTPStatus: 429, Title: "Too many"}, CodeRateLimited},
		{"Timeout", &connect.APIError{Kind: connect.KindNetwork, Err: context.DeadlineExceeded}, CodeTimeout},
		{"Other", errors.New("boom"), CodeCloudError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(Config{})
			r.cloud.err = tt.err
			rs := r.send("u/printers/printing/set", "pause", false)
			if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != tt.code {
				t.Fatalf("%+v, want %s", rs, tt.code)
			}
			var ae *connect.APIError
			if errors.As(tt.err, &ae) && ae.Title != "" && ae.Kind != connect.KindNetwork && !strings.Contains(rs[0].Error.Message, ae.Title) {
				t.Errorf("message %q lacks the cloud's title", rs[0].Error.Message)
			}
		})
	}
}

func TestAsyncEndings(t *testing.T) {
	r := newRig(Config{})
	r.cloud.moved = nil // the printer never pauses
	r.cloud.statuses = []string{"sent", "failed"}
	if rs := r.send("u/printers/printing/set", "pause", false); final(rs).Error == nil || final(rs).Error.Code != CodeActionFailed {
		t.Errorf("failed action: %+v", rs)
	}
	r = newRig(Config{Timeout: 20 * time.Millisecond})
	r.cloud.moved = nil
	r.cloud.stuck = true
	rs := r.send("u/printers/printing/set", "pause", false)
	if len(rs) != 2 || rs[0].Status != "pending" || rs[1].Error == nil || rs[1].Error.Code != CodeTimeout {
		t.Errorf("stuck action: %+v", rs)
	}
}

// FuzzHandle sends arbitrary payloads to every command topic: no panic,
// and every message gets exactly one final answer unless it is a repeat
// of a retained one.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{"pause", `{"action":"pause","transaction":1}`, `{"action":"remove","job":"q1"}`,
		`{"cluster":"farm","job_id":"x"}`, `{"action":"x","tasks":[1]}`, "\x00", `{"transaction":"t"`} {
		f.Add(s, uint8(0))
	}
	topicsList := []string{"u/printers/printing/set", "u/printers/ghost/set", "u/clusters/farm/set",
		"u/bridge/request/print", "u/bridge/request/maintenance_done", "u/bridge/request/refresh", "u/bridge/request/nope"}
	f.Fuzz(func(t *testing.T, payload string, which uint8) {
		r := newRig(Config{Timeout: 50 * time.Millisecond})
		topic := topicsList[int(which)%len(topicsList)]
		rs := r.send(topic, payload, false)
		finals := 0
		for _, x := range rs {
			if x.Status != "pending" {
				finals++
			}
			if x.Status == "error" && (x.Error == nil || x.Error.Code == "") {
				t.Fatalf("error without code: %+v", x)
			}
		}
		// An empty message on a set topic clears a retained command: it is
		// not a command and gets no answer.
		want := 1
		if strings.TrimSpace(payload) == "" && strings.HasSuffix(topic, "/set") {
			want = 0
		}
		if finals != want {
			t.Fatalf("%q on %s: %d final answers %+v, want %d", payload, topic, finals, rs, want)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"pause", `{"action":"pause"}`, `{"action":"a","transaction":"x","job":"j","tasks":["a"]}`, "{", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b, MaxPayload)
		if err == nil && !actionWord.MatchString(r.Action) {
			t.Fatalf("accepted action %q", r.Action)
		}
		_ = TransactionOf(b)
	})
}

// actionWord is what bareWord checks, said as a regular expression.
var actionWord = regexp.MustCompile(`^[a-z][a-z_]{0,39}$`)

func FuzzBareWord(f *testing.F) {
	for _, s := range []string{"pause", "move_to_top", "Pause", "_x", "", "a", strings.Repeat("a", 40),
		strings.Repeat("a", 41), "a-b", "é", "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, w string) {
		if got, want := bareWord(w), actionWord.MatchString(w); got != want {
			t.Fatalf("bareWord(%q) = %v, the pattern says %v", w, got, want)
		}
	})
}

// TestSubmitAnswersTheCaller checks a command from the page's API: the
// same rules as MQTT's, its answers go to the caller (and OnAnswered), not
// to a response topic.
func TestSubmitAnswersTheCaller(t *testing.T) {
	tests := []struct {
		name, topic, payload string
		cfg                  Config
		status, code, call   string
	}{
		{"pause", "u/printers/printing/set", `{"action":"pause"}`, Config{}, "ok", "", "job cid job-1 pause"},
		{"conflict", "u/printers/idle/set", `{"action":"pause"}`, Config{}, "error", CodeConflict, ""},
		{"bad JSON", "u/printers/printing/set", `{"action":`, Config{}, "error", CodeBadRequest, ""},
		{"read-only", "u/printers/printing/set", `{"action":"pause"}`, Config{ReadOnly: true}, "error", CodeReadOnly, ""},
		{"not a command topic", "u/printers/printing/state", `{"action":"pause"}`, Config{}, "error", CodeNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var noted, replied []Response
			cfg := tt.cfg
			cfg.OnAnswered = func(topic string, r Response) {
				mu.Lock()
				defer mu.Unlock()
				if topic != tt.topic {
					t.Errorf("OnAnswered for %s, want %s", topic, tt.topic)
				}
				noted = append(noted, r)
			}
			r := newRig(cfg)
			r.h.Submit(context.Background(), tt.topic, []byte(tt.payload), func(a Response) {
				mu.Lock()
				defer mu.Unlock()
				replied = append(replied, a)
			})
			r.h.Wait()
			mu.Lock()
			defer mu.Unlock()
			last := final(replied)
			if last.Status != tt.status || (tt.code != "") != (last.Error != nil) ||
				last.Error != nil && last.Error.Code != tt.code {
				t.Fatalf("answers %+v, want a final %s %s", replied, tt.status, tt.code)
			}
			if tt.code != CodeNotFound && len(noted) != len(replied) {
				t.Errorf("OnAnswered told of %d answers, the caller got %d", len(noted), len(replied))
			}
			if calls := r.cloud.Calls(); tt.call != "" && !slices.Contains(calls, tt.call) || tt.call == "" && len(calls) > 0 {
				t.Errorf("cloud calls %v, want %q", calls, tt.call)
			}
			r.out.mu.Lock()
			defer r.out.mu.Unlock()
			for _, m := range r.out.msgs {
				if strings.Contains(m.Topic, "response") {
					t.Errorf("an answer was published on %s", m.Topic)
				}
			}
		})
	}
}
