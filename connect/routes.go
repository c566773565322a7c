package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The routes beyond status and actions: workspace settings and usage,
// reports, print-job lists, cluster notes and sharing, registration,
// materials. Shapes follow the reference (connect-api.md §2, §3); where
// it marks them INFERRED the comment says so.

// Uptime is the API root's answer (ApiUptimeResponse).
type Uptime struct {
	OK      bool    `json:"ok"`
	Time    Time    `json:"time"`
	Uptime  float64 `json:"uptime"`
	Version string  `json:"version"`
}

// Root asks the API root: alive, its time, uptime and version. No token
// needed.
func (c *Client) Root(ctx context.Context) (*Uptime, error) {
	var v Uptime
	if err := c.do(ctx, http.MethodGet, "/", nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// Teapot asks GET /teapot: true when the API answers 418 (as documented),
// false for 204.
func (c *Client) Teapot(ctx context.Context) (bool, error) {
	err := c.do(ctx, http.MethodGet, "/teapot", nil, nil, nil, nil)
	if ae, ok := err.(*APIError); ok && ae.HTTPStatus == http.StatusTeapot {
		return true, nil
	}
	return false, err
}

// Spec returns the API's OpenAPI document, as it is (not enveloped).
func (c *Client) Spec(ctx context.Context, version string) (json.RawMessage, error) {
	var q url.Values
	if version != "" {
		q = url.Values{"version": {version}}
	}
	raw, err := c.raw(ctx, http.MethodGet, "/spec", q)
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, &APIError{Kind: KindBadBody, HTTPStatus: http.StatusOK, Method: http.MethodGet, Path: "/spec",
			Err: fmt.Errorf("not JSON")}
	}
	return raw, nil
}

// AccessibleClusters is the subset of ids the token may access (POST
// /clusters).
func (c *Client) AccessibleClusters(ctx context.Context, ids []string) ([]string, error) {
	var v struct {
		ClusterIDs []string `json:"cluster_ids"`
	}
	body := map[string]any{"data": map[string]any{"cluster_ids": nonNilStrings(ids)}}
	if err := c.do(ctx, http.MethodPost, "/clusters", nil, body, &v, nil); err != nil {
		return nil, err
	}
	return v.ClusterIDs, nil
}

// DeleteCluster removes a cluster from the account.
func (c *Client) DeleteCluster(ctx context.Context, clusterID string) error {
	return c.do(ctx, http.MethodDelete, "/clusters/"+seg(clusterID), nil, nil, nil, nil)
}

// SetClusterNote sets a cluster's note (1 to 3,500 characters); "" clears
// it, sent as a null note (INFERRED: the model's minimum is 1).
func (c *Client) SetClusterNote(ctx context.Context, clusterID, note string) (*Cluster, error) {
	var n any
	if note != "" {
		n = map[string]string{"note": note}
	}
	var v Cluster
	body := map[string]any{"data": map[string]any{"note": n}}
	if err := c.do(ctx, http.MethodPost, "/clusters/"+seg(clusterID)+"/note", nil, body, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// Sharing is a ClusterSharingUpdateRequest: shared with the whole
// organization, or with teams (then organization_shared must be false).
type Sharing struct {
	OrganizationShared bool     `json:"organization_shared"`
	TeamIDs            []string `json:"team_ids"`
}

// ShareCluster changes who sees a cluster.
func (c *Client) ShareCluster(ctx context.Context, clusterID string, s Sharing) (*Cluster, error) {
	var v Cluster
	s.TeamIDs = nonNilStrings(s.TeamIDs)
	if err := c.do(ctx, http.MethodPost, "/clusters/"+seg(clusterID)+"/share", nil, map[string]any{"data": s}, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// ShareAll changes the sharing of every cluster of the workspace (body and
// answer INFERRED: the reference knows only the route's name).
func (c *Client) ShareAll(ctx context.Context, s Sharing) (json.RawMessage, error) {
	var v json.RawMessage
	s.TeamIDs = nonNilStrings(s.TeamIDs)
	if err := c.do(ctx, http.MethodPost, "/clusters/share_all", nil, map[string]any{"data": s}, &v, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// TeamCount counts the clusters shared with each team.
func (c *Client) TeamCount(ctx context.Context, teamIDs []string) (map[string]int, error) {
	var v struct {
		Counts map[string]int `json:"counts"`
	}
	if err := c.do(ctx, http.MethodGet, "/clusters/team_count", url.Values{"team_ids[]": teamIDs}, nil, &v, nil); err != nil {
		return nil, err
	}
	return v.Counts, nil
}

// DeleteTeam removes a team from every resource.
func (c *Client) DeleteTeam(ctx context.Context, teamID string) error {
	return c.do(ctx, http.MethodDelete, "/teams/"+seg(teamID), nil, nil, nil, nil)
}

// UserClusters lists the clusters of a user (the reference's example
// shows one object for a "list": both are accepted).
func (c *Client) UserClusters(ctx context.Context, userID string) ([]Cluster, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/user/"+seg(userID)+"/clusters", nil, nil, &raw, nil); err != nil {
		return nil, err
	}
	var list []Cluster
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		var one Cluster
		if _, err := decodeData(append(append([]byte(`{"data":`), raw...), '}'), &one, nil); err != nil {
			return nil, err
		}
		return []Cluster{one}, nil
	}
	if _, err := decodeData(append(append([]byte(`{"data":`), raw...), '}'), &list, nil); err != nil {
		return nil, err
	}
	return list, nil
}

// Settings are a workspace's OrganizationSettings.
type Settings struct {
	RequirePrintApproval bool `json:"require_print_approval"`
	EnablePrintPrep      bool `json:"enable_print_prep"`
}

// Settings reads the workspace's settings.
func (c *Client) Settings(ctx context.Context) (*Settings, error) {
	var v Settings
	if err := c.do(ctx, http.MethodGet, "/settings", nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// SetSettings writes the workspace's settings and returns them as stored.
func (c *Client) SetSettings(ctx context.Context, s Settings) (*Settings, error) {
	var v Settings
	if err := c.do(ctx, http.MethodPost, "/settings", nil, map[string]any{"data": s}, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// Usage returns what GET /usage answers, passed through: it has no
// published schema.
func (c *Client) Usage(ctx context.Context) (json.RawMessage, error) {
	var v json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/usage", nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// Report is a PrintJobInstanceReportResponse: a print job as the reports
// list it.
type Report struct {
	UUID          string  `json:"uuid"`
	ClusterID     string  `json:"cluster_id"`
	Name          string  `json:"name"`
	Status        string  `json:"status"`
	State         string  `json:"state"`
	Started       bool    `json:"started"`
	TimeTotal     float64 `json:"time_total"`
	TimeElapsed   float64 `json:"time_elapsed"`
	PrinterUUID   string  `json:"printer_uuid,omitempty"`
	PrintedOnUUID string  `json:"printed_on_uuid,omitempty"`
	PrinterName   string  `json:"printer_name,omitempty"`
	Owner         string  `json:"owner,omitempty"`
	CreatedAt     Time    `json:"created_at"`
	UpdatedAt     Time    `json:"updated_at"`
	Hidden        bool    `json:"hidden,omitempty"`
	// PrinterConfiguration is the printer's print cores and materials as
	// the job ran.
	PrinterConfiguration *ReportConfiguration `json:"printer_configuration,omitempty"`
}

// ReportConfiguration is a report's printer_configuration: the part the
// bridge reads.
type ReportConfiguration struct {
	PrintCores []PrintCoreConfiguration `json:"print_cores,omitempty"`
}

// Page is one page of a paginated list.
type Page struct {
	Number     int  `json:"page"`
	TotalPages int  `json:"total_pages"`
	TotalCount int  `json:"total_count"`
	LimitHit   bool `json:"limit_reached"`
}

// ReportQuery narrows GET /print_jobs/reports.
type ReportQuery struct {
	ClusterIDs  []string
	Start, End  time.Time
	Page, Limit int
}

// Reports reads one page of the print-job reports between Start and End
// (ISO date-times as query parameters; their location is INFERRED).
func (c *Client) Reports(ctx context.Context, q ReportQuery) ([]Report, Page, error) {
	v := url.Values{"start_date": {q.Start.UTC().Format(time.RFC3339)}, "end_date": {q.End.UTC().Format(time.RFC3339)}}
	if len(q.ClusterIDs) > 0 {
		v["cluster_ids[]"] = q.ClusterIDs
	}
	pageQuery(v, q.Page, q.Limit)
	var out []Report
	page, err := c.list(ctx, "/print_jobs/reports", v, &out)
	return out, page, err
}

// WalkReports walks every page of the reports between start and end,
// handing each page to visit before the next is read: a farm's month is
// hundreds of thousands of reports, which need not be held at once.
func (c *Client) WalkReports(ctx context.Context, start, end time.Time, visit func([]Report)) error {
	for page := 1; page <= maxPages; page++ {
		rs, p, err := c.Reports(ctx, ReportQuery{Start: start, End: end, Page: page, Limit: 1000})
		if err != nil {
			return err
		}
		visit(rs)
		if len(rs) == 0 || p.TotalPages <= page {
			break
		}
	}
	return nil
}

// PrintJobQuery narrows GET /print_jobs.
type PrintJobQuery struct {
	ClusterIDs  []string
	States      []string // the status[] filter matches a job's state
	Page, Limit int
}

// PrintJobs reads one page of the workspace's print jobs.
func (c *Client) PrintJobs(ctx context.Context, q PrintJobQuery) ([]PrintJob, Page, error) {
	v := url.Values{}
	if len(q.ClusterIDs) > 0 {
		v["cluster_ids[]"] = q.ClusterIDs
	}
	if len(q.States) > 0 {
		v["status[]"] = q.States
	}
	pageQuery(v, q.Page, q.Limit)
	var out []PrintJob
	page, err := c.list(ctx, "/print_jobs", v, &out)
	return out, page, err
}

// Filter is a FilterResponse: one filter the print-job list offers.
type Filter struct {
	Key         string `json:"key"`
	DisplayName string `json:"display_name"`
	Type        string `json:"type"`
	Options     []struct {
		Key         string `json:"key"`
		DisplayName string `json:"display_name,omitempty"`
	} `json:"options,omitempty"`
}

// Filters lists the filters of the print-job list.
func (c *Client) Filters(ctx context.Context) ([]Filter, error) {
	var v []Filter
	if err := c.do(ctx, http.MethodGet, "/filters/print_jobs", nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// PrintJobRaw fetches one print job with its source file (slicer
// metadata, material estimates) as the cloud sends it.
func (c *Client) PrintJobRaw(ctx context.Context, clusterID, jobUUID string) (json.RawMessage, error) {
	var v json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/clusters/"+seg(clusterID)+"/print_jobs/"+seg(jobUUID), nil, nil, &v, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// SetJobNote sets the note of a print job (at most 500 characters).
func (c *Client) SetJobNote(ctx context.Context, clusterID, jobUUID, note string) (*PrintJobDetails, error) {
	var v PrintJobDetails
	body := map[string]any{"data": map[string]any{"note": note}}
	if err := c.do(ctx, http.MethodPost, "/clusters/"+seg(clusterID)+"/print_jobs/"+seg(jobUUID), nil, body, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// CompletedMaintenance is a PrinterMaintenanceCompletedLogEntriesResponse.
type CompletedMaintenance struct {
	CompletedAt Time     `json:"completed_at"`
	TaskCodes   []string `json:"task_codes"`
	UserID      string   `json:"user_id"`
	Username    string   `json:"username"`
}

// CompletedMaintenance reads the first page of a cluster's maintenance
// log, newest first, at most limit entries.
func (c *Client) CompletedMaintenance(ctx context.Context, clusterID string, limit int) ([]CompletedMaintenance, error) {
	v := url.Values{}
	pageQuery(v, 1, limit)
	var out []CompletedMaintenance
	_, err := c.list(ctx, "/clusters/"+seg(clusterID)+"/maintenance/completed", v, &out)
	return out, err
}

// Registration is a RegistrationResponse: the cluster a printer joined.
type Registration struct {
	ClusterID     string `json:"cluster_id"`
	HostName      string `json:"host_name"`
	GeneratedTime Time   `json:"generated_time"`
}

// ConfirmRegistrationPIN registers a printer by the PIN on its screen.
func (c *Client) ConfirmRegistrationPIN(ctx context.Context, pin, brand string) (*Registration, error) {
	var q url.Values
	if brand != "" {
		q = url.Values{"printer_brand": {brand}}
	}
	var v Registration
	if err := c.do(ctx, http.MethodPost, "/confirm-registration-pin/"+seg(pin), q, map[string]any{"data": map[string]any{}}, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// ConfirmRegistration registers a printer by its connection id.
func (c *Client) ConfirmRegistration(ctx context.Context, connectionID string) (*Registration, error) {
	var v Registration
	if err := c.do(ctx, http.MethodPost, "/confirm-registration/"+seg(connectionID), nil, map[string]any{"data": map[string]any{}}, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// RegisterMakerBot adds a MakerBot printer by its host GUID.
func (c *Client) RegisterMakerBot(ctx context.Context, printerID string) (*Registration, error) {
	var v Registration
	body := map[string]any{"data": map[string]any{"printer_id": printerID}}
	if err := c.do(ctx, http.MethodPut, "/makerbot/printers", nil, body, &v, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// MaterialProfile is a MaterialProfileResponse.
type MaterialProfile struct {
	MaterialProfileID   string  `json:"material_profile_id"`
	MaterialProfileName string  `json:"material_profile_name"`
	ContentType         string  `json:"content_type"`
	FileSize            float64 `json:"file_size,omitempty"`
	Status              string  `json:"status"`
	StatusDescription   string  `json:"status_description,omitempty"`
	UploadURL           string  `json:"upload_url,omitempty"`
	ClientID            string  `json:"client_id,omitempty"`
	UserID              string  `json:"user_id,omitempty"`
	Username            string  `json:"username,omitempty"`
}

// UploadMaterial announces a material profile (PUT /materials/upload),
// then sends its bytes to the signed upload URL the API returns, with the
// same content type (Cura: application/zip for a .umm).
func (c *Client) UploadMaterial(ctx context.Context, name, contentType string, content []byte) (*MaterialProfile, error) {
	var v MaterialProfile
	body := map[string]any{"data": map[string]any{"content_type": contentType, "file_size": len(content),
		"material_profile_name": name, "origin": "ultimaker2mqtt"}}
	if err := c.do(ctx, http.MethodPut, "/materials/upload", nil, body, &v, nil); err != nil {
		return nil, err
	}
	if v.UploadURL == "" {
		return nil, &APIError{Kind: KindBadBody, Method: http.MethodPut, Path: "/materials/upload", Err: fmt.Errorf("no upload_url")}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, v.UploadURL, bytes.NewReader(content))
	if err != nil {
		return nil, &APIError{Kind: KindBadBody, Method: http.MethodPut, Path: "upload_url", Err: err}
	}
	req.Header.Set("Content-Type", contentType)
	// The signed URL is storage, not the API: no bearer token goes there.
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &APIError{Kind: KindNetwork, Method: http.MethodPut, Path: "upload_url", Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &APIError{Kind: kindForStatus(resp.StatusCode), HTTPStatus: resp.StatusCode, Method: http.MethodPut,
			Path: "upload_url", Title: http.StatusText(resp.StatusCode)}
	}
	return &v, nil
}

// list reads one page of a paginated list into out.
func (c *Client) list(ctx context.Context, path string, q url.Values, out any) (Page, error) {
	var meta struct {
		Meta *Pagination `json:"meta"`
	}
	if err := c.do(ctx, http.MethodGet, path, q, nil, out, &meta); err != nil {
		return Page{}, err
	}
	p := Page{Number: atoiOr(q.Get("page"), 1)}
	if meta.Meta != nil {
		p.TotalPages, p.TotalCount, p.LimitHit = int(meta.Meta.Page.TotalPages), int(meta.Meta.Page.TotalCount), meta.Meta.LimitReached
	}
	return p, nil
}

// raw performs a GET whose answer is not enveloped.
func (c *Client) raw(ctx context.Context, method, path string, q url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = q.Encode()
	resp, raw, _, err := c.roundTrip(ctx, method, u.String(), path, nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, newHTTPError(method, path, resp, raw, c.now())
	}
	return raw, nil
}

func pageQuery(v url.Values, page, limit int) {
	if page > 0 {
		v.Set("page", strconv.Itoa(page))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
}

func atoiOr(s string, d int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return d
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
