package state

import (
	"math"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// poll builds a one-printer cluster whose job has run elapsed of total
// seconds and whose bed reads bed °C.
func poll(prev *View, at time.Time, elapsed, total, bed float64) View {
	p := connect.Printer{UUID: "u", UniqueName: "ultimakersystem-1", Status: "printing", Enabled: true,
		BuildPlate: &connect.BuildPlate{Type: "glass", Temperature: &bed}}
	status := &connect.ClusterStatus{Printers: []connect.Printer{p}, PrintJobs: []connect.PrintJob{{UUID: "j", Name: "part",
		Status: "printing", Started: true, PrinterUUID: "u", TimeElapsed: elapsed, TimeTotal: total, TimeRemaining: total - elapsed}}}
	return Build(Observation{Cluster: connect.Cluster{ClusterID: "c", HostName: "ultimakersystem-1", IsOnline: true},
		Status: status, Now: at}, prev)
}

// TestPrintingPrinterDigest: a printer printing steadily, polled every
// second with its bed temperature wobbling by 0.3 °C, changes state (a
// message to Home Assistant) at most twice a minute plus once per
// percent of progress (issue 20: it changed at every poll).
func TestPrintingPrinterDigest(t *testing.T) {
	const total, start, minutes = 7200.0, 1000.0, 10
	var prev *View
	changes := 0
	for s := range minutes * 60 {
		bed := 60 + 0.3*math.Sin(float64(s))
		v := poll(prev, t0.Add(time.Duration(s)*time.Second), start+float64(s), total, bed)
		if prev != nil && v.PrinterChanged[0] {
			changes++
		}
		prev = &v
	}
	percents := math.Floor((start+minutes*60)/total*100) - math.Floor(start/total*100)
	if budget := 2*minutes + int(percents); changes > budget {
		t.Errorf("%d state changes in %d minutes, want at most %d (2 a minute + %v percents)", changes, minutes, budget, percents)
	}
	t.Logf("%d state changes in %d minutes of printing at one poll a second", changes, minutes)
	p := prev.Printers[0]
	if p.Job.TimeElapsed%60 != 0 || p.Job.TimeRemaining%60 != 0 {
		t.Errorf("running times %d and %d are not kept to the minute", p.Job.TimeElapsed, p.Job.TimeRemaining)
	}
}

// TestNoticeableChanges: what a person notices is published at once; a
// wobble is not.
func TestNoticeableChanges(t *testing.T) {
	base := poll(nil, t0, 1000, 7200, 60)
	tests := []struct {
		name             string
		elapsed, bed     float64
		changed          bool
		progress, bedNow float64 // in the state after
	}{
		{"Wobble", 1001, 60.4, false, 13.9, 60},
		{"HalfADegree", 1001, 60.5, true, 13.9, 60.5},
		{"AWholePercent", 1080, 60, true, 15, 60},
		{"AMinute", 1060, 60, true, 14.7, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := poll(&base, t0.Add(time.Second), tt.elapsed, 7200, tt.bed)
			p := v.Printers[0]
			if v.PrinterChanged[0] != tt.changed || p.Job.Progress != tt.progress || *p.BuildPlate.Temperature != tt.bedNow {
				t.Errorf("changed %v, progress %v, bed %v; want %v, %v, %v", v.PrinterChanged[0], p.Job.Progress,
					*p.BuildPlate.Temperature, tt.changed, tt.progress, tt.bedNow)
			}
		})
	}
}
