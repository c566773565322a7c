package state

import (
	"slices"
	"time"
)

// applyLive adds what the LAN reads to a printer built from its local
// answers: temperatures and targets, the camera, the pairing state.
func applyLive(p *Printer, l Live) {
	for i, t := range l.Hotends {
		j := slices.IndexFunc(p.Extruders, func(e Extruder) bool { return e.Index == i })
		if j < 0 {
			p.Extruders = append(p.Extruders, Extruder{Index: i})
			j = len(p.Extruders) - 1
		}
		p.Extruders[j].HotendTemperature, p.Extruders[j].HotendTarget = round1(t.Current), round1(t.Target)
	}
	if t := l.BuildPlate; t != nil && (t.Current != nil || t.Target != nil) {
		if p.BuildPlate == nil {
			p.BuildPlate = &BuildPlate{}
		}
		p.BuildPlate.Temperature, p.BuildPlate.Target = round1(t.Current), round1(t.Target)
	}
	p.Camera, p.LocalAuth = l.Camera, l.LocalAuth
	if l.URL != "" {
		p.LocalURL = l.URL
	}
}

// feeds reports whether a LAN reading can feed live fields: the printer
// answered and let the bridge read (a printer that refuses reads has an
// unknown status; one that only refuses the credential is still read).
func feeds(local *Printer) bool {
	return local != nil && local.Online && local.PrinterStatus != "unknown"
}

// Merge is the one state of a printer seen by the cloud, the LAN or both
// (either may be nil, not both). While the LAN reads the printer it feeds
// the live fields (status, job, temperatures, camera); the cloud gives
// what only it has (queue and cluster, maintenance, history, firmware
// availability, material names). prev is the previous merged state:
// changed and updated_at are decided against it, as Build does.
func Merge(cloud, local, prev *Printer, now time.Time) (p Printer, changed bool) {
	switch {
	case cloud == nil:
		p = *local // one source: its content encoding (Build's) stands
	case local == nil:
		p = *cloud
	case !feeds(local):
		p = *cloud
		p.LocalAuth, p.encoded = local.LocalAuth, nil
	default:
		p = mergeLive(*cloud, *local)
		p.encoded = nil
	}
	// The status's own start, whichever source gives the status now.
	if prev != nil && prev.Status == p.Status && !prev.StatusSince.IsZero() && !prev.StatusSince.Equal(p.StatusSince) {
		p.StatusSince, p.encoded = prev.StatusSince, nil
	}
	p.UpdatedAt = time.Time{}
	if p.encoded == nil {
		p.encoded, p.sum = encodeContent(p)
	}
	changed = prev == nil || prev.contentSum() != p.sum
	p.UpdatedAt = now.UTC().Truncate(time.Second)
	if !changed {
		p.UpdatedAt = prev.UpdatedAt
	}
	return p, changed
}

func mergeLive(cloud, local Printer) Printer {
	p := cloud
	p.Source = SourceBoth
	p.Status, p.PrinterStatus, p.Online, p.Printing = local.Status, local.PrinterStatus, true, local.Printing
	p.StatusSince = local.StatusSince
	p.Camera, p.LocalAuth, p.LocalURL = local.Camera, local.LocalAuth, local.LocalURL
	p.IPAddress = nonEmpty(cloud.IPAddress, local.IPAddress)
	if p.Firmware.Version == "" {
		p.Firmware = local.Firmware
	}
	p.Job = local.Job
	if j := local.Job; j != nil && cloud.Job != nil {
		// The LAN has no preview and, on newer firmware, no owner.
		job := *j
		if cloud.Job.UUID == j.UUID || j.UUID == "" {
			job.PreviewURL = nonEmpty(job.PreviewURL, cloud.Job.PreviewURL)
			job.Owner = nonEmpty(job.Owner, cloud.Job.Owner)
		}
		p.Job = &job
	}
	if p.LastJob == nil {
		p.LastJob = local.LastJob
	}
	p.Extruders = slices.Clone(cloud.Extruders)
	for _, le := range local.Extruders {
		i := slices.IndexFunc(p.Extruders, func(e Extruder) bool { return e.Index == le.Index })
		if i < 0 {
			p.Extruders = append(p.Extruders, le)
			continue
		}
		p.Extruders[i].HotendTemperature, p.Extruders[i].HotendTarget = le.HotendTemperature, le.HotendTarget
		p.Extruders[i].PrintCore = nonEmpty(p.Extruders[i].PrintCore, le.PrintCore)
	}
	if lb := local.BuildPlate; lb != nil {
		b := BuildPlate{Type: lb.Type, Temperature: lb.Temperature, Target: lb.Target}
		if cloud.BuildPlate != nil {
			b.Type = nonEmpty(cloud.BuildPlate.Type, lb.Type)
		}
		p.BuildPlate = &b
	}
	return p
}

// PrinterEvents derives the events between two states of one printer.
func PrinterEvents(prev, next Printer) []Event { return printerEvents(prev, next) }
