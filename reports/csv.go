package reports

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"
)

// JobsHeader is the job log's CSV header.
var JobsHeader = []string{"uuid", "name", "printer", "printer_name", "cluster", "owner", "status", "created", "ended",
	"time_elapsed", "time_total", "materials", "waited_to_clear", "source"}

// WriteJobsCSV writes jobs as CSV (RFC 4180: a header row, fields quoted
// where they need it, CRLF line ends), UTF-8, times in ISO 8601 UTC,
// durations in seconds, materials joined by "; ".
func WriteJobsCSV(w io.Writer, jobs []Job) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	cw.Write(JobsHeader)
	for _, j := range jobs {
		cw.Write([]string{j.UUID, text(j.Name), j.Printer, text(j.PrinterName), j.Cluster, text(j.Owner), j.Status,
			stamp(&j.Created), stamp(j.Ended), strconv.FormatInt(j.TimeElapsed, 10), strconv.FormatInt(j.TimeTotal, 10),
			text(strings.Join(j.Materials, "; ")), seconds(j.WaitedToClear), j.Source})
	}
	cw.Flush()
	return cw.Error()
}

// UtilisationHeader is the utilisation's CSV header.
var UtilisationHeader = []string{"key", "name", "printers", "hours_printed", "utilisation", "jobs", "finished", "aborted",
	"failed", "success_rate", "clears_seen", "clear_wait_mean", "clear_wait_max"}

// WriteUtilisationCSV writes the rows, then the total, as CSV.
func WriteUtilisationCSV(w io.Writer, u Utilisation) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	cw.Write(UtilisationHeader)
	for _, r := range append(u.Rows, u.Total) {
		rate := ""
		if r.SuccessRate != nil {
			rate = strconv.FormatFloat(*r.SuccessRate, 'f', -1, 64)
		}
		cw.Write([]string{r.Key, text(r.Name), strconv.Itoa(r.Printers), strconv.FormatFloat(r.HoursPrinted, 'f', -1, 64),
			strconv.FormatFloat(r.Utilisation, 'f', -1, 64), strconv.Itoa(r.Jobs), strconv.Itoa(r.Finished),
			strconv.Itoa(r.Aborted), strconv.Itoa(r.Failed), rate, strconv.Itoa(r.ClearsSeen), seconds(r.ClearWaitMean),
			seconds(r.ClearWaitMax)})
	}
	cw.Flush()
	return cw.Error()
}

func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func seconds(s *int64) string {
	if s == nil {
		return ""
	}
	return strconv.FormatInt(*s, 10)
}

// text keeps a spreadsheet from running a name as a formula: a text that
// starts with = + - @ (or a tab or a carriage return) gets a ' before it.
func text(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
