package metrics_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/internal/metrics"
)

func fakeStatus() *engine.Status {
	return &engine.Status{
		AgentID: "jetson-01", Version: "v1.2.3", FlowFile: "/etc/edgeagent/flow.yaml", FlowSHA256: "abc123",
		UptimeSeconds: 42.5, Reloads: 3, ReloadFailures: 1,
		Repository: engine.RepositoryStatus{Path: "/var/lib/edgeagent", UsedBytes: 1000, FileBytes: 4096, MaxBytes: 1 << 30, Full: true},
		Processors: []engine.ProcessorStatus{
			{Name: "get", Type: "GetFile", In: 0, Out: 20, Triggers: 7, Failures: 0, CommitAvgMS: 1.5},
			{Name: "put", Type: "PutFile", In: 18, Out: 17, Triggers: 9, Failures: 2, Backpressured: true, Yielded: true, CommitAvgMS: 250},
			{Name: "cam", Type: "CaptureFrame", Metrics: []edgeagent.Metric{
				{Name: "frames_skipped_total", Help: "Frames dropped at the source.", Value: 12, Counter: true},
				{Name: "camera_open", Help: "1 while open.", Value: 1},
			}},
		},
		Queues: []engine.QueueStatus{
			{Name: "get-success-put", Count: 3, Bytes: 300, OldestAgeSecs: 1.25, MaxCount: 10000, MaxBytes: 1 << 20, Full: false},
			{Name: "put-failure-retry", Count: 10000, Bytes: 5, MaxCount: 10000, MaxBytes: 1 << 20, Full: true},
		},
	}
}

// scrape GETs /metrics from h and parses the text format.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), "content type %q", resp.Header.Get("Content-Type"))
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	out := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the series of family name whose labels
// include want (label=value pairs), failing when there is not exactly one.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	mf, ok := fams[name]
	require.True(t, ok, "metric %s missing", name)
	var found []*dto.Metric
	for _, m := range mf.Metric {
		labels := map[string]string{}
		for _, lp := range m.Label {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				match = false
			}
		}
		if match {
			found = append(found, m)
		}
	}
	require.Len(t, found, 1, "series of %s with %v", name, want)
	m := found[0]
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	default:
		t.Fatalf("%s: unexpected type %v", name, mf.GetType())
		return 0
	}
}

func requireType(t *testing.T, fams map[string]*dto.MetricFamily, typ dto.MetricType, names ...string) {
	t.Helper()
	for _, n := range names {
		require.Contains(t, fams, n)
		require.Equal(t, typ, fams[n].GetType(), n)
		require.NotEmpty(t, fams[n].GetHelp(), n)
	}
}

func TestScrapeStatus(t *testing.T) {
	m := metrics.New(func() (*engine.Status, error) { return fakeStatus(), nil })
	fams := scrape(t, m.Handler())

	requireType(t, fams, dto.MetricType_COUNTER,
		"edgeagent_reloads_total", "edgeagent_reload_failures_total",
		"edgeagent_processor_flowfiles_in_total", "edgeagent_processor_flowfiles_out_total",
		"edgeagent_processor_triggers_total", "edgeagent_processor_failures_total")
	requireType(t, fams, dto.MetricType_GAUGE,
		"edgeagent_status_up", "edgeagent_build_info", "edgeagent_flow_info", "edgeagent_uptime_seconds",
		"edgeagent_repository_used_bytes", "edgeagent_repository_file_bytes", "edgeagent_repository_max_bytes", "edgeagent_repository_full",
		"edgeagent_queue_flowfiles", "edgeagent_queue_bytes", "edgeagent_queue_max_flowfiles", "edgeagent_queue_max_bytes",
		"edgeagent_queue_oldest_age_seconds", "edgeagent_queue_backpressure",
		"edgeagent_processor_backpressure", "edgeagent_processor_yielded", "edgeagent_processor_commit_latency_average_seconds")

	require.Equal(t, 1.0, value(t, fams, "edgeagent_status_up"))
	// A processor's own figures (edgeagent.MetricsReporter).
	requireType(t, fams, dto.MetricType_COUNTER, "edgeagent_processor_frames_skipped_total")
	requireType(t, fams, dto.MetricType_GAUGE, "edgeagent_processor_camera_open")
	require.Equal(t, 12.0, value(t, fams, "edgeagent_processor_frames_skipped_total", "processor", "cam", "type", "CaptureFrame"))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_build_info", "version", "v1.2.3", "goversion", runtime.Version()))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_flow_info", "agent_id", "jetson-01", "flow_file", "/etc/edgeagent/flow.yaml", "flow_sha256", "abc123"))
	require.Equal(t, 42.5, value(t, fams, "edgeagent_uptime_seconds"))
	require.Equal(t, 3.0, value(t, fams, "edgeagent_reloads_total"))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_reload_failures_total"))

	require.Equal(t, 1000.0, value(t, fams, "edgeagent_repository_used_bytes"))
	require.Equal(t, 4096.0, value(t, fams, "edgeagent_repository_file_bytes"))
	require.Equal(t, float64(1<<30), value(t, fams, "edgeagent_repository_max_bytes"))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_repository_full"))

	q1, q2 := []string{"connection", "get-success-put"}, []string{"connection", "put-failure-retry"}
	require.Equal(t, 3.0, value(t, fams, "edgeagent_queue_flowfiles", q1...))
	require.Equal(t, 300.0, value(t, fams, "edgeagent_queue_bytes", q1...))
	require.Equal(t, 10000.0, value(t, fams, "edgeagent_queue_max_flowfiles", q1...))
	require.Equal(t, float64(1<<20), value(t, fams, "edgeagent_queue_max_bytes", q1...))
	require.Equal(t, 1.25, value(t, fams, "edgeagent_queue_oldest_age_seconds", q1...))
	require.Equal(t, 0.0, value(t, fams, "edgeagent_queue_backpressure", q1...))
	require.Equal(t, 10000.0, value(t, fams, "edgeagent_queue_flowfiles", q2...))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_queue_backpressure", q2...))

	get, put := []string{"processor", "get", "type", "GetFile"}, []string{"processor", "put", "type", "PutFile"}
	require.Equal(t, 20.0, value(t, fams, "edgeagent_processor_flowfiles_out_total", get...))
	require.Equal(t, 0.0, value(t, fams, "edgeagent_processor_flowfiles_in_total", get...))
	require.Equal(t, 7.0, value(t, fams, "edgeagent_processor_triggers_total", get...))
	require.Equal(t, 0.0, value(t, fams, "edgeagent_processor_backpressure", get...))
	require.Equal(t, 0.0015, value(t, fams, "edgeagent_processor_commit_latency_average_seconds", get...))
	require.Equal(t, 18.0, value(t, fams, "edgeagent_processor_flowfiles_in_total", put...))
	require.Equal(t, 17.0, value(t, fams, "edgeagent_processor_flowfiles_out_total", put...))
	require.Equal(t, 2.0, value(t, fams, "edgeagent_processor_failures_total", put...))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_processor_backpressure", put...))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_processor_yielded", put...))
	require.Equal(t, 0.25, value(t, fams, "edgeagent_processor_commit_latency_average_seconds", put...))

	// The Go runtime and process collectors come with New.
	require.Contains(t, fams, "go_goroutines")
	require.Contains(t, fams, "process_resident_memory_bytes")
}

