// Package commands turns MQTT command messages into Connect printer and print-job actions and answers each one.
package commands

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/picture"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Cloud is the part of the Connect API commands call.
type Cloud interface {
	PrintJobAction(ctx context.Context, clusterID, jobUUID, action string, body *connect.PrintJobActionBody) (*connect.ActionStatus, error)
	PrinterAction(ctx context.Context, clusterID, printerUUID, action string, body *connect.PrinterActionBody) (*connect.ActionStatus, error)
	ActionStatus(ctx context.Context, clusterID, actionID string) (*connect.ActionStatus, error)
	Print(ctx context.Context, clusterID, jobID string) (*connect.PrintRequest, error)
	Reprint(ctx context.Context, clusterID, originalClusterID, jobUUID string) (*connect.PrintRequest, error)
	CompleteMaintenance(ctx context.Context, clusterID string, taskCodes []string) error
	// Picture fetches the picture a webcam snapshot action made.
	Picture(ctx context.Context, url string) ([]byte, error)
}

// Pictures keeps a printer's latest picture and publishes it;
// *render.Renderer is one.
type Pictures interface {
	Picture(ctx context.Context, p picture.Picture)
}

// State is the bridge's current view, by topic id.
type State interface {
	Printer(id string) (state.Printer, bool)
	Cluster(id string) (state.Cluster, bool)
}

// Publisher sends answers.
type Publisher interface {
	Publish(ctx context.Context, msgs ...bus.Message) error
}

// Refresher asks the poller to poll a cluster now and fast for a while.
type Refresher interface {
	Refresh(clusterID string)
	// RefreshMaintenance also reads the cluster's pending maintenance now.
	RefreshMaintenance(clusterID string)
	// RefreshWorkspace reads the cluster list and the workspace settings
	// now (new or deleted clusters, changed settings).
	RefreshWorkspace()
}

// Prober tells what retained message the broker holds on a topic (nil:
// none). MQTT 3.1.1 brokers clear the retain flag on live delivery, so a
// command published retained while the bridge is connected arrives
// looking live; only the broker's copy tells. *mqttpub.Client is one.
type Prober interface {
	RetainedCopy(ctx context.Context, topic string) ([]byte, error)
}

// Actions by target.
var (
	PrinterActions = []string{"pause", "resume", "abort", "snapshot", "rename", "import_material"}
	// ClusterManagement are taken by a cluster's set topic, and by its
	// printer's when the cluster is that one printer.
	ClusterManagement = []string{"note", "job_note", "share", "delete"}
	ClusterActions    = append([]string{"move_to_top", "remove", "force", "reprint"}, ClusterManagement...)
	BridgeActions     = []string{"refresh", "maintenance_done", "print", "upload_material", "job", "print_jobs", "report",
		"filters", "register", "share_all", "team_count", "cluster", "makerbot_printers", "user_clusters", "spec", "api",
		"delete_team", "pair"}
	WorkspaceActions = []string{"settings"}
	// Queries change nothing: READ_ONLY answers them.
	Queries = []string{"refresh", "job", "print_jobs", "report", "filters", "team_count", "cluster", "makerbot_printers",
		"user_clusters", "spec", "api"}
	// Destructive actions run only when ALLOWED_ACTIONS names them: an
	// empty list does not allow them.
	Destructive = []string{"delete", "delete_team"}
)

// OtherAction stands for every action the bridge does not know, where
// an action names something kept (a metric's label).
const OtherAction = "other"

// KnownAction is action when the bridge knows it, else OtherAction.
func KnownAction(action string) string {
	for _, list := range [][]string{PrinterActions, ClusterActions, BridgeActions, WorkspaceActions} {
		if slices.Contains(list, action) {
			return action
		}
	}
	return OtherAction
}

// Error codes in answers. They are stable: automations branch on them.
const (
	CodeBadRequest    = "bad_request"
	CodeUnknownAction = "unknown_action"
	CodeNotFound      = "not_found"
	CodeConflict      = "conflict"
	CodeReadOnly      = "read_only"
	CodeNotAllowed    = "not_allowed"
	CodeRetained      = "retained"
	CodeDuplicate     = "duplicate"
	CodeBusy          = "busy"
	CodeRateLimited   = "rate_limited"
	CodeUnauthorized  = "unauthorized"
	CodeCloudError    = "cloud_error"
	CodeTimeout       = "timeout"
	CodeActionFailed  = "action_failed"
	// CodeInterrupted answers a command whose bridge left its group
	// before the action settled: it is not sent again.
	CodeInterrupted = "interrupted"
)

