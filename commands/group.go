package commands

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/group"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Group is this bridge's place in a group of bridges; *group.Group is
// one. Every member receives every command; only the owner of its target
// carries it out.
type Group interface {
	Owns(key string) bool
	// Session names this process in the group, LiveSessions the live
	// members' processes: a claim is a process's, and a member restarted
	// under its id does not finish what the earlier process claimed.
	Session() string
	LiveSessions() []string
	// Joined reports whether this member is connected and has joined.
	Joined() bool
}

// AckedPublisher sends a message and waits for the broker to take it;
// *mqttpub.Client is one.
type AckedPublisher interface {
	PublishAcked(ctx context.Context, m bus.Message) error
}

// maxHeld bounds the commands a member keeps for targets it does not own.
const maxHeld = 4096

// heldCommand is a command for a target another member owns, kept until
// its answer is seen. Every member live when it arrived holds it; if its
// owner goes before claiming it, one of those carries it out, and if the
// member that claimed it goes before answering, one of those says so.
type heldCommand struct {
	in        bus.Inbound
	key       string // the owner key of its target
	response  string
	action    string
	tx        string // the transaction, compact JSON; "" without one
	at        time.Time
	holders   []string // the Sessions live when it arrived
	owner     string   // the Session that owned it then ("" none: a member joining)
	claimedBy string
	mine      int // looks in a row this member was the one to act
}

// claim is a member's word that it took a command on.
type claim struct {
	Member      string          `json:"member"` // its Session
	Response    string          `json:"response"`
	Action      string          `json:"action"`
	Transaction json.RawMessage `json:"transaction"`
}

// ownerKey is what decides which member owns t: its printer's or
// cluster's key, or for everything else (and a target no one knows, to be
// answered not_found once) the account's.
func (h *Handler) ownerKey(t target) string {
	switch t.kind {
	case topics.Printer:
		if p, ok := h.st.Printer(t.id); ok {
			return p.OwnerKey()
		}
	case topics.Cluster:
		if c, ok := h.st.Cluster(t.id); ok {
			return c.OwnerKey()
		}
	}
	return group.AccountKey
}

// mine reports whether this bridge carries out commands for t: always
// alone, in a group when it owns t.
func (h *Handler) mine(t target) bool {
	return h.cfg.Group == nil || h.cfg.Group.Owns(h.ownerKey(t))
}

// hold keeps a command another member owns until its answer shows. The
// clearing of a retained command is not one.
func (h *Handler) hold(t target, in bus.Inbound) {
	if len(bytes.TrimSpace(in.Payload)) == 0 && !in.Truncated && t.kind != topics.Bridge {
		return
	}
	in.Payload = bytes.Clone(in.Payload)
	action := ActionOf(in.Payload)
	if t.kind == topics.Bridge {
		action = t.action
	}
	e := &heldCommand{in: in, key: h.ownerKey(t), response: t.response, action: action,
		tx: compact(TransactionOf(in.Payload)), at: h.now(), holders: h.cfg.Group.LiveSessions()}
	e.owner = responsible(e.key, e.holders)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held) >= maxHeld {
		h.held = h.held[1:]
		if !h.heldFull {
			h.heldFull = true
			h.log.Warn().Int("held", maxHeld).Msg("too many commands held for other members; forgetting the oldest")
		}
	}
	h.held = append(h.held, e)
}

// claimFor publishes this member's claim on a command it takes on, and
// waits for the broker to have it: a member that outlives this one then
// never carries the command out again. Nil alone.
func (h *Handler) claimFor(ctx context.Context, t target, req Request) *Response {
	if h.cfg.Group == nil || t.reply != nil || h.cfg.Acked == nil {
		return nil
	}
	b, _ := json.Marshal(claim{Member: h.cfg.Group.Session(), Response: t.response, Action: req.Action,
		Transaction: req.Transaction})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.cfg.Acked.PublishAcked(cctx, bus.Message{Topic: h.cfg.Tree.BridgeClaim(memberOf(h.cfg.Group.Session())),
		Payload: b}); err != nil {
		return fail(CodeBusy, "the bridge could not reach the broker to take this command on; try again")
	}
	return nil
}

