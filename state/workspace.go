package state

import (
	"encoding/json"
	"math"
	"slices"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// StatisticsDays is the period of the statistics: the last 30 days.
const StatisticsDays = 30

// Workspace is the workspace as published on <base>/workspace/state.
type Workspace struct {
	Settings   *Settings       `json:"settings"`
	Usage      json.RawMessage `json:"usage"` // GET /usage as the cloud sent it (no published schema)
	Statistics *Statistics     `json:"statistics"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// Settings are the workspace settings.
type Settings struct {
	RequirePrintApproval bool `json:"require_print_approval"`
	EnablePrintPrep      bool `json:"enable_print_prep"`
}

// Statistics are totals over the last StatisticsDays days, from the
// print-job reports: for the workspace, or for one printer on
// <base>/printers/<printer>/statistics.
type Statistics struct {
	PeriodDays   int       `json:"period_days"`
	JobsFinished int       `json:"jobs_finished"`
	JobsAborted  int       `json:"jobs_aborted"`
	JobsFailed   int       `json:"jobs_failed"`
	PrintSeconds int64     `json:"print_seconds"` // printing time of the jobs that ended
	SuccessRate  *float64  `json:"success_rate"`  // % finished of those that ended; null without any
	UpdatedAt    time.Time `json:"updated_at"`
}

// MaintenanceEntry is one entry of a cluster's maintenance log.
type MaintenanceEntry struct {
	CompletedAt *time.Time `json:"completed_at"`
	TaskCodes   []string   `json:"task_codes"`
	Username    string     `json:"username"`
}

// MaintenanceHistoryLength is how many log entries a cluster state keeps.
const MaintenanceHistoryLength = 10

// SettingsOf converts the cloud's settings.
func SettingsOf(s connect.Settings) Settings {
	return Settings{RequirePrintApproval: s.RequirePrintApproval, EnablePrintPrep: s.EnablePrintPrep}
}

// Tally computes the statistics of the reports: for the workspace, and
// per printer, where printerOf names the printer (its topic id) a report
// ran on ("" for none the bridge knows). Only jobs that ended count.
func Tally(reports []connect.Report, printerOf func(connect.Report) string, now time.Time) (Statistics, map[string]Statistics) {
	now = now.UTC().Truncate(time.Second)
	all := Statistics{PeriodDays: StatisticsDays, UpdatedAt: now}
	per := map[string]Statistics{}
	for _, r := range reports {
		result := reportResult(r)
		if result == "" {
			continue
		}
		secs := seconds(r.TimeElapsed)
		add(&all, result, secs)
		if id := printerOf(r); id != "" {
			s, ok := per[id]
			if !ok {
				s = Statistics{PeriodDays: StatisticsDays, UpdatedAt: now}
			}
			add(&s, result, secs)
			per[id] = s
		}
	}
	rate(&all)
	for id, s := range per {
		rate(&s)
		per[id] = s
	}
	return all, per
}

func reportResult(r connect.Report) string {
	if !slices.Contains(EndedStatuses, r.Status) && r.Status != "failed" {
		return ""
	}
	return jobResult(connect.PrintJob{Status: r.Status, TimeTotal: r.TimeTotal, TimeElapsed: r.TimeElapsed})
}

func add(s *Statistics, result string, secs int64) {
	switch result {
	case "finished":
		s.JobsFinished++
	case "aborted":
		s.JobsAborted++
	case "failed":
		s.JobsFailed++
	default:
		return
	}
	s.PrintSeconds += max(secs, 0)
}

func rate(s *Statistics) {
	if n := s.JobsFinished + s.JobsAborted + s.JobsFailed; n > 0 {
		r := math.Round(float64(s.JobsFinished)/float64(n)*1000) / 10
		s.SuccessRate = &r
	}
}

// SameStatistics reports whether two statistics say the same, apart from
// when they were computed.
func SameStatistics(a, b Statistics) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return jsonEqual(a, b)
}
