// Package state is the bridge's own model of clusters, printers and print jobs, built once from Connect responses.
package state

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"math"
	"strconv"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// etaJitter is how far a new finish-time estimate may move before we
// publish it: estimates wobble by seconds every poll, and a timestamp that
// changes every poll floods recorders.
const etaJitter = 2 * time.Minute

// Printer is one printer as the bridge publishes it on <base>/printers/<id>/state.
type Printer struct {
	ID             string `json:"id"`
	UUID           string `json:"uuid"`
	UniqueName     string `json:"unique_name"`
	FriendlyName   string `json:"friendly_name"`
	MachineVariant string `json:"machine_variant"`
	Cluster        string `json:"cluster"`
	ClusterID      string `json:"cluster_id"`
	Status         string `json:"status"`
	PrinterStatus  string `json:"printer_status"`
	Online         bool   `json:"online"`
	Enabled        bool   `json:"enabled"`
	Printing       bool   `json:"printing"`
	// StatusSince is when the printer took its status, as far as the
	// bridge saw (its first poll, for a status it found).
	StatusSince time.Time   `json:"status_since"`
	Job         *Job        `json:"job"`
	LastJob     *LastJob    `json:"last_job"`
	Extruders   []Extruder  `json:"extruders"`
	BuildPlate  *BuildPlate `json:"build_plate"`
	Chamber     *Chamber    `json:"chamber,omitempty"` // only where the printer reports one
	Firmware    Firmware    `json:"firmware"`
	Maintenance Maintenance `json:"maintenance"`
	Errors      []string    `json:"errors"`
	IPAddress   string      `json:"ip_address"`
	Camera      *Camera     `json:"camera,omitempty"` // only from the LAN
	// LocalURL is the printer's own web page, when it is read on the LAN.
	LocalURL string `json:"local_url,omitempty"`
	// Source says who feeds this state now: cloud, local or cloud+local.
	Source string `json:"source"`
	// LocalAuth is "required" when the printer on the LAN refuses the
	// bridge: reads need pairing, or the credential was revoked.
	LocalAuth string    `json:"local_auth,omitempty"`
	UpdatedAt time.Time `json:"updated_at"` // last: see encoded

	// encoded is the printer's JSON with a zero updated_at, made once by
	// Build: its sum decides whether the printer changed and it becomes
	// the published payload (JSON), so the state is encoded once per poll.
	// A state kept after publishing drops it (Compact) and keeps the sum.
	encoded []byte
	sum     uint64
}

// Job is the print job currently on a printer.
type Job struct {
	UUID          string     `json:"uuid"`
	Name          string     `json:"name"`
	Status        string     `json:"status"`
	Owner         string     `json:"owner"`
	Progress      float64    `json:"progress"`
	TimeElapsed   int64      `json:"time_elapsed"`
	TimeTotal     int64      `json:"time_total"`
	TimeRemaining int64      `json:"time_remaining"`
	StartedAt     *time.Time `json:"started_at"`
	ETA           *time.Time `json:"eta"`
	PreviewURL    string     `json:"preview_url"`

	// elapsed is the exact time elapsed (TimeElapsed is to the minute):
	// whether a job ended short of its time is told from it.
	elapsed int64
}

// endedShort reports whether a job that ended did so short of its time:
// it was aborted (Cura's reading of a job in wait_cleanup).
func (j *Job) endedShort() bool { return j.TimeTotal > 0 && j.elapsed < j.TimeTotal-1 }

// LastJob is the most recent job that ended on a printer; it stays after
// the job leaves the cloud's history.
type LastJob struct {
	UUID    string     `json:"uuid"`
	Name    string     `json:"name"`
	Result  string     `json:"result"`
	EndedAt *time.Time `json:"ended_at"`
}

