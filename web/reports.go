package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/reports"
)

// Reports answers the farm's weekly questions; *reports.Log is one.
type Reports interface {
	Jobs(ctx context.Context, q reports.Query, all bool) (reports.Result, error)
	Utilisation(ctx context.Context, from, to time.Time, by string) (reports.Utilisation, error)
}

// jobs serves the job log: JSON, a page at a time, or (csv) every job
// that matches as CSV.
func (s *Server) jobs(csv bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := s.reportQuery(w, r)
		if !ok {
			return
		}
		res, err := s.cfg.Reports.Jobs(r.Context(), q, csv)
		if !s.reportAnswered(w, r, err) {
			return
		}
		if !csv {
			writeJSON(w, res)
			return
		}
		csvHeaders(w, "jobs", q.From, q.To)
		reports.WriteJobsCSV(w, res.Jobs)
	}
}

// utilisation serves the utilisation by printer (by=), cluster or owner.
func (s *Server) utilisation(csv bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := s.reportQuery(w, r)
		if !ok {
			return
		}
		by := r.URL.Query().Get("by")
		if by == "" {
			by = reports.ByPrinter
		}
		u, err := s.cfg.Reports.Utilisation(r.Context(), q.From, q.To, by)
		if !s.reportAnswered(w, r, err) {
			return
		}
		if !csv {
			writeJSON(w, u)
			return
		}
		csvHeaders(w, "utilisation-by-"+by, q.From, q.To)
		reports.WriteUtilisationCSV(w, u)
	}
}

// reportQuery reads the query of a report, within the client's rate.
func (s *Server) reportQuery(w http.ResponseWriter, r *http.Request) (reports.Query, bool) {
	if s.cfg.Reports == nil {
		problem(w, http.StatusNotFound, "this bridge keeps no job log")
		return reports.Query{}, false
	}
	q, err := reports.ParseQuery(r.URL.Query(), time.Now())
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return q, false
	}
	return q, s.guard.reportRead(w, r)
}

// reportAnswered answers a report's error (400 for the query, else 502:
// the cloud did not give the history), and reports whether there was
// none.
func (s *Server) reportAnswered(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, reports.ErrQuery):
		problem(w, http.StatusBadRequest, err.Error())
	case r.Context().Err() != nil:
	default:
		s.log.Warn().Err(err).Msg("the job history could not be read")
		problem(w, http.StatusBadGateway, "the job history could not be read from the cloud; try again later")
	}
	return false
}

func csvHeaders(w http.ResponseWriter, name string, from, to time.Time) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8; header=present")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s-%s.csv"`, name,
		from.Format("20060102"), to.Format("20060102")))
}
