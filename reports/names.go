package reports

import (
	"strings"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/local"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/state"
)

// namer turns the sources' jobs into rows, naming printers and clusters
// by their topic ids, from the farm as the bridge has it now.
type namer struct {
	printerOf func(connect.Report) string
	printers  map[string]state.Printer
	clusters  map[string]string // cloud cluster id → topic id
	// The texts many rows share (printer names, owners, statuses,
	// materials), kept once: a farm's month is a hundred thousand rows.
	texts     map[string]string
	materials map[string][]string
}

// intern is s, as kept once.
func (n namer) intern(s string) string {
	if k, ok := n.texts[s]; ok {
		return k
	}
	if len(n.texts) < 1<<16 {
		n.texts[s] = s
	}
	return s
}

// materialsOf names the materials of print cores ("PLA White"), a list
// kept once per set.
func (n namer) materialsOf(cores []connect.PrintCoreConfiguration) []string {
	m := materials(cores)
	key := strings.Join(m, "\x00")
	if k, ok := n.materials[key]; ok {
		return k
	}
	if len(n.materials) < 1<<14 {
		n.materials[key] = m
	}
	return m
}

func (l *Log) namer() namer {
	n := namer{printers: map[string]state.Printer{}, clusters: map[string]string{}, texts: map[string]string{},
		materials: map[string][]string{}}
	var ps []state.Printer
	if l.farm != nil {
		ps = l.farm.Printers()
		for _, c := range l.farm.Clusters() {
			if c.ClusterID != "" {
				n.clusters[c.ClusterID] = c.ID
			}
		}
	}
	for _, p := range ps {
		n.printers[p.ID] = p
	}
	n.printerOf = state.ReportPrinter(ps)
	return n
}

func (n namer) report(r connect.Report) Job {
	j := Job{UUID: r.UUID, Name: r.Name, PrinterName: n.intern(r.PrinterName), Owner: n.intern(r.Owner),
		Status: n.intern(r.Status), Created: r.CreatedAt.UTC(), TimeElapsed: int64(r.TimeElapsed),
		TimeTotal: int64(r.TimeTotal), Source: "cloud", Cluster: n.clusters[r.ClusterID]}
	if res := state.ReportResult(r); res != "" {
		j.Status = res
		if !r.UpdatedAt.IsZero() {
			ended := r.UpdatedAt.UTC()
			j.Ended = &ended
		}
	}
	if r.PrinterConfiguration != nil {
		j.Materials = n.materialsOf(r.PrinterConfiguration.PrintCores)
	}
	n.printer(&j, n.printerOf(r))
	return j
}

func (n namer) printJob(pj connect.PrintJob) Job {
	j := Job{UUID: pj.UUID, Name: pj.Name, PrinterName: pj.PrinterName, Owner: pj.Owner, Status: pj.Status,
		Created: pj.CreatedAt.UTC(), TimeElapsed: int64(pj.TimeElapsed), TimeTotal: int64(pj.TimeTotal), Source: "cloud",
		Cluster: n.clusters[pj.ClusterID], Materials: materials(pj.Configuration)}
	n.printer(&j, n.printerOf(connect.Report{ClusterID: pj.ClusterID, PrinterUUID: pj.PrinterUUID,
		PrintedOnUUID: pj.PrintedOnUUID, PrinterName: pj.PrinterName}))
	return j
}

// lanJob is a job of a LAN printer's own history. Its materials are
// GUIDs only: named from what the printer has loaded now where they
// match.
func (n namer) lanJob(printer string, h local.HistoryJob) Job {
	j := Job{UUID: h.UUID, Name: h.Name, Owner: h.Owner, Status: strings.ToLower(h.Result),
		TimeElapsed: int64(h.TimeElapsed), TimeTotal: int64(h.TimeTotal), Source: "local"}
	if j.Created = local.ParseTime(h.CreatedAt); j.Created.IsZero() {
		j.Created = local.ParseTime(h.DatetimeStarted)
	}
	if t := local.ParseTime(h.DatetimeFinished); !t.IsZero() {
		j.Ended = &t
	}
	switch j.Status {
	case "", "null":
		j.Status = "printing"
	case "error":
		j.Status = Failed
	}
	p := n.printers[printer]
	for _, guid := range []string{h.Material0GUID, h.Material1GUID} {
		if guid == "" {
			continue
		}
		name := guid
		for _, e := range p.Extruders {
			if strings.EqualFold(e.MaterialGUID, guid) && e.Material != "" {
				name = strings.TrimSpace(e.Material + " " + e.Color)
			}
		}
		j.Materials = append(j.Materials, name)
	}
	n.printer(&j, printer)
	return j
}

// printer names j's printer by its topic id, and its cluster.
func (n namer) printer(j *Job, id string) {
	if id == "" {
		return
	}
	j.Printer = id
	if p, ok := n.printers[id]; ok {
		if p.FriendlyName != "" {
			j.PrinterName = p.FriendlyName
		}
		if j.Cluster == "" {
			j.Cluster = p.Cluster
		}
	}
}

// materials names the materials of print cores: "PLA White".
func materials(cores []connect.PrintCoreConfiguration) []string {
	var out []string
	for _, c := range cores {
		if m := c.Material; m != nil && m.Material != "" && m.Material != "empty" {
			out = append(out, strings.TrimSpace(m.Material+" "+m.Color))
		}
	}
	return out
}
