package reports

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/natural"
)

// Groupings of the utilisation.
const (
	ByPrinter = "printer"
	ByCluster = "cluster"
	ByOwner   = "owner"
)

// Row is the utilisation of a printer, a cluster or an owner over a
// period: the jobs created in it (the job log's rule).
type Row struct {
	Key      string `json:"key"` // the printer's or cluster's topic id, or the owner
	Name     string `json:"name"`
	Printers int    `json:"printers"` // whose hours it is of: 1, a cluster's, or the farm's (an owner's share)
	// HoursPrinted is the jobs' time printing; Utilisation is it in % of
	// the period's hours of Printers printers.
	HoursPrinted float64  `json:"hours_printed"`
	Utilisation  float64  `json:"utilisation"`
	Jobs         int      `json:"jobs"`
	Finished     int      `json:"finished"`
	Aborted      int      `json:"aborted"`
	Failed       int      `json:"failed"`
	SuccessRate  *float64 `json:"success_rate"` // % finished of those that ended; null without any
	// How long finished prints waited on the plate for someone to clear
	// them (seconds), of those the bridge saw.
	ClearsSeen    int    `json:"clears_seen"`
	ClearWaitMean *int64 `json:"clear_wait_mean"`
	ClearWaitMax  *int64 `json:"clear_wait_max"`

	printed float64
	waits   int64
}

// Utilisation is the answer for a period, by a grouping.
type Utilisation struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	By          string    `json:"by"`
	PeriodHours float64   `json:"period_hours"` // from From to To, or to now if sooner
	Total       Row       `json:"total"`
	Rows        []Row     `json:"rows"`
}

// Utilisation sums the period's jobs up by printer, cluster or owner.
// Every printer or cluster of the farm has a row, one that printed
// nothing too.
func (l *Log) Utilisation(ctx context.Context, from, to time.Time, by string) (Utilisation, error) {
	if by != ByPrinter && by != ByCluster && by != ByOwner {
		return Utilisation{}, fmt.Errorf("%w: by: printer, cluster or owner", ErrQuery)
	}
	jobs, err := l.period(ctx, from, to)
	if err != nil {
		return Utilisation{}, err
	}
	end := to
	if now := l.now(); end.After(now) {
		end = now
	}
	u := Utilisation{From: from, To: to, By: by, PeriodHours: max(0, end.Sub(from).Hours())}
	rows := map[string]*Row{}
	row := func(key, name string) *Row {
		r := rows[key]
		if r == nil {
			r = &Row{Key: key, Name: name}
			rows[key] = r
		}
		return r
	}
	printers := 0
	if l.farm != nil {
		ps := l.farm.Printers()
		printers = len(ps)
		for _, p := range ps {
			switch by {
			case ByPrinter:
				row(p.ID, p.FriendlyName).Printers = 1
			case ByCluster:
				row(p.Cluster, "").Printers++
			}
		}
		if by == ByCluster {
			for _, c := range l.farm.Clusters() {
				if r, ok := rows[c.ID]; ok {
					r.Name = c.FriendlyName
				}
			}
		}
	}
	u.Total.Key, u.Total.Name, u.Total.Printers = "", "All printers", printers
	for _, j := range jobs {
		var r *Row
		switch by {
		case ByPrinter:
			r = row(nonEmpty(j.Printer, j.PrinterName), j.PrinterName)
		case ByCluster:
			r = row(j.Cluster, "")
		case ByOwner:
			r = row(j.Owner, j.Owner)
			r.Printers = printers
		}
		for _, r := range []*Row{r, &u.Total} {
			count(r, j)
		}
	}
	for _, r := range rows {
		if r.Printers == 0 && by != ByOwner {
			r.Printers = 1 // a printer (or cluster) the farm no longer has
		}
		if r.Name == "" {
			r.Name = r.Key
		}
		finish(r, u.PeriodHours)
		u.Rows = append(u.Rows, *r)
	}
	finish(&u.Total, u.PeriodHours)
	slices.SortStableFunc(u.Rows, func(a, b Row) int { return natural.Compare(a.Name, b.Name) })
	if u.Rows == nil {
		u.Rows = []Row{}
	}
	return u, nil
}

func count(r *Row, j Job) {
	r.Jobs++
	r.printed += float64(max(j.TimeElapsed, 0))
	switch j.Status {
	case Finished:
		r.Finished++
	case Aborted:
		r.Aborted++
	case Failed:
		r.Failed++
	}
	if w := j.WaitedToClear; w != nil {
		r.ClearsSeen++
		r.waits += *w
		if r.ClearWaitMax == nil || *w > *r.ClearWaitMax {
			m := *w
			r.ClearWaitMax = &m
		}
	}
}

func finish(r *Row, periodHours float64) {
	r.HoursPrinted = round(r.printed/3600, 100)
	if available := periodHours * float64(r.Printers); available > 0 {
		r.Utilisation = round(r.printed/3600/available*100, 10)
	}
	if n := r.Finished + r.Aborted + r.Failed; n > 0 {
		s := round(float64(r.Finished)/float64(n)*100, 10)
		r.SuccessRate = &s
	}
	if r.ClearsSeen > 0 {
		m := r.waits / int64(r.ClearsSeen)
		r.ClearWaitMean = &m
	}
}

func round(v, per float64) float64 { return math.Round(v*per) / per }

func nonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