// Extruder is one print core and its material.
type Extruder struct {
	Index             int      `json:"index"`
	PrintCore         string   `json:"print_core"`
	Material          string   `json:"material"`
	Brand             string   `json:"brand"`
	Color             string   `json:"color"`
	MaterialGUID      string   `json:"material_guid"`
	MaterialRemaining *float64 `json:"material_remaining"`
	// The hotend's temperature and target (°C): only the LAN has them.
	HotendTemperature *float64 `json:"hotend_temperature,omitempty"`
	HotendTarget      *float64 `json:"hotend_target,omitempty"`
}

// BuildPlate is the build plate type and temperature.
type BuildPlate struct {
	Type        string   `json:"type"`
	Temperature *float64 `json:"temperature"`
	Target      *float64 `json:"target,omitempty"` // only the LAN has it
}

// Camera is where a printer's camera is read on the LAN.
type Camera struct {
	SnapshotURL string `json:"snapshot_url"`
	StreamURL   string `json:"stream_url"`
}

// Chamber is the build chamber's temperature (°C).
type Chamber struct {
	Temperature *float64 `json:"temperature"`
}

// Firmware is the installed and the latest firmware.
type Firmware struct {
	Version         string `json:"version"`
	Latest          string `json:"latest"`
	UpdateStatus    string `json:"update_status"`
	UpdateAvailable bool   `json:"update_available"`
}

// Maintenance is a printer's maintenance state.
type Maintenance struct {
	Required bool     `json:"required"`
	TasksDue []string `json:"tasks_due"`
}

// Cluster is one cluster as published on <base>/clusters/<id>/state.
type Cluster struct {
	ID                string            `json:"id"`
	ClusterID         string            `json:"cluster_id"`
	HostName          string            `json:"host_name"`
	FriendlyName      string            `json:"friendly_name"`
	Online            bool              `json:"online"`
	PrinterType       string            `json:"printer_type"`
	HostVersion       string            `json:"host_version"`
	Capabilities      []string          `json:"capabilities"`
	Printers          []string          `json:"printers"`
	PrintersOnline    int               `json:"printers_online"`
	Queue             []QueuedJob       `json:"queue"`
	RecentlyCompleted []CompletedJob    `json:"recently_completed"`
	Maintenance       []MaintenanceTask `json:"maintenance"`
	MaintenanceDue    bool              `json:"maintenance_due"`
	// MaintenanceHistory is the newest entries of the maintenance log.
	MaintenanceHistory []MaintenanceEntry `json:"maintenance_history"`
	Note               string             `json:"note"`
	OrganizationShared bool               `json:"organization_shared"`
	TeamIDs            []string           `json:"team_ids"`
	UpdatedAt          time.Time          `json:"updated_at"` // last: see encoded

	encoded []byte // as Printer.encoded
	sum     uint64 // as Printer.sum
}