// Config tunes the handler.
type Config struct {
	Tree           topics.Tree
	ReadOnly       bool
	AllowedActions []string      // empty: all
	Timeout        time.Duration // until an asynchronous action must settle
	PollEvery      time.Duration // action status polls
	DedupeWindow   time.Duration // how long a transaction id is remembered
	MaxInFlight    int           // commands being carried out at once
	// OnAnswer, when set, is told of every final answer: the action ("other"
	// for one the bridge does not know: anyone who can send a command makes
	// up action names) and "ok" or the error code, for metrics.
	OnAnswer func(action, result string)
	// Prober, when set, is asked before a command is carried out whether
	// the broker holds it retained (then it is answered retained, never
	// carried out). Nil skips the check (tests without a broker).
	Prober Prober
	// Manager carries out the management commands (notes, sharing,
	// settings, materials, lists, registration); nil answers them
	// unknown_action.
	Manager Manager
	// MaterialsDir is where upload_material may read files by name.
	MaterialsDir string
	// LAN, when set, carries out job and queue actions on printers read
	// on the LAN and paired, and pairs them.
	LAN LAN
	// NoCloud is true without a cloud account: only LANActions run.
	NoCloud bool
	// Pictures takes the pictures snapshot makes; nil drops them.
	Pictures Pictures
	// OnAnswered, when set, is told of every answer (pending ones too) and
	// the command topic it answers, for the page's activity feed. It must
	// not block.
	OnAnswered func(topic string, r Response)
	// Group, when set, is this bridge's group: it carries out only the
	// commands for what it owns, keeps the others until their answer shows,
	// and claims (through Acked) each command it takes on.
	Group Group
	Acked AckedPublisher
}

// retainedMemory bounds how many retained commands are remembered as
// answered: by a hash, so a flood of large retained payloads costs 32
// bytes each, and at most this many.
const retainedMemory = 1024

// Response is the answer to a command.
type Response struct {
	Status      string          `json:"status"` // ok, error or pending
	Action      string          `json:"action"`
	Transaction json.RawMessage `json:"transaction"`
	Data        any             `json:"data"`
	Error       *ErrorBody      `json:"error"`
}

// ErrorBody says why a command failed.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Handler receives command messages. Handle never blocks on the cloud:
// accepted commands run on their own goroutines, which Wait waits for.
type Handler struct {
	cfg     Config
	cloud   Cloud
	st      State
	pub     Publisher
	refresh Refresher
	log     zerolog.Logger
	now     func() time.Time

	manager Manager

	mu       sync.Mutex
	seenTx   map[string]time.Time
	retained map[[32]byte]bool // retained commands answered, by hash
	retOrder [][32]byte        // their order, to forget the oldest
	lanes    map[string]*lane  // by laneOf
	changed  chan struct{}     // closed at the next StateChanged
	clearing map[string]bool   // topics we cleared: their empty message is ours
	running  int
	wg       sync.WaitGroup

	held      []*heldCommand            // a group's commands other members own
	heldFull  bool                      // the oldest were forgotten (logged once per streak)
	forwarded map[string]func(Response) // the page's commands sent to their owner
}

// New returns a Handler.
func New(cfg Config, cloud Cloud, st State, pub Publisher, refresh Refresher, log zerolog.Logger) *Handler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = time.Second
	}
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = 10 * time.Minute
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 32
	}
	return &Handler{cfg: cfg, cloud: cloud, st: st, pub: pub, refresh: refresh, now: time.Now, manager: cfg.Manager,
		log: log.With().Str("component", "commands").Logger(), seenTx: map[string]time.Time{}, retained: map[[32]byte]bool{},
		lanes: map[string]*lane{}, changed: make(chan struct{}), clearing: map[string]bool{},
		forwarded: map[string]func(Response){}}
}

// Filters are the topics to subscribe Handle to.
func (h *Handler) Filters() []string { return h.cfg.Tree.CommandFilters() }

// Wait waits for commands in progress; cancel their context first.
func (h *Handler) Wait() { h.wg.Wait() }

// target is what a command topic addresses.
type target struct {
	kind     topics.Kind
	id       string // printer or cluster topic id
	action   string // bridge requests carry it in the topic
	topic    string
	response string
	// reply, when set, takes the answers instead of the response topic
	// (a command through the page's API).
	reply func(Response)
}

func (h *Handler) parseTopic(topic string) (target, bool) {
	a, ok := h.cfg.Tree.Parse(topic)
	switch {
	case !ok:
		return target{}, false
	case a.Kind == topics.Bridge && a.Verb == topics.Request:
		return target{kind: a.Kind, action: a.ID, topic: topic, response: h.cfg.Tree.ResponseTo(a)}, true
	case a.Kind != topics.Bridge && a.Verb == topics.Set:
		return target{kind: a.Kind, id: a.ID, topic: topic, response: h.cfg.Tree.ResponseTo(a)}, true
	}
	return target{}, false
}

// MaxPayloadFor is the largest command accepted on topic; Handle refuses
// a longer one unread (mqttpub keeps only its size).
func (h *Handler) MaxPayloadFor(topic string) int {
	a, _ := h.cfg.Tree.Parse(topic)
	switch {
	case a.Kind == topics.Bridge && a.ID == "upload_material":
		return MaxUploadPayload
	case (a.Kind == topics.Printer || a.Kind == topics.Cluster) && a.Verb == topics.Set:
		return MaxNotePayload
	}
	return MaxPayload
}

// Handle takes one message from a command topic and answers it exactly
// once, except an empty payload on a set topic (the clearing of a
// retained command), which is not a command.
func (h *Handler) Handle(ctx context.Context, in bus.Inbound) { h.handle(ctx, in, false) }

