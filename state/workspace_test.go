package state

import (
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// A tally counts the same however the walk pages the reports, and counts
// only jobs that ended.
func TestTallyAcrossPages(t *testing.T) {
	reports := []connect.Report{
		{Status: "finished", TimeTotal: 100, TimeElapsed: 100, PrinterUUID: "a"},
		{Status: "finished", TimeTotal: 50, TimeElapsed: 50, PrinterUUID: "a"},
		{Status: "aborted", TimeTotal: 100, TimeElapsed: 30, PrinterUUID: "b"},
		{Status: "failed", TimeTotal: 100, TimeElapsed: 10, PrinterUUID: "stranger"},
		{Status: "printing", TimeTotal: 100, TimeElapsed: 40, PrinterUUID: "a"}, // not ended
	}
	printerOf := func(r connect.Report) string {
		return map[string]string{"a": "printer-a", "b": "printer-b"}[r.PrinterUUID]
	}
	now := time.Date(2026, 5, 2, 9, 0, 0, 700, time.UTC)
	tests := []struct {
		name  string
		pages [][]connect.Report
	}{
		{"one page", [][]connect.Report{reports}},
		{"a page each", [][]connect.Report{reports[:1], reports[1:2], reports[2:3], reports[3:4], reports[4:]}},
		{"with empty pages", [][]connect.Report{nil, reports[:3], {}, reports[3:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tally := NewTally(printerOf, now)
			for _, p := range tt.pages {
				tally.Add(p)
			}
			all, per := tally.Result(now)
			if all.JobsFinished != 2 || all.JobsAborted != 1 || all.JobsFailed != 1 || all.PrintSeconds != 190 ||
				all.SuccessRate == nil || *all.SuccessRate != 50 || all.PeriodDays != StatisticsDays ||
				!all.UpdatedAt.Equal(now.Truncate(time.Second)) {
				t.Errorf("workspace %+v", all)
			}
			a, b := per["printer-a"], per["printer-b"]
			if len(per) != 2 || a.JobsFinished != 2 || a.PrintSeconds != 150 || *a.SuccessRate != 100 ||
				b.JobsAborted != 1 || *b.SuccessRate != 0 {
				t.Errorf("per printer %+v", per)
			}
		})
	}
	// Result can be asked twice without counting twice.
	tally := NewTally(printerOf, now)
	tally.Add(reports)
	tally.Result(now)
	if all, _ := tally.Result(now); all.JobsFinished != 2 {
		t.Errorf("second result counts %d finished", all.JobsFinished)
	}
}
