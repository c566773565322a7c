package state

import "slices"

// The status rules of print jobs, in one place: the command handler
// accepts a job action in exactly these statuses, and Home Assistant's
// buttons are offered in exactly these (discovery renders its templates
// from the same lists).
var (
	// JobActionFrom lists, per printer command, the job statuses that
	// allow it.
	JobActionFrom = map[string][]string{
		"pause":  {"printing"},
		"resume": {"paused"},
		"abort":  {"pre_print", "printing", "pausing", "paused", "resuming"},
	}
	// QueuedStatuses are the statuses of a job that waits in its
	// cluster's queue rather than being on a printer. Cura counts
	// "error" as queued too.
	QueuedStatuses = []string{"queued", "wait_approval", "error", "wait_for_configuration", "sending"}
	// RunningStatuses are those of a print in progress, paused included.
	RunningStatuses = []string{"sent_to_printer", "pre_print", "printing", "pausing", "paused", "resuming", "post_print", "aborting"}
	// EndedStatuses are those of a job that will not print any more.
	EndedStatuses = []string{"wait_cleanup", "finished", "aborted", "aborting", "failed", "error"}
)

// JobActionShown reports whether a printer's job j shows that a printer
// command on job uuid took effect: paused after pause, running on after
// resume; and after any, that the job is gone or over, when nothing more
// can show.
func JobActionShown(action, uuid string, j *Job) bool {
	if j == nil || j.UUID != uuid || ended(j.Status) {
		return true
	}
	switch action {
	case "pause":
		return j.Status == "paused"
	case "resume":
		return j.Status != "paused" && j.Status != "resuming"
	}
	return false // abort shows only as aborting or later, which is ended
}

// JobActionAllowed reports whether a printer command (pause, resume,
// abort) may act on a job in status.
func JobActionAllowed(action, status string) bool {
	return slices.Contains(JobActionFrom[action], status)
}

// isQueued reports whether a job with this status waits in the queue.
func isQueued(status string) bool { return slices.Contains(QueuedStatuses, status) }

// isRunning reports whether a print is in progress (paused counts).
func isRunning(status string) bool { return slices.Contains(RunningStatuses, status) }

func ended(status string) bool { return slices.Contains(EndedStatuses, status) }

// HoldsPrint reports whether a printer still holds the print of its last
// job on its build plate, waiting for a person to clear it: an end seen
// late is pictured only then.
func (p Printer) HoldsPrint() bool {
	return p.Online && (p.Status == "wait_cleanup" || p.Job != nil && p.Job.Status == "wait_cleanup")
}

// paused reports whether a job is paused or on its way there.
func paused(status string) bool { return status == "pausing" || status == "paused" }
