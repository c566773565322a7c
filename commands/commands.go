// Package commands turns MQTT command messages into Connect printer and print-job actions and answers each one.
package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
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
}

// State is the bridge's current view, by topic id.
type State interface {
	Printer(id string) (state.Printer, bool)
	Cluster(id string) (state.Cluster, bool)
}

// Publisher sends answers (and snapshot URLs).
type Publisher interface {
	Publish(ctx context.Context, msgs ...mqttpub.Message) error
}

// Refresher asks the poller to poll a cluster now and fast for a while.
type Refresher interface {
	Refresh(clusterID string)
}

// Actions by target.
var (
	PrinterActions = []string{"pause", "resume", "abort", "snapshot"}
	ClusterActions = []string{"move_to_top", "remove", "force", "reprint"}
	BridgeActions  = []string{"refresh", "maintenance_done", "print"}
)

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
	// OnAnswer, when set, is told of every final answer: the action and
	// "ok" or the error code, for metrics.
	OnAnswer func(action, result string)
}

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

	mu       sync.Mutex
	seenTx   map[string]time.Time
	retained map[string]bool
	running  int
	wg       sync.WaitGroup
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
	return &Handler{cfg: cfg, cloud: cloud, st: st, pub: pub, refresh: refresh, now: time.Now,
		log: log.With().Str("component", "commands").Logger(), seenTx: map[string]time.Time{}, retained: map[string]bool{}}
}

// Filters are the topics to subscribe Handle to.
func (h *Handler) Filters() []string {
	b := h.cfg.Tree.Base
	return []string{b + "/printers/+/set", b + "/clusters/+/set", b + "/bridge/request/+"}
}

// Wait waits for commands in progress; cancel their context first.
func (h *Handler) Wait() { h.wg.Wait() }

// target is what a command topic addresses.
type target struct {
	kind     string // printer, cluster, bridge
	id       string // printer or cluster topic id
	action   string // bridge requests carry it in the topic
	response string
}

func (h *Handler) parseTopic(topic string) (target, bool) {
	rest, ok := strings.CutPrefix(topic, h.cfg.Tree.Base+"/")
	if !ok {
		return target{}, false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 3 && parts[0] == "printers" && parts[2] == "set" && parts[1] != "":
		return target{kind: "printer", id: parts[1], response: h.cfg.Tree.PrinterResponse(parts[1])}, true
	case len(parts) == 3 && parts[0] == "clusters" && parts[2] == "set" && parts[1] != "":
		return target{kind: "cluster", id: parts[1], response: h.cfg.Tree.ClusterResponse(parts[1])}, true
	case len(parts) == 3 && parts[0] == "bridge" && parts[1] == "request" && parts[2] != "":
		return target{kind: "bridge", action: parts[2], response: h.cfg.Tree.BridgeResponse(parts[2])}, true
	}
	return target{}, false
}

// Handle takes one message from a command topic and answers it.
func (h *Handler) Handle(ctx context.Context, in mqttpub.Inbound) {
	t, ok := h.parseTopic(in.Topic)
	if !ok {
		return
	}
	if in.Retained {
		// A retained command would replay on every reconnect: answer it
		// once and never carry it out.
		key := in.Topic + "\x00" + string(in.Payload)
		h.mu.Lock()
		seen := h.retained[key]
		h.retained[key] = true
		h.mu.Unlock()
		if !seen && len(in.Payload) > 0 {
			h.answer(ctx, t, Request{Transaction: TransactionOf(in.Payload)}, fail(CodeRetained,
				"retained commands are never executed; publish commands without the retain flag (and clear this one with an empty retained message)"))
		}
		return
	}
	var req Request
	var err error
	switch {
	case t.kind == "bridge" && len(bytes.TrimSpace(in.Payload)) == 0:
		req.Action = t.action // the topic says it all
	case t.kind == "bridge":
		req, err = Parse(in.Payload)
		if errors.Is(err, errMissingAction) {
			err = nil
		}
		if err == nil && req.Action != "" && req.Action != t.action {
			err = fmt.Errorf("action %q does not match the request topic %q", req.Action, t.action)
		}
		req.Action = t.action
	default:
		req, err = Parse(in.Payload)
	}
	if err != nil {
		if req.Transaction == nil {
			req.Transaction = TransactionOf(in.Payload)
		}
		h.answer(ctx, t, req, fail(CodeBadRequest, err.Error()))
		return
	}
	if resp := h.admit(t, req); resp != nil {
		h.answer(ctx, t, req, resp)
		return
	}
	job, resp := h.plan(t, req)
	if resp != nil {
		h.answer(ctx, t, req, resp)
		return
	}
	h.mu.Lock()
	if h.running >= h.cfg.MaxInFlight {
		h.mu.Unlock()
		h.answer(ctx, t, req, fail(CodeBusy, "too many commands in progress; try again"))
		return
	}
	h.running++
	h.wg.Add(1)
	h.mu.Unlock()
	h.log.Info().Str("topic", in.Topic).Str("action", req.Action).Msg("command accepted")
	go func() {
		defer func() {
			h.mu.Lock()
			h.running--
			h.mu.Unlock()
			h.wg.Done()
		}()
		job(ctx, func(r *Response) { h.answer(ctx, t, req, r) })
	}()
}

