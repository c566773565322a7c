package monitor

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func TestSeriesEscapesLabelValues(t *testing.T) {
	tests := []struct {
		name   string
		family string
		labels []string
		want   string
	}{
		{"no labels", "f", nil, "f"},
		{"one", "f", []string{"target", "status"}, `f{target="status"}`},
		{"two in given order", "f", []string{"class", "auth", "target", "lan"}, `f{class="auth",target="lan"}`},
		{"quote, backslash, newline", "f", []string{"action", "a\"b\\c\nd"}, `f{action="a\"b\\c\nd"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := series(tt.family, tt.labels...); got != tt.want {
				t.Errorf("series = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics(Sources{Published: func() float64 { return 7 }, Printers: func() float64 { return 3 }})
	m.ObservePoll("status", "")
	m.ObservePoll("status", "server")
	m.ObserveCommand("pa\"use\n", "ok") // a hostile action string must not break the text or panic
	m.ObserveAPI("GET", "/clusters/{id}/status", 200, 30*time.Millisecond)
	var nilMetrics *Metrics
	nilMetrics.ObservePoll("status", "") // metrics off: nothing, no panic
	var out bytes.Buffer
	m.WritePrometheus(&out)
	text := out.String()
	for _, want := range []string{
		"# TYPE ultimaker2mqtt_mqtt_publishes_total counter\nultimaker2mqtt_mqtt_publishes_total 7\n",
		"# TYPE ultimaker2mqtt_printers gauge\nultimaker2mqtt_printers 3\n",
		`ultimaker2mqtt_polls_total{target="status"} 2` + "\n",
		`ultimaker2mqtt_poll_errors_total{class="server",target="status"} 1` + "\n",
		`ultimaker2mqtt_commands_total{action="pa\"use\n",result="ok"} 1` + "\n",
		`ultimaker2mqtt_api_request_duration_seconds_bucket{code="200",method="GET",route="/clusters/{id}/status",le="0.025"} 0`,
		`ultimaker2mqtt_api_request_duration_seconds_bucket{code="200",method="GET",route="/clusters/{id}/status",le="0.05"} 1`,
		"# TYPE process_cpu_seconds_total counter\n",
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if strings.Contains(text, "ultimaker2mqtt_token_refreshes_total") {
		t.Error("a family without a source is written")
	}
}

// Whatever a label value holds (an action name comes from an MQTT
// payload), the series name is one the metrics set accepts: an invalid one
// would panic.
func FuzzSeriesIsValid(f *testing.F) {
	for _, s := range []string{"pause", `a"b`, `x\`, "a\nb", "", "\x00\r{}=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		name := series("ultimaker2mqtt_commands_total", "action", v, "result", "ok")
		if err := metrics.ValidateMetric(name); err != nil {
			t.Fatalf("series %q: %v", name, err)
		}
	})
}
