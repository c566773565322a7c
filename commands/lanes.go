package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Commands to one target (a printer, a cluster, the workspace, the
// cluster or printer a bridge request names) run one at a time, in the
// order they arrive: their lane. A different action waits for the one
// under way and is checked against the state when its turn comes, so a
// resume sent right after a pause runs once the pause shows. The same
// action sent again while one is under way or waiting joins it and gets
// its final answer: a flood of pauses reaches the cloud once.
const (
	// maxWaiting bounds the commands waiting in one lane; beyond it a
	// command is answered busy.
	maxWaiting = 16
	// maxJoined bounds the commands joined to one; beyond it busy.
	maxJoined = 4096
)

// command is one accepted command in its lane.
type command struct {
	t       target
	req     Request
	in      bus.Inbound
	lane    string
	sig     string // what joins it: the action and its fields
	arrived time.Time
	joined  []Request // answered with its final answer, each with its own transaction
	final   *Response // its final answer, once given
}

// lane is the commands of one target: queue[0] runs, the rest wait.
type lane struct {
	queue []*command
	turn  chan struct{} // closed when queue[0] changes
}

// laneOf is the target a command orders behind, from the topic and the
// request alone (the state is read when its turn comes); "" for commands
// that keep no order (queries).
func laneOf(t target, req Request) string {
	switch t.kind {
	case topics.Printer:
		return "printer:" + t.id
	case topics.Cluster:
		return "cluster:" + t.id
	case topics.Workspace:
		return "workspace"
	}
	switch req.Action {
	case "maintenance_done", "print":
		return "cluster:" + req.Cluster
	case "pair":
		return "pair:" + req.Printer
	case "upload_material", "register", "share_all", "delete_team":
		return "bridge:" + req.Action
	}
	return ""
}

// signature is what makes two commands the same: action and fields.
func signature(req Request) string {
	req.Transaction = nil
	req.fields = nil
	b, _ := json.Marshal(req)
	return string(b)
}

// enqueue takes a command into its lane: it joins the last command there
// when that is the same (joined true, with that command's final answer
// when it has one already), or queues behind it. Called with h.mu held.
func (h *Handler) enqueue(c *command) (joined bool, final *Response, refused *Response) {
	l := h.lanes[c.lane]
	if l != nil {
		last := l.queue[len(l.queue)-1]
		if last.sig == c.sig {
			if last.final != nil {
				return true, last.final, nil
			}
			if len(last.joined) >= maxJoined {
				return false, nil, fail(CodeBusy, "too many identical commands waiting; try again")
			}
			last.joined = append(last.joined, c.req)
			return true, nil, nil
		}
		if len(l.queue) > maxWaiting {
			return false, nil, fail(CodeBusy, fmt.Sprintf("%d commands already wait for this target; try again", maxWaiting))
		}
	}
	if h.running >= h.cfg.MaxInFlight {
		return false, nil, fail(CodeBusy, "too many commands in progress; try again")
	}
	if l == nil {
		l = &lane{turn: make(chan struct{})}
		h.lanes[c.lane] = l
	}
	l.queue = append(l.queue, c)
	h.running++
	h.wg.Add(1)
	return false, nil, nil
}

// awaitTurn waits until c runs first in its lane, or COMMAND_TIMEOUT
// after it arrived (false: answered timeout, not carried out).
func (h *Handler) awaitTurn(ctx context.Context, c *command) bool {
	timer := time.NewTimer(h.cfg.Timeout - h.now().Sub(c.arrived))
	defer timer.Stop()
	for {
		h.mu.Lock()
		l := h.lanes[c.lane]
		first, turn := l.queue[0] == c, l.turn
		ahead := l.queue[0].req.Action
		h.mu.Unlock()
		if first {
			return true
		}
		select {
		case <-turn:
		case <-ctx.Done():
			return false
		case <-timer.C:
			h.respond(ctx, c, fail(CodeTimeout, fmt.Sprintf("waited %s for %s to finish on this target; nothing sent",
				h.cfg.Timeout, ahead)))
			return false
		}
	}
}

// leave takes c out of its lane and hands the turn on.
func (h *Handler) leave(c *command) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.lanes[c.lane]
	i := slices.Index(l.queue, c)
	l.queue = slices.Delete(l.queue, i, i+1)
	switch {
	case len(l.queue) == 0:
		delete(h.lanes, c.lane)
		close(l.turn)
	case i == 0:
		close(l.turn)
		l.turn = make(chan struct{})
	}
	h.running--
	h.wg.Done()
}

// respond answers c, and with a final answer also every command joined
// to it (each with its own transaction).
func (h *Handler) respond(ctx context.Context, c *command, r *Response) {
	var joined []Request
	if r.Status != "pending" {
		h.mu.Lock()
		// A copy: answer sets r's action and transaction.
		c.final, joined, c.joined = copyOf(r), c.joined, nil
		h.mu.Unlock()
	}
	h.answer(ctx, c.t, c.req, r)
	for _, req := range joined {
		h.answer(ctx, c.t, req, copyOf(r))
	}
}

// copyOf is a copy of r to answer another command with (answer sets its
// action and transaction).
func copyOf(r *Response) *Response {
	c := *r
	return &c
}

// run carries out c when its turn comes: checked against the state then,
// confirmed not retained, then its work.
func (h *Handler) run(ctx context.Context, c *command) {
	defer h.leave(c)
	if !h.awaitTurn(ctx, c) {
		return
	}
	w, resp := h.plan(c.t, c.req)
	if resp != nil {
		h.respond(ctx, c, resp)
		return
	}
	if resp := h.notRetained(ctx, c.t, c.in); resp != nil {
		// The commands joined to it were live, yet nothing was carried out.
		busy := fail(CodeBusy, "the command this one joined was not carried out; send it again")
		h.mu.Lock()
		joined := c.joined
		c.joined, c.final = nil, busy
		h.mu.Unlock()
		h.answer(ctx, c.t, c.req, resp)
		for _, req := range joined {
			h.answer(ctx, c.t, req, copyOf(busy))
		}
		return
	}
	w(ctx, func(r *Response) { h.respond(ctx, c, r) })
}

// StateChanged tells the handler that states changed: actions under way
// look whether the state shows their effect. It never blocks.
func (h *Handler) StateChanged() {
	h.mu.Lock()
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

// stateChange is closed at the next StateChanged.
func (h *Handler) stateChange() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// shown is whether the state shows a printer command's effect on job, or
// can no longer show it (the job is gone or over, the printer offline).
func (h *Handler) shown(printer, action, job string) func() bool {
	return func() bool {
		p, ok := h.st.Printer(printer)
		return !ok || !p.Online || state.JobActionShown(action, job, p.Job)
	}
}

// holdUntilShown keeps an action that succeeded under way (its lane
// busy) until the state shows its effect, at most until deadline: the
// next command of its lane is then checked against a state that shows it.
func (h *Handler) holdUntilShown(ctx context.Context, deadline time.Time, shown func() bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		change := h.stateChange()
		if shown() {
			return
		}
		select {
		case <-change:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