// admit applies the checks that need no state: known action, read-only,
// allowed list, duplicate transaction.
func (h *Handler) admit(t target, req Request) *Response {
	var known []string
	switch t.kind {
	case "printer":
		known = PrinterActions
	case "cluster":
		known = ClusterActions
	default:
		known = BridgeActions
	}
	if !slices.Contains(known, req.Action) {
		return fail(CodeUnknownAction, fmt.Sprintf("%s commands are %s", t.kind, strings.Join(known, ", ")))
	}
	if h.cfg.ReadOnly && req.Action != "refresh" {
		return fail(CodeReadOnly, "the bridge runs with READ_ONLY=true; nothing was sent to the cloud")
	}
	if len(h.cfg.AllowedActions) > 0 && !slices.Contains(h.cfg.AllowedActions, req.Action) {
		return fail(CodeNotAllowed, fmt.Sprintf("action %s is not in ALLOWED_ACTIONS", req.Action))
	}
	if len(req.Transaction) > 0 {
		key := t.response + "\x00" + string(req.Transaction)
		now := h.now()
		h.mu.Lock()
		defer h.mu.Unlock()
		for k, at := range h.seenTx {
			if now.Sub(at) > h.cfg.DedupeWindow {
				delete(h.seenTx, k)
			}
		}
		if _, dup := h.seenTx[key]; dup {
			return fail(CodeDuplicate, "this transaction was already received; it is not sent to the cloud again")
		}
		h.seenTx[key] = now
	}
	return nil
}

// work carries out an admitted command and reports through answer; it may
// answer pending first.
type work func(ctx context.Context, answer func(*Response))

// plan checks a command against the current state, without calling the
// cloud, and returns the work to do.
func (h *Handler) plan(t target, req Request) (work, *Response) {
	switch t.kind {
	case "printer":
		p, ok := h.st.Printer(t.id)
		if !ok {
			return nil, fail(CodeNotFound, fmt.Sprintf("no printer %q", t.id))
		}
		return h.planPrinter(p, req)
	case "cluster":
		c, ok := h.st.Cluster(t.id)
		if !ok {
			return nil, fail(CodeNotFound, fmt.Sprintf("no cluster %q", t.id))
		}
		return h.planCluster(c, req)
	}
	return h.planBridge(req)
}

// jobActions maps our printer commands to Connect print-job actions and
// the job states that allow them.
var jobActions = map[string]struct {
	connect string
	allowed []string
}{
	"pause":  {"pause", []string{"printing"}},
	"resume": {"print", []string{"paused"}},
	"abort":  {"abort", []string{"pre_print", "printing", "pausing", "paused", "resuming"}},
}

func (h *Handler) planPrinter(p state.Printer, req Request) (work, *Response) {
	if !p.Online {
		return nil, fail(CodeConflict, fmt.Sprintf("printer %s is offline", p.FriendlyName))
	}
	if req.Action == "snapshot" {
		if p.UUID == "" {
			return nil, fail(CodeConflict, "this printer reports no GUID (MakerBot); the cloud cannot address it")
		}
		return func(ctx context.Context, answer func(*Response)) {
			st, err := h.cloud.PrinterAction(ctx, p.ClusterID, p.UUID, "get_webcam_snapshot", nil)
			h.follow(ctx, p.ClusterID, st, err, answer, func(final *connect.ActionStatus) any {
				url := final.ImageURL()
				if url != "" {
					b, _ := json.Marshal(map[string]any{"url": url, "taken_at": h.now().UTC().Truncate(time.Second)})
					pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					h.pub.Publish(pctx, mqttpub.Message{Topic: h.cfg.Tree.PrinterSnapshot(p.ID), Payload: b, Retain: true})
				}
				return map[string]any{"action_id": final.ActionID, "image_url": url}
			})
		}, nil
	}
	ja := jobActions[req.Action]
	if p.Job == nil {
		return nil, fail(CodeConflict, fmt.Sprintf("printer %s has no job to %s", p.FriendlyName, req.Action))
	}
	if !slices.Contains(ja.allowed, p.Job.Status) {
		return nil, fail(CodeConflict, fmt.Sprintf("cannot %s a job that is %s (allowed while %s)", req.Action, p.Job.Status, strings.Join(ja.allowed, ", ")))
	}
	job := p.Job.UUID
	return func(ctx context.Context, answer func(*Response)) {
		st, err := h.cloud.PrintJobAction(ctx, p.ClusterID, job, ja.connect, nil)
		h.follow(ctx, p.ClusterID, st, err, answer, func(final *connect.ActionStatus) any {
			return map[string]any{"action_id": final.ActionID, "job": job}
		})
	}, nil
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
	action, body := req.Action, (*connect.PrintJobActionBody)(nil)
	if action == "move_to_top" {
		zero := 0
		action, body = "move", &connect.PrintJobActionBody{List: "queued", ToPosition: &zero}
	}
	return func(ctx context.Context, answer func(*Response)) {
		st, err := h.cloud.PrintJobAction(ctx, c.ClusterID, req.Job, action, body)
		h.follow(ctx, c.ClusterID, st, err, answer, func(final *connect.ActionStatus) any {
			return map[string]any{"action_id": final.ActionID, "job": req.Job}
		})
	}, nil
}

