package state

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
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
	PeriodDays   int      `json:"period_days"`
	JobsFinished int      `json:"jobs_finished"`
	JobsAborted  int      `json:"jobs_aborted"`
	JobsFailed   int      `json:"jobs_failed"`
	PrintSeconds int64    `json:"print_seconds"` // printing time of the jobs that ended
	SuccessRate  *float64 `json:"success_rate"`  // % finished of those that ended; null without any
	// Utilisation over the last 7 and 30 days: % of the hours printed by
	// the jobs created then (a printer's only: null for the workspace).
	Utilisation7d  *float64  `json:"utilisation_7d,omitempty"`
	Utilisation30d *float64  `json:"utilisation_30d,omitempty"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// UtilisationDays are the periods of a printer's utilisation.
var UtilisationDays = []int{7, StatisticsDays}

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

// ReportPrinter names the printer a report ran on (its topic id), among
// printers, by the printer's uuid, else its name in its cluster, else the
// cluster's only printer (a MakerBot has no GUID); "" for one not there.
// The maps are made once: call it once per walk.
func ReportPrinter(printers []Printer) func(connect.Report) string {
	byUUID, byName, only := map[string]string{}, map[string]string{}, map[string]string{}
	perCluster := map[string]int{}
	for _, p := range printers {
		if p.UUID != "" {
			byUUID[strings.ToLower(p.UUID)] = p.ID
		}
		byName[p.ClusterID+"\x00"+p.FriendlyName] = p.ID
		perCluster[p.ClusterID]++
		only[p.ClusterID] = p.ID
	}
	for id, n := range perCluster {
		if n != 1 {
			delete(only, id)
		}
	}
	return func(rep connect.Report) string {
		for _, u := range []string{rep.PrinterUUID, rep.PrintedOnUUID} {
			if id := byUUID[strings.ToLower(u)]; u != "" && id != "" {
				return id
			}
		}
		if id := byName[rep.ClusterID+"\x00"+rep.PrinterName]; rep.PrinterName != "" && id != "" {
			return id
		}
		return only[rep.ClusterID]
	}
}

// ReportResult is how a reported job ended, by the rule of the
// statistics: finished, aborted or failed; "" for one that has not.
func ReportResult(r connect.Report) string { return reportResult(r) }

// Tally adds up the statistics of the reports, a page at a time, so a
// farm's month of reports is never held whole: for the workspace, and per
// printer, where printerOf names the printer (its topic id) a report ran
// on ("" for none the bridge knows). Only jobs that ended count.
type Tally struct {
	printerOf func(connect.Report) string
	now       time.Time
	all       Statistics
	per       map[string]Statistics
	printed   map[string][2]int64 // per printer, seconds printed by jobs created in the last 7 and 30 days
}

// NewTally starts an empty tally of the reports up to now.
func NewTally(printerOf func(connect.Report) string, now time.Time) *Tally {
	return &Tally{printerOf: printerOf, now: now, per: map[string]Statistics{}, printed: map[string][2]int64{}}
}

// Add counts reports.
func (t *Tally) Add(reports []connect.Report) {
	for _, r := range reports {
		result := reportResult(r)
		if result == "" {
			continue
		}
		secs := seconds(r.TimeElapsed)
		add(&t.all, result, secs)
		if id := t.printerOf(r); id != "" {
			s := t.per[id]
			add(&s, result, secs)
			t.per[id] = s
			p := t.printed[id]
			for i, days := range UtilisationDays {
				if created := r.CreatedAt.Time; !created.IsZero() && t.now.Sub(created) < time.Duration(days)*24*time.Hour {
					p[i] += max(secs, 0)
				}
			}
			t.printed[id] = p
		}
	}
}

// Result is the statistics counted so far, as of now: the workspace's and
// each printer's that ran a counted job.
func (t *Tally) Result(now time.Time) (Statistics, map[string]Statistics) {
	now = now.UTC().Truncate(time.Second)
	stamp := func(s Statistics) Statistics {
		s.PeriodDays, s.UpdatedAt, s.SuccessRate = StatisticsDays, now, nil
		rate(&s)
		return s
	}
	per := make(map[string]Statistics, len(t.per))
	for id, s := range t.per {
		s = stamp(s)
		p := t.printed[id]
		s.Utilisation7d, s.Utilisation30d = Utilisation(p[0], UtilisationDays[0]), Utilisation(p[1], UtilisationDays[1])
		per[id] = s
	}
	return stamp(t.all), per
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

// Utilisation is the % of days' hours that seconds of printing are, to
// a tenth.
func Utilisation(seconds int64, days int) *float64 {
	u := math.Round(float64(seconds)/(float64(days)*24*3600)*1000) / 10
	return &u
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