// handle is Handle; adopted is a command of a group's member that left,
// carried out by this one whether or not it owns the target (takeOver).
func (h *Handler) handle(ctx context.Context, in bus.Inbound, adopted bool) {
	t, ok := h.parseTopic(in.Topic)
	if !ok {
		return
	}
	if !adopted && !h.mine(t) {
		h.hold(t, in)
		return
	}
	empty := len(bytes.TrimSpace(in.Payload)) == 0 && !in.Truncated
	if empty {
		h.mu.Lock()
		ours := h.clearing[in.Topic]
		delete(h.clearing, in.Topic)
		h.mu.Unlock()
		if ours || in.Retained || t.kind != topics.Bridge {
			return
		}
	}
	if in.Retained {
		// A retained command would replay on every reconnect: answer it
		// once, clear it, and never carry it out.
		if h.rememberRetained(in.Topic, in.Payload) {
			h.answer(ctx, t, Request{Action: ActionOf(in.Payload), Transaction: TransactionOf(in.Payload)}, retainedAnswer())
		}
		h.clear(ctx, in.Topic)
		return
	}
	h.command(ctx, t, in, empty)
}

// Submit carries out a command that did not come over MQTT (the page's
// API): topic is the command topic it stands for, and reply gets each of
// its answers instead of the response topic. Every rule of Handle holds
// (parsing, the allowlist, read-only, lanes, transactions), but the one
// about retained messages, which are MQTT's.
func (h *Handler) Submit(ctx context.Context, topic string, payload []byte, reply func(Response)) {
	t, ok := h.parseTopic(topic)
	if !ok {
		reply(*fail(CodeNotFound, "no such command topic"))
		return
	}
	t.reply = reply
	if !h.mine(t) {
		h.forward(ctx, t, payload, reply)
		return
	}
	// Its transactions are its own: they never match an MQTT command's.
	t.response = "api:" + t.response
	h.command(ctx, t, bus.Inbound{Topic: topic, Payload: payload, Size: len(payload)}, len(bytes.TrimSpace(payload)) == 0)
}

// command takes a command that is not retained: checked, then carried out
// in its lane, or at once.
func (h *Handler) command(ctx context.Context, t target, in bus.Inbound, empty bool) {
	if in.Truncated || len(in.Payload) > h.MaxPayloadFor(in.Topic) {
		h.answer(ctx, t, Request{Action: prefixField(in.Payload, "action"), Transaction: json.RawMessage(prefixField(in.Payload, "transaction"))},
			fail(CodeBadRequest, fmt.Sprintf("payload is %d bytes; at most %d", max(in.Size, len(in.Payload)), h.MaxPayloadFor(in.Topic))))
		return
	}
	req, err := h.parse(t, in.Payload, empty)
	if err != nil {
		h.answer(ctx, t, req, fail(CodeBadRequest, err.Error()))
		return
	}
	if resp := h.admit(t, req); resp != nil {
		h.answer(ctx, t, req, resp)
		return
	}
	if resp := h.claimFor(ctx, t, req); resp != nil {
		h.answer(ctx, t, req, resp)
		return
	}
	c := &command{t: t, req: req, in: in, lane: laneOf(t, req), sig: signature(req), arrived: h.now()}
	if c.lane == "" {
		h.runNow(ctx, c)
		return
	}
	h.mu.Lock()
	joined, final, refused := h.enqueue(c)
	if refused == nil {
		h.remember(t, req)
	}
	h.mu.Unlock()
	switch {
	case refused != nil:
		h.answer(ctx, t, req, refused)
	case final != nil:
		h.answer(ctx, t, req, copyOf(final))
	case !joined:
		h.log.Debug().Str("topic", in.Topic).Str("action", req.Action).Msg("command accepted")
		go h.run(ctx, c)
	}
}

// runNow carries out a command that keeps no order (a query) at once,
// within MaxInFlight.
func (h *Handler) runNow(ctx context.Context, c *command) {
	w, resp := h.plan(c.t, c.req)
	if resp != nil {
		h.answer(ctx, c.t, c.req, resp)
		return
	}
	h.mu.Lock()
	if h.running >= h.cfg.MaxInFlight {
		h.mu.Unlock()
		h.answer(ctx, c.t, c.req, fail(CodeBusy, "too many commands in progress; try again"))
		return
	}
	h.remember(c.t, c.req)
	h.running++
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			h.running--
			h.mu.Unlock()
			h.wg.Done()
		}()
		if resp := h.notRetained(ctx, c.t, c.in); resp != nil {
			h.answer(ctx, c.t, c.req, resp)
			return
		}
		w(ctx, func(r *Response) { h.answer(ctx, c.t, c.req, r) })
	}()
}

// Busy answers a command the bridge cannot take now (its inbox is full):
// busy, with the transaction when the payload has one. It does no cloud
// call and never blocks; mqttpub calls it on paho's goroutine.
func (h *Handler) Busy(ctx context.Context, in bus.Inbound) {
	t, ok := h.parseTopic(in.Topic)
	empty := len(bytes.TrimSpace(in.Payload)) == 0 && !in.Truncated
	if !ok || in.Retained || empty && t.kind != topics.Bridge || !h.mine(t) {
		return // Handle would not answer these either
	}
	h.answer(ctx, t, Request{Action: ActionOf(in.Payload), Transaction: TransactionOf(in.Payload)},
		fail(CodeBusy, "the bridge is taking in too many commands; try again"))
}

