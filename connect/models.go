package connect

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Time is a Connect timestamp. It decodes RFC 3339 (the API's ISO 8601 with
// milliseconds and Z) and the root endpoint's "YYYY-MM-DD HH:MM:SS"; anything
// else, null or absent decodes to the zero time rather than failing the whole
// response, because one odd timestamp must not hide a printer.
type Time struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	t.Time = time.Time{}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return nil // a number or object where a time belongs: treat as absent
	}
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05"} {
		if v, err := time.Parse(layout, s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return nil
}

// MarshalJSON implements json.Marshaler in the API's own format.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format("2006-01-02T15:04:05.000Z"))
}

// Cluster is a ClusterResponse: one printer group (a single printer is a
// cluster of one).
type Cluster struct {
	ClusterID              string       `json:"cluster_id"`
	HostGUID               string       `json:"host_guid"`
	HostName               string       `json:"host_name"`
	FriendlyName           string       `json:"friendly_name"`
	PrinterCount           float64      `json:"printer_count"`
	Status                 string       `json:"status"`
	IsOnline               bool         `json:"is_online"`
	HostVersion            string       `json:"host_version,omitempty"`
	HostInternalIP         string       `json:"host_internal_ip,omitempty"`
	PrinterType            string       `json:"printer_type,omitempty"`
	Capabilities           []string     `json:"capabilities,omitempty"`
	OrganizationID         string       `json:"organization_id,omitempty"`
	OrganizationShared     bool         `json:"organization_shared,omitempty"`
	TeamIDs                []string     `json:"team_ids,omitempty"`
	Note                   *ClusterNote `json:"note,omitempty"`
	UserID                 string       `json:"user_id,omitempty"`
	MaintenanceDue         bool         `json:"maintenance_due,omitempty"`
	DisplayStatus          string       `json:"display_status,omitempty"`
	HostPrinter            *Printer     `json:"host_printer,omitempty"`
	HostCurrentPrintJob    *PrintJob    `json:"host_current_print_job,omitempty"`
	HostPrintJobCount      float64      `json:"host_print_job_count,omitempty"`
	HostRemainingPrintTime float64      `json:"host_remaining_print_time,omitempty"`
}

// ClusterNote is a cluster's note.
type ClusterNote struct {
	Note string `json:"note"`
}

// ClusterStatus is a ClusterStatusResponse: the live view of one cluster.
type ClusterStatus struct {
	GeneratedTime     Time       `json:"generated_time"`
	IsOnline          *bool      `json:"is_online,omitempty"`
	Printers          []Printer  `json:"printers"`
	PrintJobs         []PrintJob `json:"print_jobs"`
	RecentlyCompleted []PrintJob `json:"recently_completed"`
}

// Printer is a ClusterPrinterStatus.
type Printer struct {
	UUID                    string                   `json:"uuid"`
	UniqueName              string                   `json:"unique_name"`
	FriendlyName            string                   `json:"friendly_name"`
	MachineVariant          string                   `json:"machine_variant"`
	Status                  string                   `json:"status"`
	StatusDetail            string                   `json:"status_detail,omitempty"`
	Enabled                 bool                     `json:"enabled"`
	Configuration           []PrintCoreConfiguration `json:"configuration,omitempty"`
	BuildPlate              *BuildPlate              `json:"build_plate,omitempty"`
	Chamber                 *Chamber                 `json:"chamber,omitempty"`
	MaterialStation         *MaterialStation         `json:"material_station,omitempty"`
	Errors                  []PrinterError           `json:"errors,omitempty"`
	Faults                  []PrinterFault           `json:"faults,omitempty"`
	FirmwareVersion         string                   `json:"firmware_version,omitempty"`
	LatestAvailableFirmware string                   `json:"latest_available_firmware,omitempty"`
	FirmwareUpdateStatus    string                   `json:"firmware_update_status,omitempty"`
	IPAddress               string                   `json:"ip_address,omitempty"`
	MaintenanceRequired     bool                     `json:"maintenance_required,omitempty"`
	ReservedBy              string                   `json:"reserved_by,omitempty"`
}