// The names follow the Prometheus conventions that promlint checks
// (units, _total on counters, no camelCase, help text).
func TestNamingConventions(t *testing.T) {
	reg := prometheus.NewPedanticRegistry() // also checks Describe matches Collect
	require.NoError(t, reg.Register(metrics.NewCollector(func() (*engine.Status, error) { return fakeStatus(), nil })))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 23, "every metric of the collector is reported")
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestStatusError(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	m := metrics.New(func() (*engine.Status, error) {
		if fail.Load() {
			return nil, errors.New("flow not running")
		}
		return fakeStatus(), nil
	})
	fams := scrape(t, m.Handler())
	require.Equal(t, 0.0, value(t, fams, "edgeagent_status_up"))
	require.NotContains(t, fams, "edgeagent_queue_flowfiles")
	require.Contains(t, fams, "go_goroutines", "the rest is still served")

	fail.Store(false)
	fams = scrape(t, m.Handler())
	require.Equal(t, 1.0, value(t, fams, "edgeagent_status_up"))
	require.Contains(t, fams, "edgeagent_queue_flowfiles")
}

// Other components register their own collectors.
func TestRegisterComponentCollectors(t *testing.T) {
	m := metrics.New(nil)
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "camera_frames_captured_total", Help: "Frames captured.",
	}, []string{"processor"})
	require.NoError(t, m.Register(frames))
	require.Error(t, m.Register(frames), "registered twice")
	frames.WithLabelValues("csi0").Add(5)

	inference := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Name: "inference_duration_seconds", Help: "Inference latency.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
	}, []string{"processor", "provider"})
	m.MustRegister(inference)
	inference.WithLabelValues("detect", "tensorrt").Observe(0.012)

	other := prometheus.NewRegistry()
	connected := prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeagent_mqtt_connected", Help: "1 while connected."})
	other.MustRegister(connected)
	connected.Set(1)
	m.AddGatherer(other)

	fams := scrape(t, m.Handler())
	require.Equal(t, 5.0, value(t, fams, "edgeagent_camera_frames_captured_total", "processor", "csi0"))
	require.Equal(t, 1.0, value(t, fams, "edgeagent_mqtt_connected"))
	h := fams["edgeagent_inference_duration_seconds"]
	require.NotNil(t, h)
	require.Equal(t, dto.MetricType_HISTOGRAM, h.GetType())
	require.Equal(t, uint64(1), h.Metric[0].GetHistogram().GetSampleCount())
	require.NotContains(t, fams, "edgeagent_status_up", "no status function, no agent metrics")

	require.True(t, m.Unregister(frames))
	fams = scrape(t, m.Handler())
	require.NotContains(t, fams, "edgeagent_camera_frames_captured_total")
}
