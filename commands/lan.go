package commands

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// LAN is the printers' own API, for printers read on the LAN.
// *local.Poller is one.
type LAN interface {
	// Reach reports whether the printer or group with this key answers on
	// the LAN, and whether the bridge is paired with it.
	Reach(id string) (onLAN, paired bool)
	// JobState sends pause, print (resume) or abort to a printer.
	JobState(ctx context.Context, id, target string) error
	// QueueAction sends move_to_top, remove or force to a group's host.
	QueueAction(ctx context.Context, id, jobUUID, action string) error
	// Pair pairs with a printer (key or address); pending is called once
	// the printer shows the request.
	Pair(ctx context.Context, printer string, pending func()) error
	// Picture takes a picture with a printer's own camera.
	Picture(ctx context.Context, id string) ([]byte, error)
}

// LANActions are the commands that work without a cloud account
// (snapshot on a printer whose camera is read on the LAN).
var LANActions = []string{"pause", "resume", "abort", "snapshot", "move_to_top", "remove", "force", "refresh", "pair"}

// pairHint tells how to pair a printer, in answers and logs.
func pairHint(id string) string {
	return fmt.Sprintf(`pair the bridge with it: publish {"printer": %q} to bridge/request/pair, or run `+
		"`ultimaker2mqtt pair HOST`, and press ALLOW on the printer's screen", id)
}

// viaLAN decides whether a printer's job action goes over the LAN: yes
// when the printer answers there and is paired. A printer only the LAN
// sees (no cloud id) and not paired gets an answer saying how to pair.
func (h *Handler) viaLAN(p state.Printer) (bool, *Response) {
	var onLAN, paired bool
	if h.cfg.LAN != nil {
		onLAN, paired = h.cfg.LAN.Reach(p.ID)
	}
	switch {
	case onLAN && paired:
		return true, nil
	case p.ClusterID != "":
		return false, nil // the cloud knows it
	case !paired:
		return false, fail(CodeUnauthorized, fmt.Sprintf("printer %s is read on the LAN only and the bridge is not paired "+
			"with it: %s", nonEmpty(p.FriendlyName, p.ID), pairHint(p.ID)))
	}
	return false, fail(CodeConflict, fmt.Sprintf("printer %s does not answer on the LAN", nonEmpty(p.FriendlyName, p.ID)))
}

// lanFailure is the answer to a LAN action that failed, with the codes a
// cloud failure of the same kind gets.
func lanFailure(err error, id string) *Response {
	var se *local.StatusError
	switch {
	case errors.Is(err, local.ErrAuth):
		return fail(CodeUnauthorized, "the printer refused the bridge's credential: "+pairHint(id))
	case errors.Is(err, context.DeadlineExceeded):
		return fail(CodeTimeout, "the printer did not answer on the LAN")
	case errors.As(err, &se) && se.Code == http.StatusNotFound:
		return fail(CodeNotFound, "the printer has no such job: "+err.Error())
	case errors.As(err, &se) && se.Code >= 400 && se.Code < 500:
		return fail(CodeConflict, "the printer refused the action: "+err.Error())
	}
	return fail(CodeActionFailed, "the printer did not carry out the action: "+err.Error())
}

// lanWork is an action carried out over the LAN: answered ok once the
// printer took it (it answers at once, 204), then the printer is read
// again; with shown, the action stays under way until the state shows
// its effect (within COMMAND_TIMEOUT).
func (h *Handler) lanWork(send func(context.Context) error, id string, data map[string]any, shown func() bool) work {
	return func(ctx context.Context, answer func(*Response)) {
		deadline := h.now().Add(h.cfg.Timeout)
		sctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		defer cancel()
		if err := send(sctx); err != nil {
			answer(lanFailure(err, id))
			return
		}
		h.refresh.Refresh(id)
		data["via"] = "local"
		answer(&Response{Status: "ok", Data: data})
		if shown != nil {
			h.holdUntilShown(ctx, deadline, shown)
		}
	}
}

// planPair pairs the bridge with a printer on the LAN: pending while the
// printer asks for ALLOW, then ok, or error (refused) or timeout.
func (h *Handler) planPair(req Request) (work, *Response) {
	if h.cfg.LAN == nil {
		return nil, fail(CodeNotAllowed, "no printer is read on the LAN: set LOCAL_PRINTERS or LOCAL_DISCOVERY")
	}
	if req.Printer == "" {
		return nil, fail(CodeBadRequest, `pair needs "printer": a printer's topic id or its address on the LAN`)
	}
	return func(ctx context.Context, answer func(*Response)) {
		err := h.cfg.LAN.Pair(ctx, req.Printer, func() {
			answer(&Response{Status: "pending", Data: map[string]any{"printer": req.Printer,
				"message": "confirm on the printer's screen: press ALLOW for ultimaker2mqtt"}})
		})
		switch {
		case err == nil:
			answer(&Response{Status: "ok", Data: map[string]any{"printer": req.Printer}})
		case errors.Is(err, local.ErrNotWatched):
			answer(fail(CodeNotFound, err.Error()))
		case errors.Is(err, local.ErrPairTimeout):
			answer(fail(CodeTimeout, err.Error()))
		default: // refused on the screen, or the printer failed
			answer(fail(CodeActionFailed, err.Error()))
		}
	}, nil
}

// needsCloud refuses, without a cloud account, what only the cloud does.
func (h *Handler) needsCloud(action string) *Response {
	if !h.cfg.NoCloud || slices.Contains(LANActions, action) {
		return nil
	}
	return fail(CodeNotAllowed, fmt.Sprintf("the bridge runs without a cloud account (LAN only); %s needs the cloud", action))
}

// lanOnly refuses what only the cloud does for a printer or cluster the
// cloud does not know (no cloud id).
func lanOnly(cloudID, name, action string) *Response {
	if cloudID != "" || slices.Contains(LANActions, action) {
		return nil
	}
	return fail(CodeConflict, fmt.Sprintf("%s is read on the LAN only; %s needs the cloud", name, action))
}