// PrintCoreConfiguration is one extruder: its print core and material.
type PrintCoreConfiguration struct {
	ExtruderIndex           float64   `json:"extruder_index"`
	PrintCoreID             string    `json:"print_core_id,omitempty"`
	Material                *Material `json:"material,omitempty"`
	Temperature             *float64  `json:"temperature,omitempty"`
	EstimatedMaterialVolume *float64  `json:"estimated_material_volume,omitempty"`
	OriginalMaterialVolume  *float64  `json:"original_material_volume,omitempty"`
}

// Material is a ClusterPrinterConfigurationMaterial.
type Material struct {
	GUID     string `json:"guid,omitempty"`
	Brand    string `json:"brand,omitempty"`
	Color    string `json:"color,omitempty"`
	Material string `json:"material,omitempty"`
}

// BuildPlate is a ClusterPrinterBuildPlate.
type BuildPlate struct {
	Type        string   `json:"type,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
}

// Chamber is the build chamber of printers that report its temperature.
type Chamber struct {
	Temperature *float64 `json:"temperature,omitempty"`
}

// MaterialStation is a ClusterPrinterMaterialStation.
type MaterialStation struct {
	Supported     bool           `json:"supported"`
	Status        string         `json:"status,omitempty"`
	MaterialSlots []MaterialSlot `json:"material_slots,omitempty"`
}

// MaterialSlot is one slot (A–F) of a material station.
type MaterialSlot struct {
	SlotIndex         float64   `json:"slot_index"`
	ExtruderIndex     float64   `json:"extruder_index"`
	Compatible        bool      `json:"compatible"`
	MaterialRemaining float64   `json:"material_remaining"`
	MaterialEmpty     bool      `json:"material_empty,omitempty"`
	Material          *Material `json:"material,omitempty"`
	PrintCoreID       string    `json:"print_core_id,omitempty"`
}

// PrinterError is an entry of a printer's errors list.
type PrinterError struct {
	Code string `json:"code"`
	UUID string `json:"uuid"`
}

// PrinterFault is a ClusterPrinterFault.
type PrinterFault struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Severity  string `json:"severity"`
	Timestamp Time   `json:"timestamp"`
	UUID      string `json:"uuid"`
}

// PrintJob is a PrintJobInstanceResponse: a job in a cluster's queue, on a
// printer, or recently completed.
type PrintJob struct {
	UUID                         string                   `json:"uuid"`
	CloudJobID                   string                   `json:"cloud_job_id,omitempty"`
	ClusterID                    string                   `json:"cluster_id"`
	Name                         string                   `json:"name"`
	Owner                        string                   `json:"owner,omitempty"`
	MachineVariant               string                   `json:"machine_variant"`
	Status                       string                   `json:"status"`
	StatusDetail                 string                   `json:"status_detail,omitempty"`
	State                        string                   `json:"state"`
	Started                      bool                     `json:"started"`
	Force                        bool                     `json:"force"`
	IsOnline                     bool                     `json:"is_online"`
	SentFrom                     string                   `json:"sent_from"`
	CreatedAt                    Time                     `json:"created_at"`
	DeletedAt                    Time                     `json:"deleted_at"`
	PrinterUUID                  string                   `json:"printer_uuid,omitempty"`
	PrintedOnUUID                string                   `json:"printed_on_uuid,omitempty"`
	PrinterName                  string                   `json:"printer_name,omitempty"`
	AssignedTo                   string                   `json:"assigned_to,omitempty"`
	TimeTotal                    float64                  `json:"time_total"`
	TimeElapsed                  float64                  `json:"time_elapsed"`
	TimeRemaining                float64                  `json:"time_remaining"`
	LastSeen                     float64                  `json:"last_seen,omitempty"`
	PreviewURL                   string                   `json:"preview_url,omitempty"`
	Note                         string                   `json:"note,omitempty"`
	Configuration                []PrintCoreConfiguration `json:"configuration,omitempty"`
	ConfigurationChangesRequired []ConfigurationChange    `json:"configuration_changes_required,omitempty"`
	ImpedimentsToPrinting        []Impediment             `json:"impediments_to_printing,omitempty"`
	CompatibleMachineFamilies    []string                 `json:"compatible_machine_families,omitempty"`
}

// ConfigurationChange is a PrintJobInstanceConfigurationChange.
type ConfigurationChange struct {
	TypeOfChange  string  `json:"type_of_change"`
	Index         float64 `json:"index"`
	OriginID      string  `json:"origin_id"`
	OriginName    string  `json:"origin_name,omitempty"`
	TargetID      string  `json:"target_id"`
	TargetName    string  `json:"target_name,omitempty"`
	IsOverridable bool    `json:"is_overridable"`
}

// Impediment is a reason a queued job cannot print. Severity is numeric text.
type Impediment struct {
	Severity       string `json:"severity"`
	TranslationKey string `json:"translation_key"`
}

// PrintJobDetails is a PrintJobDetailsResponse: a print job plus its source file.
type PrintJobDetails struct {
	PrintJob
	Source *PrintJobSource `json:"source,omitempty"`
}

// PrintJobSource is the uploaded file (PrintJobResponse) behind a job.
type PrintJobSource struct {
	JobID           string  `json:"job_id"`
	Status          string  `json:"status"`
	JobName         string  `json:"job_name,omitempty"`
	ContentType     string  `json:"content_type,omitempty"`
	FileSize        float64 `json:"file_size,omitempty"`
	UploadedAt      Time    `json:"uploaded_at"`
	Username        string  `json:"username,omitempty"`
	PreviewImageURL string  `json:"preview_image_url,omitempty"`
}

// Action status values; others are passed through as received.
const (
	ActionPending = "pending"
	ActionSent    = "sent"
	ActionSuccess = "success"
	ActionFailed  = "failed"
)

// ActionStatus is an ActionStatusResponse: the state of an asynchronous
// printer or print-job action.
type ActionStatus struct {
	ActionID      string          `json:"action_id"`
	Status        string          `json:"status"`
	StatusDetails json.RawMessage `json:"status_details,omitempty"`
}

// Settled reports whether the action will not change status any more.
func (a ActionStatus) Settled() bool {
	return a.Status != ActionPending && a.Status != ActionSent
}

// ImageURL returns the webcam snapshot URL carried by a successful
// get_webcam_snapshot action, or "".
func (a ActionStatus) ImageURL() string {
	var d struct {
		Value struct {
			ImageURL string `json:"image_url"`
		} `json:"value"`
	}
	if len(a.StatusDetails) == 0 || json.Unmarshal(a.StatusDetails, &d) != nil {
		return ""
	}
	return d.Value.ImageURL
}

// MaintenanceTask is a PrinterMaintenanceTaskResponse.
type MaintenanceTask struct {
	IsDue    bool     `json:"is_due"`
	DueDate  Time     `json:"due_date"`
	TaskRule TaskRule `json:"task_rule"`
}

// TaskRule names a maintenance task and when it comes due.
type TaskRule struct {
	Code        string          `json:"code"`
	TaskDetails json.RawMessage `json:"task_details,omitempty"`
}

// MakerBotPrinter is a MakerBotPrinterResponse.
type MakerBotPrinter struct {
	FriendlyName   string `json:"friendly_name"`
	HostGUID       string `json:"host_guid"`
	IsAuthorized   bool   `json:"is_authorized"`
	IsOnline       bool   `json:"is_online"`
	PrinterType    string `json:"printer_type"`
	OrganizationID string `json:"organization_id,omitempty"`
	UserID         string `json:"user_id,omitempty"`
}

// Pagination is the meta block of a paginated list.
type Pagination struct {
	LimitReached bool `json:"limit_reached"`
	Page         struct {
		TotalCount float64 `json:"total_count"`
		TotalPages float64 `json:"total_pages"`
	} `json:"page"`
}

// Links are the navigation links of a paginated list.
type Links struct {
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
	Next  string `json:"next,omitempty"`
	Prev  string `json:"prev,omitempty"`
}

// PrintJobActionBody is the optional data of a print-job action.
type PrintJobActionBody struct {
	List       string `json:"list,omitempty"`
	ToPosition *int   `json:"to_position,omitempty"`
	Quantity   *int   `json:"quantity,omitempty"`
	Message    string `json:"message,omitempty"`
}

// PrinterActionBody is the optional data of a printer action.
type PrinterActionBody struct {
	Name              string `json:"name,omitempty"`
	Enabled           *bool  `json:"enabled,omitempty"`
	MaterialProfileID string `json:"material_profile_id,omitempty"`
}