// Filters the group's commands need besides Filters: the answers and
// claims of every member.
func (h *Handler) GroupFilters() []string {
	return append(h.cfg.Tree.ResponseFilters(), h.cfg.Tree.BridgeClaims())
}

// Observed takes an answer or a claim any member published (GroupFilters):
// a held command answered is forgotten, one claimed is marked, and a
// command forwarded from the page gets its answers.
func (h *Handler) Observed(ctx context.Context, in bus.Inbound) {
	if len(in.Payload) == 0 || len(in.Payload) > MaxPayload || in.Truncated {
		return
	}
	a, ok := h.cfg.Tree.Parse(in.Topic)
	if !ok {
		return
	}
	if a.Kind == topics.Bridge && a.Verb == topics.Claims {
		var c claim
		if json.Unmarshal(in.Payload, &c) != nil || c.Member == "" {
			return
		}
		tx := compact(c.Transaction)
		h.mu.Lock()
		if e := h.findHeld(c.Response, c.Action, tx, false); e != nil {
			e.claimedBy = c.Member
		}
		h.mu.Unlock()
		return
	}
	var r Response
	if json.Unmarshal(in.Payload, &r) != nil || r.Status == "" {
		return
	}
	tx := compact(r.Transaction)
	h.mu.Lock()
	reply := h.forwarded[in.Topic+"\x00"+tx]
	if r.Status != "pending" {
		if e := h.findHeld(in.Topic, r.Action, tx, true); e != nil {
			h.held = deleteHeld(h.held, e)
		}
		delete(h.forwarded, in.Topic+"\x00"+tx)
	}
	h.mu.Unlock()
	if reply != nil {
		reply(r)
	}
}

// findHeld is the oldest held command on the response topic with the
// action and transaction; claimed ones too when any. Called with h.mu held.
func (h *Handler) findHeld(response, action, tx string, any bool) *heldCommand {
	for _, e := range h.held {
		if e.response == response && e.tx == tx && (e.action == action || action == "" || e.action == "") &&
			(any || e.claimedBy == "") {
			return e
		}
	}
	return nil
}

