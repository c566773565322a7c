package monitor

import (
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// apiBuckets are the upper bounds, in seconds, of the API latency histogram.
var apiBuckets = []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20}

// Metrics are the bridge's Prometheus families, all prefixed
// ultimaker2mqtt_. They live in their own set, so two bridges in one
// process (the tests) count apart.
type Metrics struct {
	set *metrics.Set
}

// Sources are read at scrape time.
type Sources struct {
	Published     func() float64 // MQTT messages published
	Refreshes     func() float64 // token refreshes
	Clusters      func() float64
	Printers      func() float64
	LastPoll      func() float64 // unix seconds, 0 before the first
	MQTTConnected func() float64
	EventsHeld    func() float64 // events (messages) waiting for the broker
	EventsDropped func() float64 // of those, dropped at the bounds
}

// NewMetrics registers the families read from src at scrape time; the
// counted ones appear with their first count.
func NewMetrics(src Sources) *Metrics {
	// TYPE lines let Prometheus tell counters from gauges; the help texts are in the README.
	metrics.ExposeMetadata(true)
	m := &Metrics{set: metrics.NewSet()}
	funcs := []struct {
		counter bool
		name    string
		f       func() float64
	}{
		{true, "ultimaker2mqtt_mqtt_publishes_total", src.Published},
		{true, "ultimaker2mqtt_token_refreshes_total", src.Refreshes},
		{false, "ultimaker2mqtt_clusters", src.Clusters},
		{false, "ultimaker2mqtt_printers", src.Printers},
		{false, "ultimaker2mqtt_last_successful_poll_timestamp_seconds", src.LastPoll},
		{false, "ultimaker2mqtt_mqtt_connected", src.MQTTConnected},
		{false, "ultimaker2mqtt_mqtt_held_messages", src.EventsHeld},
		{true, "ultimaker2mqtt_mqtt_held_dropped_total", src.EventsDropped},
	}
	for _, f := range funcs {
		switch {
		case f.f == nil:
		case f.counter:
			// A gauge would be typed gauge: the set has no counter read at scrape time.
			m.set.RegisterMetricsWriter(func(w io.Writer) { metrics.WriteCounterFloat64(w, f.name, f.f()) })
		default:
			m.set.NewGauge(f.name, f.f)
		}
	}
	return m
}

// WritePrometheus writes every family, then the Go runtime's and the
// process's, in the Prometheus text format.
func (m *Metrics) WritePrometheus(w io.Writer) {
	m.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

// ObserveAPI records one Connect API request. A nil *Metrics (metrics
// off) records nothing, as do the other Observe methods.
func (m *Metrics) ObserveAPI(method, route string, code int, took time.Duration) {
	if m == nil {
		return
	}
	name := series("ultimaker2mqtt_api_request_duration_seconds",
		"code", strconv.Itoa(code), "method", method, "route", route)
	m.set.GetOrCreatePrometheusHistogramExt(name, apiBuckets).Update(took.Seconds())
}

// ObservePoll records one poll; class is "" for success.
func (m *Metrics) ObservePoll(target, class string) {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(series("ultimaker2mqtt_polls_total", "target", target)).Inc()
	if class != "" {
		m.set.GetOrCreateCounter(series("ultimaker2mqtt_poll_errors_total", "class", class, "target", target)).Inc()
	}
}

// ObserveCommand records one final command answer.
func (m *Metrics) ObserveCommand(action, result string) {
	if m == nil {
		return
	}
	m.set.GetOrCreateCounter(series("ultimaker2mqtt_commands_total", "action", action, "result", result)).Inc()
}

// labelValue escapes a label value as the text format asks.
var labelValue = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// series names one series of family: labels are name, value pairs, given
// in name order as Prometheus writes them.
func series(family string, labels ...string) string {
	var b strings.Builder
	b.WriteString(family)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		labelValue.WriteString(&b, labels[i+1])
		b.WriteByte('"')
	}
	if len(labels) > 1 {
		b.WriteByte('}')
	}
	return b.String()
}