// QueuedJob is a job waiting in a cluster's queue.
type QueuedJob struct {
	UUID      string `json:"uuid"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Position  int    `json:"position"`
	Owner     string `json:"owner"`
	TimeTotal int64  `json:"time_total"`
	Force     bool   `json:"force"`
}

// CompletedJob is a job from a cluster's recent history.
type CompletedJob struct {
	UUID    string `json:"uuid"`
	Name    string `json:"name"`
	Result  string `json:"result"`
	Printer string `json:"printer"`
}

// MaintenanceTask is a pending maintenance task of a cluster.
type MaintenanceTask struct {
	Code    string     `json:"code"`
	Due     bool       `json:"due"`
	DueDate *time.Time `json:"due_date"`
}

// View is everything the bridge knows of one cluster after a poll.
type View struct {
	Cluster  Cluster
	Printers []Printer
	// ClusterChanged and PrinterChanged (one per printer) say whether the
	// content differs from the previous view. Publishing is decided from
	// these, not from updated_at: two changes within one second share an
	// updated_at, and the second must still be published.
	ClusterChanged bool
	PrinterChanged []bool
}

// Observation is what one poll of a cluster returned. Status is nil when
// only the cluster list is known (an offline cluster whose status failed).
type Observation struct {
	Cluster     connect.Cluster
	Status      *connect.ClusterStatus
	Maintenance []connect.MaintenanceTask // nil: not fetched yet, keep the previous
	// Completed is the maintenance log, newest first; nil: keep the previous.
	Completed []connect.CompletedMaintenance
	Now       time.Time
	// Source is who observed: SourceCloud (when empty) or SourceLocal.
	Source string
	// Live are what only the LAN reads, by printer unique name.
	Live map[string]Live
}

// Sources of a printer's state.
const (
	SourceCloud = "cloud"
	SourceLocal = "local"
	SourceBoth  = "cloud+local"
)

// LocalAuthRequired is the local_auth of a printer that refuses the bridge.
const LocalAuthRequired = "required"

// Live is what a printer's LAN API adds to its state.
type Live struct {
	Hotends    []Temperature // by extruder index
	BuildPlate *Temperature
	Camera     *Camera
	LocalAuth  string
	URL        string // the printer's own web page
}

// Temperature is a reading and its target (°C); nil when not reported.
type Temperature struct{ Current, Target *float64 }

// ClusterKey is the topic id of a cluster: its host name, made topic-safe,
// or its cloud id when the host name is empty.
func ClusterKey(c connect.Cluster) string {
	if k := topics.Segment(c.HostName); k != "" {
		return k
	}
	if k := topics.Segment(c.ClusterID); k != "" {
		return k
	}
	return "cluster"
}

// PrinterKey is the topic id of the i-th printer of cluster c: its unique
// name, else its UUID, else the cluster's key (plus the position in the
// cluster when it holds several printers). MakerBot printers have an empty
// GUID, so the fallbacks matter.
func PrinterKey(p connect.Printer, c connect.Cluster, i, n int) string {
	if k := topics.Segment(p.UniqueName); k != "" {
		return k
	}
	if k := topics.Segment(p.UUID); k != "" {
		return k
	}
	if n <= 1 {
		return ClusterKey(c)
	}
	return ClusterKey(c) + "-" + strconv.Itoa(i+1)
}

// Build turns an observation into the bridge's model. prev, when not nil,
// is the previous view of the same cluster: held values (start time, ETA,
// last job, maintenance, updated_at) carry over from it.
func Build(obs Observation, prev *View) View {
	now := obs.Now.UTC().Truncate(time.Second)
	c := obs.Cluster
	v := View{Cluster: Cluster{
		ID: ClusterKey(c), ClusterID: c.ClusterID, HostName: c.HostName, FriendlyName: c.FriendlyName,
		Online: c.IsOnline, PrinterType: c.PrinterType, HostVersion: c.HostVersion, Capabilities: nonNil(c.Capabilities),
		Printers: []string{}, Queue: []QueuedJob{}, RecentlyCompleted: []CompletedJob{}, Maintenance: []MaintenanceTask{},
		MaintenanceHistory: []MaintenanceEntry{}, OrganizationShared: c.OrganizationShared, TeamIDs: nonNil(c.TeamIDs),
	}}
	if c.Note != nil {
		v.Cluster.Note = c.Note.Note
	}
	var printers []connect.Printer
	var jobs, recent []connect.PrintJob
	if st := obs.Status; st != nil {
		if st.IsOnline != nil {
			v.Cluster.Online = v.Cluster.Online && *st.IsOnline
		}
		printers, jobs, recent = st.Printers, st.PrintJobs, st.RecentlyCompleted
	} else if c.HostPrinter != nil {
		printers = []connect.Printer{*c.HostPrinter}
	}

	prevPrinters := map[string]*Printer{}
	if prev != nil {
		for i := range prev.Printers {
			prevPrinters[prev.Printers[i].ID] = &prev.Printers[i]
		}
	}

	// Maintenance is polled rarely; keep the last answer in between.
	if obs.Maintenance != nil {
		for _, m := range obs.Maintenance {
			v.Cluster.Maintenance = append(v.Cluster.Maintenance, MaintenanceTask{Code: m.TaskRule.Code, Due: m.IsDue, DueDate: timePtr(m.DueDate.Time)})
		}
	} else if prev != nil {
		v.Cluster.Maintenance = prev.Cluster.Maintenance
	}
	if obs.Completed != nil {
		for _, e := range obs.Completed[:min(len(obs.Completed), MaintenanceHistoryLength)] {
			v.Cluster.MaintenanceHistory = append(v.Cluster.MaintenanceHistory, MaintenanceEntry{
				CompletedAt: timePtr(e.CompletedAt.Time), TaskCodes: nonNil(e.TaskCodes), Username: e.Username})
		}
	} else if prev != nil {
		v.Cluster.MaintenanceHistory = prev.Cluster.MaintenanceHistory
	}
	var tasksDue []string
	for _, m := range v.Cluster.Maintenance {
		if m.Due {
			tasksDue = append(tasksDue, m.Code)
		}
	}
	v.Cluster.MaintenanceDue = c.MaintenanceDue || len(tasksDue) > 0

	pos := 0
	for _, j := range jobs {
		if isQueued(j.Status) {
			v.Cluster.Queue = append(v.Cluster.Queue, QueuedJob{UUID: j.UUID, Name: j.Name, Status: j.Status, Position: pos,
				Owner: j.Owner, TimeTotal: seconds(j.TimeTotal), Force: j.Force})
			pos++
		}
	}
	for _, j := range recent {
		v.Cluster.RecentlyCompleted = append(v.Cluster.RecentlyCompleted, CompletedJob{UUID: j.UUID, Name: j.Name,
			Result: jobResult(j), Printer: j.PrinterName})
	}

	for i, cp := range printers {
		p := Printer{
			ID: PrinterKey(cp, c, i, len(printers)), UUID: cp.UUID, UniqueName: cp.UniqueName, FriendlyName: cp.FriendlyName,
			MachineVariant: cp.MachineVariant, Cluster: v.Cluster.ID, ClusterID: c.ClusterID, PrinterStatus: cp.Status,
			Enabled: cp.Enabled, IPAddress: cp.IPAddress, Extruders: []Extruder{}, Errors: []string{},
			Online: v.Cluster.Online && cp.Status != "unreachable",
			Firmware: Firmware{Version: cp.FirmwareVersion, Latest: cp.LatestAvailableFirmware, UpdateStatus: cp.FirmwareUpdateStatus,
				UpdateAvailable: cp.FirmwareUpdateStatus == "update_available" ||
					(cp.LatestAvailableFirmware != "" && cp.FirmwareVersion != "" && cp.LatestAvailableFirmware != cp.FirmwareVersion &&
						cp.FirmwareUpdateStatus != "up_to_date")},
			Maintenance: Maintenance{Required: cp.MaintenanceRequired, TasksDue: []string{}},
		}
		// Pending maintenance is reported per cluster; it belongs to the
		// printer only when the cluster is that one printer.
		if len(printers) == 1 {
			p.Maintenance.TasksDue = append(p.Maintenance.TasksDue, tasksDue...)
			p.Maintenance.Required = p.Maintenance.Required || len(tasksDue) > 0
		}
		for _, e := range cp.Errors {
			p.Errors = append(p.Errors, e.Code)
		}
		for _, f := range cp.Faults {
			p.Errors = append(p.Errors, f.Code)
		}
		for _, cfg := range cp.Configuration {
			p.Extruders = append(p.Extruders, extruderOf(cfg))
		}
		if cp.BuildPlate != nil {
			p.BuildPlate = &BuildPlate{Type: cp.BuildPlate.Type, Temperature: round1(cp.BuildPlate.Temperature)}
		}
		if cp.Chamber != nil && round1(cp.Chamber.Temperature) != nil {
			p.Chamber = &Chamber{Temperature: round1(cp.Chamber.Temperature)}
		}
		p.Source = nonEmpty(obs.Source, SourceCloud)
		if live, ok := obs.Live[cp.UniqueName]; ok {
			applyLive(&p, live)
		}
		pp := prevPrinters[p.ID]
		if j := jobOn(cp, jobs, len(printers)); j != nil {
			p.Job = buildJob(*j, now, pp)
		}
		p.LastJob = lastJob(cp, recent, len(printers), now, pp)
		p.Status = printerStatus(p, cp)
		p.Printing = p.Job != nil && isRunning(p.Job.Status)
		if p.Online {
			v.Cluster.PrintersOnline++
		}
		v.Cluster.Printers = append(v.Cluster.Printers, p.ID)

		if pp != nil {
			holdWithin(&p, pp)
		}
		p.StatusSince = now
		if pp != nil && pp.Status == p.Status && !pp.StatusSince.IsZero() {
			p.StatusSince = pp.StatusSince
		}
		p.encoded, p.sum = encodeContent(p)
		p.UpdatedAt = now
		changed := pp == nil || pp.contentSum() != p.sum
		if !changed {
			p.UpdatedAt = pp.UpdatedAt
		}
		v.Printers = append(v.Printers, p)
		v.PrinterChanged = append(v.PrinterChanged, changed)
	}
	v.Cluster.encoded, v.Cluster.sum = encodeContent(v.Cluster)
	v.Cluster.UpdatedAt = now
	v.ClusterChanged = prev == nil || prev.Cluster.contentSum() != v.Cluster.sum
	if !v.ClusterChanged {
		v.Cluster.UpdatedAt = prev.Cluster.UpdatedAt
	}
	return v
}

// printerStatus merges printer and job status into one value: what a
// person would say the printer is doing.
func printerStatus(p Printer, cp connect.Printer) string {
	switch {
	case !p.Online:
		return "offline"
	case cp.Status == "error" || cp.Status == "maintenance" || cp.Status == "booting":
		return cp.Status
	case p.Job != nil && p.Job.Status != "":
		return p.Job.Status
	case !cp.Enabled:
		return "disabled"
	case cp.Status == "":
		return "unknown"
	}
	return cp.Status
}

// jobOn finds the job on printer cp. Jobs name their printer by UUID; a
// MakerBot has none, so fall back to the name, or to the only printer.
func jobOn(cp connect.Printer, jobs []connect.PrintJob, nPrinters int) *connect.PrintJob {
	for i := range jobs {
		j := &jobs[i]
		if isQueued(j.Status) || j.Status == "finished" || j.Status == "aborted" {
			continue
		}
		switch {
		case cp.UUID != "" && (j.PrinterUUID == cp.UUID || j.PrintedOnUUID == cp.UUID):
			return j
		case cp.UUID == "" && cp.FriendlyName != "" && (j.PrinterName == cp.FriendlyName || j.AssignedTo == cp.FriendlyName):
			return j
		case cp.UUID == "" && nPrinters == 1 && j.Started:
			return j
		}
	}
	return nil
}

func buildJob(j connect.PrintJob, now time.Time, prev *Printer) *Job {
	total := max(seconds(j.TimeTotal), 0)
	elapsed := max(seconds(j.TimeElapsed), 0) // may pass total: estimates run over
	remaining := seconds(j.TimeRemaining)
	if remaining <= 0 && total > 0 {
		remaining = max(total-elapsed, 0)
	}
	remaining = max(remaining, 0)
	// The running times are kept to the minute: they tick, and each tick
	// would be a state message (start and ETA give the exact figures).
	out := &Job{UUID: j.UUID, Name: j.Name, Status: j.Status, Owner: j.Owner, TimeElapsed: elapsed / 60 * 60,
		TimeTotal: total, TimeRemaining: (remaining + 59) / 60 * 60, PreviewURL: j.PreviewURL, elapsed: elapsed}
	if total > 0 {
		// Rounded up to the minute, but never more than the whole job.
		out.TimeRemaining = min(out.TimeRemaining, total)
	}
	if total > 0 {
		out.Progress = math.Round(min(float64(elapsed)/float64(total), 1)*1000) / 10
	}
	var held *Job
	if prev != nil && prev.Job != nil && prev.Job.UUID == j.UUID {
		held = prev.Job
	}
	switch {
	case held != nil && held.StartedAt != nil:
		out.StartedAt = held.StartedAt
	case elapsed > 0 || j.Status == "printing":
		out.StartedAt = timePtr(now.Add(-time.Duration(elapsed) * time.Second))
	}
	// No finish time while paused: it moves with every minute of the
	// pause, and the last estimate would soon lie in the past.
	if (isRunning(j.Status) || j.Status == "wait_cleanup" || j.Status == "wait_user_action") && !paused(j.Status) {
		eta := now.Add(time.Duration(remaining) * time.Second)
		if held != nil && held.ETA != nil && absDur(held.ETA.Sub(eta)) < etaJitter {
			eta = *held.ETA
		}
		out.ETA = &eta
	}
	return out
}

// lastJob finds the newest completed job of cp in the cluster's history.
func lastJob(cp connect.Printer, recent []connect.PrintJob, nPrinters int, now time.Time, prev *Printer) *LastJob {
	for _, j := range recent { // newest first
		mine := (cp.UUID != "" && (j.PrinterUUID == cp.UUID || j.PrintedOnUUID == cp.UUID)) ||
			(cp.FriendlyName != "" && j.PrinterName == cp.FriendlyName) || nPrinters == 1
		if !mine {
			continue
		}
		lj := &LastJob{UUID: j.UUID, Name: j.Name, Result: jobResult(j)}
		switch {
		case prev != nil && prev.LastJob != nil && prev.LastJob.UUID == j.UUID:
			lj.EndedAt = prev.LastJob.EndedAt
		case prev != nil:
			// Seen ending now; on the first poll we cannot know when.
			lj.EndedAt = timePtr(now)
		}
		return lj
	}
	if prev != nil {
		return prev.LastJob
	}
	return nil
}

// jobResult reduces a finished job's status to finished, aborted or
// failed. A job left in wait_cleanup short of its total was aborted
// (Cura's reading).
func jobResult(j connect.PrintJob) string {
	switch j.Status {
	case "finished", "aborted", "failed":
		return j.Status
	case "error":
		return "failed"
	case "wait_cleanup":
		if j.TimeTotal > 0 && j.TimeElapsed < j.TimeTotal-1 {
			return "aborted"
		}
		return "finished"
	}
	return j.Status
}

func extruderOf(cfg connect.PrintCoreConfiguration) Extruder {
	e := Extruder{Index: int(cfg.ExtruderIndex), PrintCore: cfg.PrintCoreID}
	if m := cfg.Material; m != nil {
		e.Material, e.Brand, e.Color, e.MaterialGUID = m.Material, m.Brand, m.Color, m.GUID
	}
	if cfg.EstimatedMaterialVolume != nil && cfg.OriginalMaterialVolume != nil && *cfg.OriginalMaterialVolume > 0 {
		pct := math.Round(min(max(*cfg.EstimatedMaterialVolume / *cfg.OriginalMaterialVolume, 0), 1) * 100)
		e.MaterialRemaining = &pct
	}
	return e
}

// zeroUpdatedAt ends the encoding of a Printer or Cluster whose
// updated_at is zero: updated_at is their last field.
var zeroUpdatedAt = []byte(`"updated_at":"0001-01-01T00:00:00Z"}`)

// contentSeed seeds the sums of encodings, which are only compared within
// one run: 64 bits tell a change from none (a chance in 2^64 to miss one),
// in a tenth of the time of SHA-256.
var contentSeed = maphash.MakeSeed()

// encodeContent encodes v (a Printer or Cluster with a zero updated_at)
// and sums the encoding.
func encodeContent(v any) ([]byte, uint64) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("state: " + err.Error()) // our own types always marshal
	}
	return b, maphash.Bytes(contentSeed, b)
}

// withUpdatedAt turns a content encoding into the published JSON.
func withUpdatedAt(content []byte, at time.Time) []byte {
	head := content[:len(content)-len(zeroUpdatedAt)]
	out := make([]byte, 0, len(content)+8)
	out = append(out, head...)
	out = append(out, `"updated_at":`...)
	out = at.AppendFormat(append(out, '"'), time.RFC3339Nano)
	return append(out, `"}`...)
}

