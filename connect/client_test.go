package connect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// serve answers every request with status and body, recording the last
// request.
func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL + "/connect/v1", Timeout: 2 * time.Second, UserAgent: "test/1",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "secret-token"})})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fixed(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

func TestClusterStatusDecodesTolerantly(t *testing.T) {
	body, err := os.ReadFile("testdata/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var gotReq *http.Request
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gotReq = r
		w.Write(body)
	})
	st, err := c.ClusterStatus(context.Background(), "Qm9vdGlmdWxQcmludGVyQ2x1c3RlcklkMDAwMDAwMDE=")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gotReq.URL.Path, "/connect/v1/clusters/Qm9vdGlmdWxQcmludGVyQ2x1c3RlcklkMDAwMDAwMDE=/status"; got != want {
		t.Errorf("path = %s, want %s", got, want)
	}
	if got := gotReq.Header.Get("Authorization"); got != "Bearer secret-token" {
		t.Errorf("Authorization = %q", got)
	}
	if got := gotReq.Header.Get("User-Agent"); got != "test/1" {
		t.Errorf("User-Agent = %q", got)
	}
	if len(st.Printers) != 2 || len(st.PrintJobs) != 1 || st.RecentlyCompleted != nil {
		t.Fatalf("decoded %d printers, %d jobs, recent %v", len(st.Printers), len(st.PrintJobs), st.RecentlyCompleted)
	}
	p := st.Printers[0]
	if p.StatusDetail != "a_value_nobody_documented" {
		t.Errorf("unknown enum value not kept: %q", p.StatusDetail)
	}
	if p.Configuration[0].ExtruderIndex != 0 || *p.Configuration[0].EstimatedMaterialVolume != 150000.5 {
		t.Errorf("float fields: %+v", p.Configuration[0])
	}
	if !p.Faults[0].Timestamp.IsZero() {
		t.Errorf("bad timestamp should decode as zero, got %v", p.Faults[0].Timestamp)
	}
	if mb := st.Printers[1]; mb.UUID != "" || mb.Configuration != nil || mb.BuildPlate != nil || mb.FirmwareVersion != "" {
		t.Errorf("nulls: %+v", mb)
	}
	j := st.PrintJobs[0]
	if j.Status != "some_future_status" || j.TimeElapsed != 3100.7 || j.CreatedAt.Format(time.RFC3339Nano) != "2025-05-02T07:01:10.22Z" {
		t.Errorf("job: status %q elapsed %v created %v", j.Status, j.TimeElapsed, j.CreatedAt)
	}
	if st.IsOnline == nil || !*st.IsOnline {
		t.Errorf("is_online = %v", st.IsOnline)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	errBody := func(code, status string) string {
		return fmt.Sprintf(`{"errors":[{"id":"e1","code":%q,"title":"T %s","http_status":%q,"detail":"D"}]}`, code, code, status)
	}
	tests := []struct {
		name       string
		h          http.HandlerFunc
		kind       Kind
		status     int
		code       string
		retryAfter time.Duration
	}{
		{"NoBearer", fixed(401, errBody("noBearerToken", "401")), KindAuth, 401, "noBearerToken", 0},
		{"TokenExpired", fixed(403, errBody("tokenExpired", "403")), KindAuth, 403, "tokenExpired", 0},
		{"NotFound", fixed(404, errBody("recordNotFound", "404")), KindNotFound, 404, "recordNotFound", 0},
		{"Conflict", fixed(409, errBody("printerNotAcceptingJobs", "409")), KindConflict, 409, "printerNotAcceptingJobs", 0},
		{"RateLimitedSeconds", fixed(429, errBody("tooMany", "429"), "Retry-After", "17"), KindRateLimited, 429, "tooMany", 17 * time.Second},
		{"RateLimitedNoHeader", fixed(429, ""), KindRateLimited, 429, "", DefaultRetryAfter},
		{"BadRequest", fixed(400, errBody("requiredField", "400")), KindBadRequest, 400, "requiredField", 0},
		{"Server", fixed(500, errBody("unexpectedError", "500")), KindServer, 500, "unexpectedError", 0},
		{"ServerHTML", fixed(502, "<html>bad gateway</html>"), KindServer, 502, "", 0},
		{"NumericHTTPStatus", fixed(409, `{"errors":[{"code":"c","title":"t","http_status":409}]}`), KindConflict, 409, "c", 0},
		{"NonJSON200", fixed(200, "<html>login</html>"), KindBadBody, 200, "", 0},
		{"Truncated200", fixed(200, `{"data":{"printers":[`), KindBadBody, 200, "", 0},
		{"NoEnvelope", fixed(200, `{"printers":[]}`), KindBadBody, 200, "", 0},
		{"NullData", fixed(200, `{"data":null}`), KindBadBody, 200, "", 0},
		{"WrongShape", fixed(200, `{"data":"maintenance"}`), KindBadBody, 200, "", 0},
		{"Hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, KindNetwork, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, tt.h)
			_, err := c.ClusterStatus(context.Background(), "c1")
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if ae.Kind != tt.kind || ae.HTTPStatus != tt.status || ae.Code != tt.code || ae.RetryAfter != tt.retryAfter {
				t.Errorf("got kind %s status %d code %q retry %s; want %s %d %q %s",
					ae.Kind, ae.HTTPStatus, ae.Code, ae.RetryAfter, tt.kind, tt.status, tt.code, tt.retryAfter)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Errorf("error leaks the token: %v", err)
			}
			if KindOf(fmt.Errorf("poll: %w", err)) != tt.kind {
				t.Errorf("KindOf through a wrap lost the kind")
			}
		})
	}
}

