package monitor

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the bridge's Prometheus families, all prefixed
// ultimaker2mqtt_.
type Metrics struct {
	Registry    *prometheus.Registry
	Polls       *prometheus.CounterVec   // target
	PollErrors  *prometheus.CounterVec   // target, class
	APIRequests *prometheus.HistogramVec // method, route, code
	Commands    *prometheus.CounterVec   // action, result
}

// Sources are read at scrape time.
type Sources struct {
	Published     func() float64 // MQTT messages published
	Refreshes     func() float64 // token refreshes
	Clusters      func() float64
	Printers      func() float64
	LastPoll      func() float64 // unix seconds, 0 before the first
	MQTTConnected func() float64
}

// NewMetrics registers every family on a fresh registry (with the Go and
// process collectors).
func NewMetrics(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ultimaker2mqtt_polls_total",
			Help: "Connect API polls, by target (clusters, status)."}, []string{"target"}),
		PollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ultimaker2mqtt_poll_errors_total",
			Help: "Failed polls, by target and error class (auth, not_found, rate_limited, server, network, bad_body, …)."}, []string{"target", "class"}),
		APIRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ultimaker2mqtt_api_request_duration_seconds",
			Help:    "Connect API request latency, by method, route and HTTP status code (0: no answer).",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20}}, []string{"method", "route", "code"}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ultimaker2mqtt_commands_total",
			Help: "Commands answered, by action and result (ok, or the error code)."}, []string{"action", "result"}),
	}
	reg.MustRegister(m.Polls, m.PollErrors, m.APIRequests, m.Commands,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	funcs := []struct {
		counter    bool
		name, help string
		f          func() float64
	}{
		{true, "ultimaker2mqtt_mqtt_publishes_total", "MQTT messages published.", src.Published},
		{true, "ultimaker2mqtt_token_refreshes_total", "OAuth2 access-token refreshes.", src.Refreshes},
		{false, "ultimaker2mqtt_clusters", "Clusters bridged.", src.Clusters},
		{false, "ultimaker2mqtt_printers", "Printers bridged.", src.Printers},
		{false, "ultimaker2mqtt_last_successful_poll_timestamp_seconds", "Unix time of the last successful poll.", src.LastPoll},
		{false, "ultimaker2mqtt_mqtt_connected", "1 while the broker connection is up.", src.MQTTConnected},
	}
	for _, f := range funcs {
		if f.f == nil {
			continue
		}
		if f.counter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: f.name, Help: f.help}, f.f))
		} else {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: f.name, Help: f.help}, f.f))
		}
	}
	return m
}

// ObserveAPI records one Connect API request. A nil *Metrics (metrics
// off) records nothing, as do the other Observe methods.
func (m *Metrics) ObserveAPI(method, route string, code int, took time.Duration) {
	if m == nil {
		return
	}
	m.APIRequests.WithLabelValues(method, route, strconv.Itoa(code)).Observe(took.Seconds())
}

// ObservePoll records one poll; class is "" for success.
func (m *Metrics) ObservePoll(target, class string) {
	if m == nil {
		return
	}
	m.Polls.WithLabelValues(target).Inc()
	if class != "" {
		m.PollErrors.WithLabelValues(target, class).Inc()
	}
}

// ObserveCommand records one final command answer.
func (m *Metrics) ObserveCommand(action, result string) {
	if m == nil {
		return
	}
	m.Commands.WithLabelValues(action, result).Inc()
}