// contentOf is p's content encoding, made now if Build did not or it was
// dropped (Compact).
func (p Printer) contentOf() []byte {
	if p.encoded != nil {
		return p.encoded
	}
	p.UpdatedAt = time.Time{}
	b, _ := encodeContent(p)
	return b
}

func (c Cluster) contentOf() []byte {
	if c.encoded != nil {
		return c.encoded
	}
	c.UpdatedAt = time.Time{}
	b, _ := encodeContent(c)
	return b
}

// contentSum is the sum of p's content encoding.
func (p Printer) contentSum() uint64 {
	if p.encoded == nil && p.sum == 0 {
		return maphash.Bytes(contentSeed, p.contentOf())
	}
	return p.sum
}

func (c Cluster) contentSum() uint64 {
	if c.encoded == nil && c.sum == 0 {
		return maphash.Bytes(contentSeed, c.contentOf())
	}
	return c.sum
}

// Compact is p without its content encoding, for keeping once published:
// the encoding is a copy of the state (2 KB a printer) that only the next
// publish needed. Changes are still told from its sum; JSON encodes again.
func (p Printer) Compact() Printer {
	p.encoded = nil
	return p
}

// Compact is c without its content encoding; see Printer.Compact.
func (c Cluster) Compact() Cluster {
	c.encoded = nil
	return c
}