func (h *Handler) planBridge(req Request) (work, *Response) {
	if req.Action == "refresh" {
		return func(ctx context.Context, answer func(*Response)) {
			h.refresh.Refresh(h.clusterID(req.Cluster))
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
				answer(cloudFailure(err))
				return
			}
			h.refresh.Refresh(c.ClusterID)
			answer(&Response{Status: "ok", Data: map[string]any{"tasks": tasks}})
		}, nil
	}
}

// queueJob is the work of a request that queues a job (print, reprint):
// the cloud answers at once with the new job.
func (h *Handler) queueJob(clusterID string, send func(context.Context) (*connect.PrintRequest, error)) work {
	return func(ctx context.Context, answer func(*Response)) {
		pr, err := send(ctx)
		if err != nil {
			answer(cloudFailure(err))
			return
		}
		h.refresh.Refresh(clusterID)
		answer(&Response{Status: "ok", Data: map[string]any{"job": pr.JobInstanceUUID, "status": pr.Status}})
	}
}

// clusterID resolves a bridge request's cluster (topic id or cloud id);
// "" refreshes every cluster.
func (h *Handler) clusterID(key string) string {
	if key == "" {
		return ""
	}
	if c, ok := h.st.Cluster(key); ok {
		return c.ClusterID
	}
	return key
}

// follow answers an asynchronous action: pending at once, then ok or
// error when its status settles, or timeout.
func (h *Handler) follow(ctx context.Context, clusterID string, st *connect.ActionStatus, err error, answer func(*Response), data func(*connect.ActionStatus) any) {
	if err != nil {
		answer(cloudFailure(err))
		return
	}
	// The cloud took it: show the change as soon as it happens.
	h.refresh.Refresh(clusterID)
	answer(&Response{Status: "pending", Data: map[string]any{"action_id": st.ActionID}})
	deadline := time.NewTimer(h.cfg.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(h.cfg.PollEvery)
	defer tick.Stop()
	for !st.Settled() {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			answer(fail(CodeTimeout, fmt.Sprintf("action %s still %s after %s", st.ActionID, st.Status, h.cfg.Timeout)))
			return
		case <-tick.C:
		}
		next, err := h.cloud.ActionStatus(ctx, clusterID, st.ActionID)
		if err != nil {
			if k := connect.KindOf(err); k == connect.KindNetwork || k == connect.KindServer || k == connect.KindRateLimited {
				continue // keep trying until the deadline
			}
			answer(cloudFailure(err))
			return
		}
		st = next
	}
	if st.Status != connect.ActionSuccess {
		answer(fail(CodeActionFailed, fmt.Sprintf("the cloud reports action %s as %s", st.ActionID, st.Status)))
		return
	}
	answer(&Response{Status: "ok", Data: data(st)})
}

// cloudFailure maps a Connect error to an answer with a stable code and
// the cloud's own title.
func cloudFailure(err error) *Response {
	var ae *connect.APIError
	if !errors.As(err, &ae) {
		return fail(CodeCloudError, err.Error())
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
		h.cfg.OnAnswer(r.Action, result)
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
	ev.Str("topic", t.response).Str("action", r.Action).Str("status", r.Status).Msg("command answered")
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.pub.Publish(pctx, mqttpub.Message{Topic: t.response, Payload: b}); err != nil {
		h.log.Warn().Err(err).Str("topic", t.response).Msg("answer not delivered")
	}
}
