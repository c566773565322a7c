package local

import (
	"context"
	"time"
)

// PrinterHistory is a printer's own job history, as read on the LAN.
type PrinterHistory struct {
	Printer string // its topic id
	Jobs    []HistoryJob
}

// historyPage and historyPages bound a history read: a printer keeps
// hundreds of jobs, and a report wants weeks, not years.
const (
	historyPage  = 50
	historyPages = 20
)

// History reads the job history of every LAN printer this bridge reads
// and that answers, newest first, back to since (a page further at
// most): the job log's LAN part. A printer that does not answer is left
// out; the printers are read one at a time.
func (p *Poller) History(ctx context.Context, since time.Time) []PrinterHistory {
	type source struct {
		key    string
		client *Client
	}
	var sources []source
	p.mu.Lock()
	for _, w := range p.watches {
		if w.reached && !w.gated && w.key != "" {
			sources = append(sources, source{w.key, w.client})
		}
	}
	p.mu.Unlock()
	var out []PrinterHistory
	for _, s := range sources {
		h := PrinterHistory{Printer: s.key}
		for page := range historyPages {
			jobs, err := s.client.History(ctx, page*historyPage, historyPage)
			if err != nil {
				break
			}
			h.Jobs = append(h.Jobs, jobs...)
			if len(jobs) < historyPage || olderThan(jobs[len(jobs)-1], since) {
				break
			}
		}
		if len(h.Jobs) > 0 {
			out = append(out, h)
		}
	}
	return out
}

// ParseTime reads a LAN time: ISO 8601, with or without a zone (none is
// UTC); zero for "" or what does not parse.
func ParseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func olderThan(j HistoryJob, since time.Time) bool {
	t := ParseTime(j.CreatedAt)
	if t.IsZero() {
		t = ParseTime(j.DatetimeStarted)
	}
	return !t.IsZero() && t.Before(since)
}