func retainedAnswer() *Response {
	return fail(CodeRetained, "retained commands are never executed (they would replay at every reconnect); "+
		"the bridge cleared it: publish commands without the retain flag")
}

// rememberRetained reports whether this retained command is new, and
// remembers it by hash, forgetting the oldest beyond retainedMemory.
func (h *Handler) rememberRetained(topic string, payload []byte) bool {
	sum := sha256.Sum256(append([]byte(topic+"\x00"), payload...))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retained[sum] {
		return false
	}
	h.retained[sum] = true
	h.retOrder = append(h.retOrder, sum)
	if len(h.retOrder) > retainedMemory {
		delete(h.retained, h.retOrder[0])
		h.retOrder = h.retOrder[1:]
	}
	return true
}

// clear removes a retained command from the broker; the empty message it
// sends comes back to us, and is not a command.
func (h *Handler) clear(ctx context.Context, topic string) {
	h.mu.Lock()
	if len(h.clearing) < retainedMemory {
		h.clearing[topic] = true
	}
	h.mu.Unlock()
	h.pub.Publish(ctx, bus.Message{Topic: topic, Retain: true})
}

// notRetained asks the broker whether it holds this command retained:
// then it is cleared and the answer is retained (busy when the broker
// cannot say); nil when the command may be carried out. A different
// retained payload on the topic is a stale command: cleared.
func (h *Handler) notRetained(ctx context.Context, t target, in bus.Inbound) *Response {
	if h.cfg.Prober == nil || t.reply != nil {
		return nil
	}
	held, err := h.cfg.Prober.RetainedCopy(ctx, in.Topic)
	if err != nil {
		return fail(CodeBusy, "cannot confirm with the broker that this command is not retained; try again")
	}
	if held == nil {
		return nil
	}
	h.clear(ctx, in.Topic)
	if !bytes.Equal(held, in.Payload) {
		return nil
	}
	h.rememberRetained(in.Topic, in.Payload)
	return retainedAnswer()
}

// parse reads the payload for target t and checks that every field it
// carries belongs to the action.
func (h *Handler) parse(t target, payload []byte, empty bool) (Request, error) {
	if t.kind == topics.Bridge && empty {
		return Request{Action: t.action}, nil // the topic says it all
	}
	req, err := Parse(payload, h.MaxPayloadFor(t.topic))
	if t.kind == topics.Bridge {
		if errors.Is(err, errMissingAction) {
			err = nil
		}
		if err == nil && req.Action != "" && req.Action != t.action {
			err = fmt.Errorf("action %q does not match the request topic %q", req.Action, t.action)
		}
		req.Action = t.action
	}
	if err != nil {
		if req.Transaction == nil {
			req.Transaction = TransactionOf(payload)
		}
		return req, err
	}
	return req, checkFields(req)
}

// admit applies the checks that need no state: known action, read-only,
// allowed list, duplicate transaction.
func (h *Handler) admit(t target, req Request) *Response {
	known := actionsOf(t.kind)
	if h.manager == nil {
		known = slices.DeleteFunc(slices.Clone(known), func(a string) bool { return managed(a) })
	}
	if !slices.Contains(known, req.Action) {
		return fail(CodeUnknownAction, fmt.Sprintf("%s commands are %s", t.kind, strings.Join(known, ", ")))
	}
	if resp := h.needsCloud(req.Action); resp != nil {
		return resp
	}
	if h.cfg.ReadOnly && !slices.Contains(Queries, req.Action) {
		return fail(CodeReadOnly, "the bridge runs with READ_ONLY=true; nothing was sent to the cloud")
	}
	if slices.Contains(Destructive, req.Action) && !slices.Contains(h.cfg.AllowedActions, req.Action) {
		return fail(CodeNotAllowed, fmt.Sprintf("%s is destructive: it runs only when ALLOWED_ACTIONS lists it", req.Action))
	}
	if len(h.cfg.AllowedActions) > 0 && !slices.Contains(h.cfg.AllowedActions, req.Action) {
		return fail(CodeNotAllowed, fmt.Sprintf("action %s is not in ALLOWED_ACTIONS", req.Action))
	}
	if len(req.Transaction) > 0 {
		now := h.now()
		h.mu.Lock()
		defer h.mu.Unlock()
		for k, at := range h.seenTx {
			if now.Sub(at) > h.cfg.DedupeWindow {
				delete(h.seenTx, k)
			}
		}
		if _, dup := h.seenTx[txKey(t, req)]; dup {
			return fail(CodeDuplicate, "this transaction was already received; it is not sent to the cloud again")
		}
	}
	return nil
}

func txKey(t target, req Request) string { return t.response + "\x00" + string(req.Transaction) }

// remember records the transaction of a command taken on, so the same
// transaction is refused as a duplicate; a command refused before (busy)
// can be sent again with it. Called with h.mu held.
func (h *Handler) remember(t target, req Request) {
	if len(req.Transaction) > 0 {
		h.seenTx[txKey(t, req)] = h.now()
	}
}