// Compact drops the content encodings of v's states; see Printer.Compact.
func (v *View) Compact() {
	v.Cluster = v.Cluster.Compact()
	for i := range v.Printers {
		v.Printers[i] = v.Printers[i].Compact()
	}
}

// JSON is the printer's state payload, reusing the encoding Build made.
func (p Printer) JSON() []byte { return withUpdatedAt(p.contentOf(), p.UpdatedAt.UTC()) }

// JSON is the cluster's state payload, reusing the encoding Build made.
func (c Cluster) JSON() []byte { return withUpdatedAt(c.contentOf(), c.UpdatedAt.UTC()) }

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// seconds converts an API number of seconds, which may arrive as a float,
// NaN-safe and clamped to a sane range.
func seconds(f float64) int64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return int64(math.Round(min(max(f, -1e9), 1e9)))
}

func round1(f *float64) *float64 {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return nil
	}
	v := math.Round(*f*10) / 10
	return &v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC().Truncate(time.Second)
	return &t
}

func nonEmpty(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TopicID is the printer's id in topics.
func (p Printer) TopicID() string { return p.ID }

// TopicID is the cluster's id in topics.
func (c Cluster) TopicID() string { return c.ID }

// OwnerKey is what decides which member of a group of bridges owns the
// printer: its cluster's cloud id, or for a printer read on the LAN only,
// its LAN cluster (the printer, or its group's host). The pollers and the
// command handler deal by it alike.
func (p Printer) OwnerKey() string { return ownerKey(p.ClusterID, p.Cluster) }

// OwnerKey is the cluster's key in a group of bridges (see
// Printer.OwnerKey).
func (c Cluster) OwnerKey() string { return ownerKey(c.ClusterID, c.ID) }

// LANOwnerKey is the key of a LAN printer or group host the cloud does
// not know, by its cluster's topic id.
func LANOwnerKey(clusterTopicID string) string { return "lan:" + clusterTopicID }

func ownerKey(cloudID, topicID string) string {
	if cloudID != "" {
		return cloudID
	}
	return LANOwnerKey(topicID)
}
