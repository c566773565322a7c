package state

import (
	"slices"
	"time"
)

// Event types, as published on the event topics.
const (
	PrintStarted            = "print_started"
	PrintPaused             = "print_paused"
	PrintResumed            = "print_resumed"
	PrintFinished           = "print_finished"
	PrintAborted            = "print_aborted"
	PrintFailed             = "print_failed"
	UserActionRequired      = "user_action_required"
	PrinterError            = "printer_error"
	PrinterOnline           = "printer_online"
	PrinterOffline          = "printer_offline"
	MaintenanceDue          = "maintenance_due"
	FirmwareUpdateAvailable = "firmware_update_available"
)

// EventTypes lists every event type the bridge emits.
var EventTypes = []string{
	PrintStarted, PrintPaused, PrintResumed, PrintFinished, PrintAborted, PrintFailed, UserActionRequired,
	PrinterError, PrinterOnline, PrinterOffline, MaintenanceDue, FirmwareUpdateAvailable,
}

// Event is something that happened to a printer, derived from two
// successive views of it.
type Event struct {
	Type        string    `json:"event"`
	Printer     string    `json:"printer"`
	PrinterName string    `json:"printer_name"`
	Cluster     string    `json:"cluster"`
	Job         *EventJob `json:"job"`
	Detail      string    `json:"detail"`
	Time        time.Time `json:"time"`
	// Late is set on an event published after its moment: derived at a
	// restart or a takeover against the state published before (Since is
	// when that was), or kept while the broker was away.
	Late  bool       `json:"late"`
	Since *time.Time `json:"since,omitempty"`
}

// LateSince returns the events as derived against a state published at
// since, not seen by this run: late, since then.
func LateSince(events []Event, since time.Time) []Event {
	for i := range events {
		events[i].Late = true
		if !since.IsZero() {
			s := since.UTC()
			events[i].Since = &s
		}
	}
	return events
}

// EventJob names the job an event is about.
type EventJob struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	TimeElapsed int64  `json:"time_elapsed"`
	TimeTotal   int64  `json:"time_total"`
}

// Events derives the events between two views of one cluster. A printer
// seen for the first time yields none: the bridge starting is not news.
func Events(prev, next View) []Event {
	old := map[string]*Printer{}
	for i := range prev.Printers {
		old[prev.Printers[i].ID] = &prev.Printers[i]
	}
	var out []Event
	for i := range next.Printers {
		if p := old[next.Printers[i].ID]; p != nil {
			out = append(out, printerEvents(*p, next.Printers[i])...)
		}
	}
	return out
}

func printerEvents(a, b Printer) []Event {
	var out []Event
	at := b.UpdatedAt
	emit := func(typ string, j *Job, detail string) {
		e := Event{Type: typ, Printer: b.ID, PrinterName: b.FriendlyName, Cluster: b.Cluster, Detail: detail, Time: at}
		if j != nil {
			e.Job = &EventJob{UUID: j.UUID, Name: j.Name, TimeElapsed: j.TimeElapsed, TimeTotal: j.TimeTotal}
		}
		out = append(out, e)
	}

	if a.Online != b.Online {
		if !b.Online {
			emit(PrinterOffline, nil, "")
			return out // what follows is unknowable while offline
		}
		emit(PrinterOnline, nil, "")
	}

	// A job that left the printer without our seeing it end (polls are
	// minutes apart when idle): read its end from the history.
	if a.Job != nil && (b.Job == nil || b.Job.UUID != a.Job.UUID) && !ended(a.Job.Status) {
		if b.LastJob != nil && b.LastJob.UUID == a.Job.UUID {
			if typ := resultEvent(b.LastJob.Result); typ != "" {
				emit(typ, a.Job, "")
			}
		}
	}

	if b.Job != nil {
		var was string
		if a.Job != nil && a.Job.UUID == b.Job.UUID {
			was = a.Job.Status
		}
		now := b.Job.Status
		switch {
		case was == "" && (isRunning(now) && now != "aborting"):
			emit(PrintStarted, b.Job, "")
		case was == now:
		case now == "paused" && was != "pausing" || now == "pausing":
			emit(PrintPaused, b.Job, "")
		case (was == "paused" || was == "pausing") && (now == "resuming" || now == "printing"):
			emit(PrintResumed, b.Job, "")
		case now == "aborting" || now == "aborted":
			if was != "aborting" && was != "aborted" {
				emit(PrintAborted, b.Job, "")
			}
		case now == "wait_cleanup" || now == "finished":
			if was == "aborting" || was == "aborted" || was == "wait_cleanup" {
				break
			}
			if b.Job.endedShort() {
				emit(PrintAborted, b.Job, "")
			} else {
				emit(PrintFinished, b.Job, "")
			}
		case now == "failed" || now == "error":
			emit(PrintFailed, b.Job, "")
		case now == "wait_user_action":
			emit(UserActionRequired, b.Job, "")
		}
	}

	if b.PrinterStatus == "error" && a.PrinterStatus != "error" {
		emit(PrinterError, nil, "")
	} else if fresh := newCodes(a.Errors, b.Errors); len(fresh) > 0 {
		emit(PrinterError, nil, fresh[0])
	}
	if b.Maintenance.Required && !a.Maintenance.Required {
		emit(MaintenanceDue, nil, "")
	}
	if b.Firmware.UpdateAvailable && !a.Firmware.UpdateAvailable {
		emit(FirmwareUpdateAvailable, nil, b.Firmware.Latest)
	}
	return out
}

func resultEvent(result string) string {
	switch result {
	case "finished":
		return PrintFinished
	case "aborted":
		return PrintAborted
	case "failed":
		return PrintFailed
	}
	return ""
}

func newCodes(old, cur []string) []string {
	var out []string
	for _, c := range cur {
		if !slices.Contains(old, c) {
			out = append(out, c)
		}
	}
	return out
}