// work carries out an admitted command and reports through answer; it may
// answer pending first.
type work func(ctx context.Context, answer func(*Response))

// plan checks a command against the current state, without calling the
// cloud, and returns the work to do and the keys of what it occupies
// while under way (one action at a time per printer, job and cluster).
func (h *Handler) plan(t target, req Request) (work, *Response) {
	switch t.kind {
	case topics.Printer:
		p, ok := h.st.Printer(t.id)
		if !ok {
			return nil, fail(CodeNotFound, fmt.Sprintf("no printer %q", t.id))
		}
		c, _ := h.st.Cluster(p.Cluster)
		if resp := lanOnly(p.ClusterID, nonEmpty(p.FriendlyName, p.ID), req.Action); resp != nil {
			return nil, resp
		}
		if slices.Contains(ClusterManagement, req.Action) {
			if len(c.Printers) != 1 {
				return nil, fail(CodeUnknownAction, fmt.Sprintf("%s is in a group of printers: send %s to the cluster's topic %s",
					p.FriendlyName, req.Action, h.cfg.Tree.ClusterSet(c.ID)))
			}
			return h.planManage(c, req)
		}
		return h.planPrinter(p, c, req)
	case topics.Cluster:
		c, ok := h.st.Cluster(t.id)
		if !ok {
			return nil, fail(CodeNotFound, fmt.Sprintf("no cluster %q", t.id))
		}
		if resp := lanOnly(c.ClusterID, nonEmpty(c.FriendlyName, c.ID), req.Action); resp != nil {
			return nil, resp
		}
		if slices.Contains(ClusterManagement, req.Action) {
			return h.planManage(c, req)
		}
		if resp := capable(c, req.Action); resp != nil {
			return nil, resp
		}
		return h.planCluster(c, req)
	case topics.Workspace:
		return h.planSettings(req)
	}
	if slices.Contains([]string{"refresh", "maintenance_done", "print"}, req.Action) {
		return h.planBridge(req)
	}
	if req.Action == "pair" {
		return h.planPair(req)
	}
	return h.planRequest(req)
}

// capabilityOf is the cluster capability each action needs (reference:
// the capabilities a printer reports, e.g. an S5 on firmware 8.2).
var capabilityOf = map[string]string{
	"pause": "print_job_action", "resume": "print_job_action", "abort": "print_job_action",
	"snapshot": "webcam_snapshot", "move_to_top": "queue", "remove": "queue", "force": "queue",
	"reprint": "print_job_action_reprint", "rename": "rename", "import_material": "import_material",
}

// capable refuses an action the cluster's capabilities do not offer. A
// cluster that reports no capabilities at all is given the benefit of
// the doubt.
func capable(c state.Cluster, action string) *Response {
	need, ok := capabilityOf[action]
	if !ok || len(c.Capabilities) == 0 || slices.Contains(c.Capabilities, need) {
		return nil
	}
	return fail(CodeConflict, fmt.Sprintf("%s cannot %s: it lacks the %s capability; nothing sent", nonEmpty(c.FriendlyName, c.ID), action, need))
}

// connectAction is the Connect print-job action of each printer command
// (the job statuses that allow it are state.JobActionFrom).
var connectAction = map[string]string{"pause": "pause", "resume": "print", "abort": "abort"}

func (h *Handler) planPrinter(p state.Printer, c state.Cluster, req Request) (work, *Response) {
	if !p.Online {
		return nil, fail(CodeConflict, fmt.Sprintf("printer %s is offline", p.FriendlyName))
	}
	if req.Action == "snapshot" && h.lanCamera(p) {
		return h.lanSnapshot(p, picture.Picture{}), nil
	}
	if resp := capable(c, req.Action); resp != nil {
		return nil, resp
	}
	if req.Action == "rename" || req.Action == "import_material" {
		return h.planPrinterAction(p, req)
	}
	if req.Action == "snapshot" {
		return h.planSnapshot(p, picture.Picture{})
	}
	if p.Job == nil {
		return nil, fail(CodeConflict, fmt.Sprintf("printer %s has no job to %s", p.FriendlyName, req.Action))
	}
	if !state.JobActionAllowed(req.Action, p.Job.Status) {
		return nil, fail(CodeConflict, fmt.Sprintf("cannot %s a job that is %s (allowed while %s)", req.Action, p.Job.Status,
			strings.Join(state.JobActionFrom[req.Action], ", ")))
	}
	job := p.Job.UUID
	lan, resp := h.viaLAN(p)
	if resp != nil {
		return nil, resp
	}
	// The action counts as done once the state shows it: the lane's next
	// command (a resume after a pause) is checked against that state.
	shown := h.shown(p.ID, req.Action, job)
	if lan {
		return h.lanWork(func(ctx context.Context) error { return h.cfg.LAN.JobState(ctx, p.ID, connectAction[req.Action]) },
			p.ID, map[string]any{"job": job}, shown), nil
	}
	return func(ctx context.Context, answer func(*Response)) {
		deadline := h.now().Add(h.cfg.Timeout)
		st, err := h.cloud.PrintJobAction(ctx, p.ClusterID, job, connectAction[req.Action], nil)
		ok := h.follow(ctx, p.ClusterID, st, err, answer, shown, func(final *connect.ActionStatus) any {
			return map[string]any{"action_id": final.ActionID, "job": job}
		})
		if ok {
			h.holdUntilShown(ctx, deadline, shown)
		}
	}, nil
}

