package state

import "math"

// What a person notices: a printer's state is published when it changes,
// but values that drift every poll change it only when they moved by this
// much since they were last published (its previous state): a whole
// percent of progress, half a degree. Each poll would otherwise be a
// state message, and Home Assistant renders every entity of the printer
// and records what changed for each one.
const (
	progressStep    = 1.0 // percent: a change within the same whole percent is held
	temperatureStep = 0.5 // °C
)

// holdWithin keeps in p the values of prev (the state last published)
// that p changed by less than a person would notice, so that p's content
// equals prev's unless something noticeable changed.
func holdWithin(p, prev *Printer) {
	if j, pj := p.Job, prev.Job; j != nil && pj != nil && j.UUID == pj.UUID &&
		math.Floor(j.Progress/progressStep) == math.Floor(pj.Progress/progressStep) && j.Progress != pj.Progress {
		held := *j
		held.Progress = pj.Progress
		p.Job = &held
	}
	for i := range p.Extruders {
		e := &p.Extruders[i]
		if i >= len(prev.Extruders) || prev.Extruders[i].Index != e.Index {
			continue
		}
		pe := prev.Extruders[i]
		e.HotendTemperature = holdTemperature(e.HotendTemperature, pe.HotendTemperature)
		e.HotendTarget = holdTemperature(e.HotendTarget, pe.HotendTarget)
	}
	if b, pb := p.BuildPlate, prev.BuildPlate; b != nil && pb != nil {
		held := *b
		held.Temperature = holdTemperature(b.Temperature, pb.Temperature)
		held.Target = holdTemperature(b.Target, pb.Target)
		p.BuildPlate = &held
	}
	if c, pc := p.Chamber, prev.Chamber; c != nil && pc != nil {
		p.Chamber = &Chamber{Temperature: holdTemperature(c.Temperature, pc.Temperature)}
	}
}

// holdTemperature is prev when t moved less than temperatureStep from it.
func holdTemperature(t, prev *float64) *float64 {
	if t == nil || prev == nil || math.Abs(*t-*prev) >= temperatureStep {
		return t
	}
	return prev
}