func deleteHeld(list []*heldCommand, e *heldCommand) []*heldCommand {
	for i, x := range list {
		if x == e {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// RunGroup looks after the held commands until ctx ends (see takeOver).
// Alone it returns at once.
func (h *Handler) RunGroup(ctx context.Context) {
	if h.cfg.Group == nil {
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.takeOver(ctx)
	}
}

// takeOver is one look at the held commands. One whose claimant is gone
// is answered interrupted (it may have reached the cloud: never sent
// again); one whose owner went before claiming it is carried out (within
// COMMAND_TIMEOUT, else answered timeout). Of the members that hold it,
// the one the group's rule picks among those still live does it, after
// two looks in a row: the claims and answers the member that left
// published before its will have arrived by then. A command whose owner
// or claimant lives is theirs to answer; it is forgotten after the
// timeout.
func (h *Handler) takeOver(ctx context.Context) {
	if !h.cfg.Group.Joined() {
		return
	}
	live, me := h.cfg.Group.LiveSessions(), h.cfg.Group.Session()
	now := h.now()
	var run, interrupted, expired []*heldCommand
	h.mu.Lock()
	keep := h.held[:0]
	for _, e := range h.held {
		theirs := e.claimedBy != "" && slices.Contains(live, e.claimedBy) ||
			e.claimedBy == "" && e.owner != "" && e.owner != me && slices.Contains(live, e.owner)
		if theirs || e.claimedBy == me || responsible(e.key, intersect(e.holders, live)) != me {
			e.mine = 0
			if now.Sub(e.at) < h.cfg.Timeout+time.Minute {
				keep = append(keep, e)
			}
			continue
		}
		if e.mine++; e.mine < 2 {
			keep = append(keep, e)
			continue
		}
		switch {
		case e.claimedBy != "":
			interrupted = append(interrupted, e)
		case now.Sub(e.at) > h.cfg.Timeout:
			expired = append(expired, e)
		default:
			run = append(run, e)
		}
	}
	clear(h.held[len(keep):])
	h.held = keep
	h.mu.Unlock()
	for _, e := range interrupted {
		t, _ := h.parseTopic(e.in.Topic)
		h.answer(ctx, t, Request{Action: e.action, Transaction: json.RawMessage(e.tx)}, fail(CodeInterrupted,
			"the bridge carrying it out left its group before the action settled; it may have taken effect: "+
				"look at the state before sending it again"))
	}
	for _, e := range expired {
		t, _ := h.parseTopic(e.in.Topic)
		h.answer(ctx, t, Request{Action: e.action, Transaction: json.RawMessage(e.tx)}, fail(CodeTimeout,
			"the bridge that owned this target left its group, and the command is older than COMMAND_TIMEOUT"))
	}
	for _, e := range run {
		h.log.Info().Str("topic", e.in.Topic).Str("action", e.action).
			Msg("carrying out a command the member that left did not")
		h.handle(ctx, e.in, true)
	}
}

// Disconnected forgets the held commands when this member loses the
// broker: the answers and claims it missed meanwhile would make it act on
// commands already answered.
func (h *Handler) Disconnected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.held)
	h.held = h.held[:0]
}

// responsible is the Session among sessions that owns key by the group's
// rule (over their member ids); "" when sessions is empty.
func responsible(key string, sessions []string) string {
	ids := make([]string, len(sessions))
	for i, s := range sessions {
		ids[i] = memberOf(s)
	}
	id := group.OwnerAmong(key, ids)
	for _, s := range sessions {
		if memberOf(s) == id {
			return s
		}
	}
	return ""
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// memberOf is the member id of a Session.
func memberOf(session string) string {
	id, _, _ := strings.Cut(session, "@")
	return id
}

// forward sends a command from the page that another member owns over
// MQTT, with a transaction of its own when it has none, and hands its
// answers to reply.
func (h *Handler) forward(ctx context.Context, t target, payload []byte, reply func(Response)) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		if t.kind != topics.Bridge || len(bytes.TrimSpace(payload)) > 0 {
			reply(*fail(CodeBadRequest, "the command is not a JSON object"))
			return
		}
		fields = map[string]json.RawMessage{}
	}
	if len(fields["transaction"]) == 0 || string(fields["transaction"]) == "null" {
		b := make([]byte, 8)
		rand.Read(b)
		fields["transaction"], _ = json.Marshal("page-" + hex.EncodeToString(b))
	}
	body, _ := json.Marshal(fields)
	key := t.response + "\x00" + compact(fields["transaction"])
	h.mu.Lock()
	if len(h.forwarded) >= maxHeld {
		h.mu.Unlock()
		reply(*fail(CodeBusy, "too many commands in progress; try again"))
		return
	}
	h.forwarded[key] = reply
	h.mu.Unlock()
	h.pub.Publish(ctx, bus.Message{Topic: t.topic, Payload: body})
	h.wg.Go(func() {
		timer := time.NewTimer(h.cfg.Timeout + 10*time.Second)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
		h.mu.Lock()
		_, waiting := h.forwarded[key]
		delete(h.forwarded, key)
		h.mu.Unlock()
		if waiting && ctx.Err() == nil {
			reply(*fail(CodeTimeout, "the bridge that owns this printer did not answer in time"))
		}
	})
}

// compact is a transaction as compact JSON, so that the same value
// written two ways matches; "" for none.
func compact(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