// planSnapshot plans a picture with the cloud's webcam snapshot action
// (lanSnapshot when the printer's own camera is read on the LAN): the
// cloud makes the picture, the bridge fetches it and publishes it, with
// the Event and Job of about.
func (h *Handler) planSnapshot(p state.Printer, about picture.Picture) (work, *Response) {
	switch {
	case p.ClusterID == "":
		return nil, fail(CodeConflict, fmt.Sprintf("%s has no camera the bridge reads on the LAN, and the cloud does not know it",
			nonEmpty(p.FriendlyName, p.ID)))
	case p.UUID == "":
		return nil, fail(CodeConflict, "this printer reports no GUID (MakerBot); the cloud cannot address it")
	}
	return func(ctx context.Context, answer func(*Response)) {
		st, err := h.cloud.PrinterAction(ctx, p.ClusterID, p.UUID, "get_webcam_snapshot", nil)
		h.follow(ctx, p.ClusterID, st, err, answer, nil, func(final *connect.ActionStatus) any {
			url := final.ImageURL()
			data := map[string]any{"action_id": final.ActionID, "image_url": url, "via": picture.ViaCloud}
			if url == "" {
				return data
			}
			pic := picture.Picture{Printer: p.ID, TakenAt: h.now(), Via: picture.ViaCloud, URL: url, Event: about.Event, Job: about.Job}
			jpeg, err := h.cloud.Picture(ctx, url)
			if err != nil {
				// The cloud has it: its address is published, the bytes are not.
				h.log.Debug().Err(err).Str("printer", p.ID).Msg("cloud picture not fetched")
			}
			pic.JPEG, data["size"] = jpeg, len(jpeg)
			h.picture(ctx, pic)
			return data
		})
	}, nil
}

// lanCamera reports whether a picture of p can come from its own camera,
// read on the LAN.
func (h *Handler) lanCamera(p state.Printer) bool {
	if p.Camera == nil || h.cfg.LAN == nil {
		return false
	}
	onLAN, _ := h.cfg.LAN.Reach(p.ID)
	return onLAN
}

// lanSnapshot takes a picture with the printer's own camera: faster than
// the cloud's action, and it needs no cloud. The picture says about's
// Event and Job.
func (h *Handler) lanSnapshot(p state.Printer, about picture.Picture) work {
	return func(ctx context.Context, answer func(*Response)) {
		ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		defer cancel()
		jpeg, err := h.cfg.LAN.Picture(ctx, p.ID)
		if err != nil {
			answer(lanFailure(err, p.ID))
			return
		}
		at := h.now().UTC().Truncate(time.Second)
		h.picture(ctx, picture.Picture{Printer: p.ID, JPEG: jpeg, TakenAt: at, Via: picture.ViaLocal, Event: about.Event, Job: about.Job})
		answer(&Response{Status: "ok", Data: map[string]any{"via": picture.ViaLocal, "taken_at": at, "size": len(jpeg)}})
	}
}

// TakePicture takes a picture of a printer for the bridge itself (when a
// print ends, or to keep its camera's picture fresh): with its own camera
// on the LAN, else, unless lanOnly, with the cloud's webcam action. It is
// no command: it waits for no other command and answers nobody; the
// picture says event and job. It returns once the picture is published.
func (h *Handler) TakePicture(ctx context.Context, printer, event, job string, lanOnly bool) error {
	p, ok := h.st.Printer(printer)
	if !ok || !p.Online {
		return fmt.Errorf("printer %s is gone or offline", printer)
	}
	about := picture.Picture{Event: event, Job: job}
	var w work
	switch {
	case h.lanCamera(p):
		w = h.lanSnapshot(p, about)
	case lanOnly || h.cfg.NoCloud:
		return picture.ErrNoCamera
	default:
		c, _ := h.st.Cluster(p.Cluster)
		if resp := capable(c, "snapshot"); resp != nil {
			return picture.ErrNoCamera
		}
		var resp *Response
		if w, resp = h.planSnapshot(p, about); resp != nil {
			return picture.ErrNoCamera
		}
	}
	var final *Response
	w(ctx, func(r *Response) {
		if r.Status != "pending" {
			final = r
		}
	})
	if final != nil && final.Error != nil {
		return fmt.Errorf("%s: %s", final.Error.Code, final.Error.Message)
	}
	return nil
}

// picture hands a picture to Pictures, when set.
func (h *Handler) picture(ctx context.Context, p picture.Picture) {
	if h.cfg.Pictures != nil {
		h.cfg.Pictures.Picture(ctx, p)
	}
}

