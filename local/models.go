package local

// Printer is the part of GET /api/v1/printer the bridge reads.
type Printer struct {
	Status string `json:"status"` // booting, waiting_for_peripherals, idle, printing, error, maintenance
	Bed    *Bed   `json:"bed"`
	Heads  []Head `json:"heads"`
}

// Bed is the heated bed.
type Bed struct {
	Type        string       `json:"type"`
	Temperature *Temperature `json:"temperature"`
}

// Temperature is a reading and its target (°C).
type Temperature struct {
	Current *float64 `json:"current"`
	Target  *float64 `json:"target"`
}

// Head is a print head (the S-line has one).
type Head struct {
	Extruders []Extruder `json:"extruders"`
}

// Extruder is one print core slot.
type Extruder struct {
	Hotend         *Hotend         `json:"hotend"`
	ActiveMaterial *ActiveMaterial `json:"active_material"`
}

// Hotend is the print core in a slot; ID is empty when the slot is.
type Hotend struct {
	ID          string       `json:"id"`
	Temperature *Temperature `json:"temperature"`
}

// ActiveMaterial is the material loaded; only its GUID, no name.
type ActiveMaterial struct {
	GUID       string `json:"guid"`
	GUIDLegacy string `json:"GUID"` // deprecated spelling, older firmware
}

// PrintJob is GET /api/v1/print_job.
type PrintJob struct {
	UUID            string   `json:"uuid"`
	Name            string   `json:"name"`
	State           string   `json:"state"` // pre_print, printing, pausing, paused, resuming, post_print, wait_cleanup, …
	Result          string   `json:"result"`
	Progress        *float64 `json:"progress"` // 0..1
	TimeElapsed     float64  `json:"time_elapsed"`
	TimeTotal       float64  `json:"time_total"`
	DatetimeStarted string   `json:"datetime_started"`
	SourceUser      string   `json:"source_user"`
}

// System is the part of GET /api/v1/system the bridge reads.
type System struct {
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
	GUID     string `json:"guid"`
	Firmware string `json:"firmware"`
	Variant  string `json:"variant"`
}

// HistoryJob is one job of GET /api/v1/history/print_jobs: a job that
// ran on the printer, whoever sent it (the cloud, Cura on the LAN, USB).
// Times are ISO 8601 without a zone (UTC).
type HistoryJob struct {
	UUID             string  `json:"uuid"`
	Name             string  `json:"name"`
	Result           string  `json:"result"` // "Finished", "Aborted", "Failed", or null while it runs
	Owner            string  `json:"owner"`
	CreatedAt        string  `json:"created_at"`
	DatetimeStarted  string  `json:"datetime_started"`
	DatetimeFinished string  `json:"datetime_finished"`
	TimeElapsed      float64 `json:"time_elapsed"`
	TimeTotal        float64 `json:"time_total"`
	Material0GUID    string  `json:"material_0_guid"`
	Material1GUID    string  `json:"material_1_guid"`
}