func TestNetworkErrorWhenNothingListens(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := New(Options{BaseURL: url + "/connect/v1", Timeout: time.Second})
	_, err := c.Clusters(context.Background())
	if KindOf(err) != KindNetwork {
		t.Fatalf("err = %v, want network", err)
	}
}

func TestRetryAfterDate(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if got := parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now); got != 90*time.Second {
		t.Errorf("date = %s, want 90s", got)
	}
	for _, bad := range []string{"", "-5", "soon", "1e9x"} {
		if got := parseRetryAfter(bad, now); got != 0 {
			t.Errorf("%q = %s, want 0", bad, got)
		}
	}
	if got := parseRetryAfter("999999999", now); got != 24*time.Hour {
		t.Errorf("huge = %s, want capped at 24h", got)
	}
}

func TestClustersFollowsPages(t *testing.T) {
	var calls atomic.Int32
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		page := r.URL.Query().Get("page")
		fmt.Fprintf(w, `{"data":[{"cluster_id":"c%s","host_name":"h%s","printer_count":1.0}],
			"meta":{"limit_reached":false,"page":{"total_count":3,"total_pages":3}},
			"links":{"next":"http://x/clusters?page=2"}}`, page, page)
	})
	cl, err := c.Clusters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cl) != 3 || cl[2].ClusterID != "c3" || calls.Load() != 3 {
		t.Fatalf("got %d clusters in %d calls: %+v", len(cl), calls.Load(), cl)
	}
}

func TestClustersWithoutPagination(t *testing.T) {
	var calls atomic.Int32
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, `{"data":[{"cluster_id":"a"},{"cluster_id":"b"}]}`)
	})
	cl, err := c.Clusters(context.Background())
	if err != nil || len(cl) != 2 || calls.Load() != 1 {
		t.Fatalf("got %v, %d calls, err %v", cl, calls.Load(), err)
	}
}

func TestActionsSendEnvelope(t *testing.T) {
	var body map[string]any
	var path, method string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		path, method = r.URL.Path, r.Method
		json.NewDecoder(r.Body).Decode(&body)
		w.WriteHeader(201)
		fmt.Fprint(w, `{"data":{"action_id":"a1","status":"pending"}}`)
	})
	pos := 0
	st, err := c.PrintJobAction(context.Background(), "c/1", "j1", "move", &PrintJobActionBody{List: "queued", ToPosition: &pos})
	if err != nil {
		t.Fatal(err)
	}
	if method != "POST" || path != "/connect/v1/clusters/c/1/print_jobs/j1/action/move" {
		t.Errorf("%s %s", method, path)
	}
	data, _ := body["data"].(map[string]any)
	if data["list"] != "queued" || data["to_position"] != 0.0 {
		t.Errorf("body = %v", body)
	}
	if st.ActionID != "a1" || st.Settled() {
		t.Errorf("status = %+v", st)
	}
	if _, err := c.PrinterAction(context.Background(), "c1", "p1", "get_webcam_snapshot", nil); err != nil {
		t.Fatal(err)
	}
	if d, ok := body["data"].(map[string]any); !ok || len(d) != 0 {
		t.Errorf("nil body should send {\"data\":{}}, got %v", body)
	}
}

func TestActionStatusImageURL(t *testing.T) {
	a := ActionStatus{Status: ActionSuccess, StatusDetails: json.RawMessage(`{"type":"x","value":{"image_url":"https://s/i.jpg"}}`)}
	if a.ImageURL() != "https://s/i.jpg" || !a.Settled() {
		t.Errorf("ImageURL = %q", a.ImageURL())
	}
	for _, d := range []string{``, `null`, `"str"`, `{"value":5}`} {
		if got := (ActionStatus{StatusDetails: json.RawMessage(d)}).ImageURL(); got != "" {
			t.Errorf("%s: ImageURL = %q", d, got)
		}
	}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"api.ultimaker.com", "ftp://x/y", "http://", "::"} {
		if _, err := New(Options{BaseURL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

// FuzzDecodeData feeds arbitrary bodies to the decoder of every model the
// bridge reads: it must never panic, and must either fail or fill data.
func FuzzDecodeData(f *testing.F) {
	seed, _ := os.ReadFile("testdata/status.json")
	f.Add(seed)
	f.Add([]byte(`{"data":[{"cluster_id":"x","printer_count":1.5,"host_printer":{"configuration":[{}]}}]}`))
	f.Add([]byte(`{"data":[{"is_due":true,"due_date":12,"task_rule":{"code":null}}]}`))
	f.Add([]byte(`{"data":{"action_id":"a","status_details":{"value":{"image_url":7}}}}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"data":{"generated_time":"2025-13-45T99:99:99Z"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var st ClusterStatus
		_, _ = decodeData(body, &st, nil)
		var cl []Cluster
		var meta struct {
			Meta  *Pagination `json:"meta"`
			Links *Links      `json:"links"`
		}
		_, _ = decodeData(body, &cl, &meta)
		var mt []MaintenanceTask
		_, _ = decodeData(body, &mt, nil)
		var as ActionStatus
		if _, err := decodeData(body, &as, nil); err == nil {
			_ = as.ImageURL()
			_ = as.Settled()
		}
		var jd PrintJobDetails
		_, _ = decodeData(body, &jd, nil)
	})
}