func (h *Handler) planCluster(c state.Cluster, req Request) (work, *Response) {
	if req.Job == "" {
		return nil, fail(CodeBadRequest, fmt.Sprintf(`%s needs "job": a print job uuid`, req.Action))
	}
	if req.Action == "reprint" {
		i := slices.IndexFunc(c.RecentlyCompleted, func(j state.CompletedJob) bool { return j.UUID == req.Job })
		if i < 0 {
			return nil, fail(CodeNotFound, fmt.Sprintf("job %s is not among the cluster's recently completed jobs", req.Job))
		}
		return h.queueJob(c.ClusterID, func(ctx context.Context) (*connect.PrintRequest, error) {
			return h.cloud.Reprint(ctx, c.ClusterID, c.ClusterID, req.Job)
		}), nil
	}
	i := slices.IndexFunc(c.Queue, func(j state.QueuedJob) bool { return j.UUID == req.Job })
	if i < 0 {
		return nil, fail(CodeNotFound, fmt.Sprintf("job %s is not in the cluster's queue", req.Job))
	}
	if c.ClusterID == "" {
		var onLAN, paired bool
		if h.cfg.LAN != nil {
			onLAN, paired = h.cfg.LAN.Reach(c.ID)
		}
		switch {
		case !paired:
			return nil, fail(CodeUnauthorized, fmt.Sprintf("cluster %s is read on the LAN only and the bridge is not paired "+
				"with its host: %s", c.FriendlyName, pairHint(c.ID)))
		case !onLAN:
			return nil, fail(CodeConflict, fmt.Sprintf("the host of %s does not answer on the LAN", c.FriendlyName))
		}
		return h.lanWork(func(ctx context.Context) error { return h.cfg.LAN.QueueAction(ctx, c.ID, req.Job, req.Action) },
			c.ID, map[string]any{"job": req.Job}, nil), nil
	}
	action, body := req.Action, (*connect.PrintJobActionBody)(nil)
	if action == "move_to_top" {
		zero := 0
		action, body = "move", &connect.PrintJobActionBody{List: "queued", ToPosition: &zero}
	}
	return func(ctx context.Context, answer func(*Response)) {
		st, err := h.cloud.PrintJobAction(ctx, c.ClusterID, req.Job, action, body)
		h.follow(ctx, c.ClusterID, st, err, answer, nil, func(final *connect.ActionStatus) any {
			return map[string]any{"action_id": final.ActionID, "job": req.Job}
		})
	}, nil
}

func (h *Handler) planBridge(req Request) (work, *Response) {
	if req.Action == "refresh" {
		id, resp := h.optionalCluster(req.Cluster)
		if resp != nil {
			return nil, resp
		}
		return func(ctx context.Context, answer func(*Response)) {
			h.refresh.Refresh(id)
			answer(&Response{Status: "ok"})
		}, nil
	}
	if req.Cluster == "" {
		return nil, fail(CodeBadRequest, fmt.Sprintf(`%s needs "cluster": a cluster id`, req.Action))
	}
	c, ok := h.st.Cluster(req.Cluster)
	if !ok {
		return nil, fail(CodeNotFound, fmt.Sprintf("no cluster %q", req.Cluster))
	}
	switch req.Action {
	case "print":
		if req.JobID == "" {
			return nil, fail(CodeBadRequest, `print needs "job_id": the Digital Factory library job id`)
		}
		if !c.Online {
			return nil, fail(CodeConflict, fmt.Sprintf("cluster %s is offline", c.FriendlyName))
		}
		return h.queueJob(c.ClusterID, func(ctx context.Context) (*connect.PrintRequest, error) {
			return h.cloud.Print(ctx, c.ClusterID, req.JobID)
		}), nil
	default: // maintenance_done
		tasks := req.Tasks
		if len(tasks) == 0 {
			for _, m := range c.Maintenance {
				if m.Due {
					tasks = append(tasks, m.Code)
				}
			}
			if len(tasks) == 0 {
				return nil, fail(CodeConflict, "no maintenance task is due on this cluster")
			}
		}
		for _, code := range tasks {
			if !slices.ContainsFunc(c.Maintenance, func(m state.MaintenanceTask) bool { return m.Code == code }) {
				return nil, fail(CodeNotFound, fmt.Sprintf("no pending maintenance task %q", code))
			}
		}
		return func(ctx context.Context, answer func(*Response)) {
			if err := h.cloud.CompleteMaintenance(ctx, c.ClusterID, tasks); err != nil {
				answer(cloudFailure(err, h.now()))
				return
			}
			h.refresh.RefreshMaintenance(c.ClusterID)
			answer(&Response{Status: "ok", Data: map[string]any{"tasks": tasks}})
		}, nil
	}
}

// optionalCluster resolves a request's optional "cluster" (topic id or
// cloud id) to the cloud id; "" when none is named.
func (h *Handler) optionalCluster(key string) (string, *Response) {
	if key == "" {
		return "", nil
	}
	c, ok := h.st.Cluster(key)
	if !ok {
		return "", fail(CodeNotFound, fmt.Sprintf("no cluster %q", key))
	}
	return c.ClusterID, nil
}

