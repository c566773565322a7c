package connect

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// oddStatus has a value of the wrong type in a fault of printer A, in the
// job's time_total and in a whole list, and a printer C whose uuid is a
// number; B is fine.
const oddStatus = `{"data":{"is_online":true,
 "printers":[
  {"uuid":"a","unique_name":"printer-a","status":"printing","enabled":true,
   "faults":[{"code":"F1","message":"m","severity":3,"timestamp":"2025-01-01T00:00:00Z","uuid":"f"}]},
  {"uuid":"b","unique_name":"printer-b","status":"idle","enabled":true,"errors":"none"},
  {"uuid":7,"unique_name":"printer-c","status":"idle","enabled":true}],
 "print_jobs":[{"uuid":"j","name":"n","status":"printing","printer_uuid":"a","time_total":"3600","time_elapsed":60}],
 "recently_completed":[]}}`

// TestWrongTypedFieldsAreAbsent: one field of an unexpected type costs
// that field, not the cluster; an unreadable identity costs that printer
// alone; each problem is logged once per run (issue 9.10).
func TestWrongTypedFieldsAreAbsent(t *testing.T) {
	var logs bytes.Buffer
	srv := httptest.NewServer(fixed(200, oddStatus))
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}),
		Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		st, err := c.ClusterStatus(context.Background(), "c1")
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(st.Printers) != 2 || st.Printers[0].UUID != "a" || st.Printers[1].UUID != "b" {
			t.Fatalf("printers %+v, want a and b", st.Printers)
		}
		a := st.Printers[0]
		if len(a.Faults) != 1 || a.Faults[0].Code != "F1" || a.Faults[0].Severity != "" || a.Status != "printing" {
			t.Errorf("printer a %+v", a)
		}
		if len(st.PrintJobs) != 1 || st.PrintJobs[0].TimeTotal != 0 || st.PrintJobs[0].TimeElapsed != 60 {
			t.Errorf("job %+v", st.PrintJobs)
		}
	}
	out := logs.String()
	for _, field := range []string{"printers[].faults[].severity", "printers[].errors", "print_jobs[].time_total", "printers[].uuid"} {
		if n := strings.Count(out, `"field":"`+field+`"`); n != 1 {
			t.Errorf("%s warned %d times, want once:\n%s", field, n, out)
		}
	}
	if !strings.Contains(out, "record left out") {
		t.Errorf("the skipped printer is not logged as left out:\n%s", out)
	}
}

// TestRateLimitPausesEveryRequest: after a 429, nothing reaches the cloud
// until Retry-After has passed, whatever the route (issue 9.6).
func TestRateLimitPausesEveryRequest(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte(`{"data":{"action_id":"a","status":"success"}}`))
	}))
	defer srv.Close()
	c, _ := New(Options{BaseURL: srv.URL, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := c.ClusterStatus(ctx, "c1"); KindOf(err) != KindRateLimited {
		t.Fatalf("first request: %v", err)
	}
	now = now.Add(20 * time.Second)
	_, err := c.ActionStatus(ctx, "c1", "a")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Kind != KindRateLimited || ae.RetryAfter != 10*time.Second {
		t.Fatalf("inside the window: %v", err)
	}
	if got := c.RateLimitedUntil(); !got.Equal(now.Add(10 * time.Second)) {
		t.Errorf("RateLimitedUntil %v", got)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d requests reached the cloud inside the window, want 1", hits.Load())
	}
	now = now.Add(10 * time.Second)
	if _, err := c.ActionStatus(ctx, "c1", "a"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if hits.Load() != 2 {
		t.Errorf("%d requests, want 2", hits.Load())
	}
}