func nonEmpty(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// queueJob is the work of a request that queues a job (print, reprint):
// the cloud answers at once with the new job.
func (h *Handler) queueJob(clusterID string, send func(context.Context) (*connect.PrintRequest, error)) work {
	return func(ctx context.Context, answer func(*Response)) {
		pr, err := send(ctx)
		if err != nil {
			answer(cloudFailure(err, h.now()))
			return
		}
		h.refresh.Refresh(clusterID)
		answer(&Response{Status: "ok", Data: map[string]any{"job": pr.JobInstanceUUID, "status": pr.Status}})
	}
}

// follow answers an asynchronous action: pending at once, then ok or
// error when its status settles, or timeout. With shown, the action is
// also done (ok) as soon as the state shows its effect. It reports
// whether the answer was ok.
func (h *Handler) follow(ctx context.Context, clusterID string, st *connect.ActionStatus, err error, answer func(*Response),
	shown func() bool, data func(*connect.ActionStatus) any) bool {
	if err != nil {
		answer(cloudFailure(err, h.now()))
		return false
	}
	// The cloud took it: show the change as soon as it happens.
	h.refresh.Refresh(clusterID)
	answer(&Response{Status: "pending", Data: map[string]any{"action_id": st.ActionID}})
	deadline := time.NewTimer(h.cfg.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(h.cfg.PollEvery)
	defer tick.Stop()
	wait := tick.C
	for !st.Settled() {
		var change <-chan struct{}
		if shown != nil {
			if change = h.stateChange(); shown() {
				answer(&Response{Status: "ok", Data: data(st)})
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			answer(fail(CodeTimeout, fmt.Sprintf("action %s still %s after %s", st.ActionID, st.Status, h.cfg.Timeout)))
			return false
		case <-change:
			continue
		case <-wait:
			wait = tick.C
		}
		next, err := h.cloud.ActionStatus(ctx, clusterID, st.ActionID)
		if err != nil {
			var ae *connect.APIError
			switch k := connect.KindOf(err); {
			case k == connect.KindRateLimited && errors.As(err, &ae) && ae.RetryAfter > 0:
				// The account is paused: ask again when the pause ends.
				wait = time.After(ae.RetryAfter)
				continue
			case connect.Retryable(err):
				continue // keep trying until the deadline
			}
			answer(cloudFailure(err, h.now()))
			return false
		}
		st = next
	}
	if st.Status != connect.ActionSuccess {
		answer(fail(CodeActionFailed, fmt.Sprintf("the cloud reports action %s as %s", st.ActionID, st.Status)))
		return false
	}
	answer(&Response{Status: "ok", Data: data(st)})
	return true
}

// cloudFailure maps a Connect error to an answer with a stable code and
// the cloud's own title.
func cloudFailure(err error, now time.Time) *Response {
	var ae *connect.APIError
	if !errors.As(err, &ae) {
		return fail(CodeCloudError, err.Error())
	}
	if ae.Kind == connect.KindRateLimited && ae.RetryAfter > 0 {
		until := now.Add(ae.RetryAfter).UTC().Truncate(time.Second).Add(time.Second)
		r := fail(CodeRateLimited, "the cloud rate-limits this account until "+until.Format(time.RFC3339)+"; try again then")
		r.Data = map[string]any{"retry_at": until}
		return r
	}
	msg := ae.Title
	if ae.Detail != "" {
		msg += ": " + ae.Detail
	}
	if ae.Code != "" {
		msg += " (" + ae.Code + ")"
	}
	switch ae.Kind {
	case connect.KindConflict:
		return fail(CodeConflict, msg)
	case connect.KindNotFound:
		return fail(CodeNotFound, msg)
	case connect.KindAuth:
		return fail(CodeUnauthorized, msg)
	case connect.KindRateLimited:
		return fail(CodeRateLimited, msg)
	case connect.KindNetwork:
		return fail(CodeTimeout, "the cloud did not answer")
	}
	return fail(CodeCloudError, msg)
}

func fail(code, msg string) *Response {
	return &Response{Status: "error", Error: &ErrorBody{Code: code, Message: msg}}
}

func (h *Handler) answer(ctx context.Context, t target, req Request, r *Response) {
	r.Action = req.Action
	if r.Action == "" {
		r.Action = t.action
	}
	r.Transaction = req.Transaction
	if h.cfg.OnAnswer != nil && r.Status != "pending" {
		result := r.Status
		if r.Error != nil {
			result = r.Error.Code
		}
		h.cfg.OnAnswer(KnownAction(r.Action), result)
	}
	if len(r.Transaction) == 0 {
		r.Transaction = json.RawMessage("null")
	}
	b, err := json.Marshal(r)
	if err != nil {
		h.log.Error().Err(err).Msg("encode answer")
		return
	}
	// Answers go to the caller on the response topic; the log keeps
	// quiet unless asked, so a misfiring flow cannot flood it.
	ev := h.log.Debug()
	if r.Error != nil {
		ev = ev.Str("code", r.Error.Code)
	}
	ev.Str("topic", t.response).Str("action", r.Action).Str("transaction", string(r.Transaction)).Str("status", r.Status).
		Msg("command answered")
	if h.cfg.OnAnswered != nil {
		h.cfg.OnAnswered(t.topic, *r)
	}
	if t.reply != nil {
		t.reply(*r)
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.pub.Publish(pctx, bus.Message{Topic: t.response, Payload: b}); err != nil {
		h.log.Warn().Err(err).Str("topic", t.response).Msg("answer not delivered")
	}
}
