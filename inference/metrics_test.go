package inference_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

// gather returns the metric families of reg by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string][]map[string]string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string][]map[string]string{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				labels["count"] = strconv.FormatUint(h.GetSampleCount(), 10)
			}
			out[mf.GetName()] = append(out[mf.GetName()], labels)
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(inference.Collectors()...)
	clear := inference.SetProvider("detect", "/models/yolo.onnx", inference.ProviderCPU)
	inference.ObserveDuration("detect", inference.ProviderCPU, 30*time.Millisecond)
	inference.ObserveDuration("detect", inference.ProviderCPU, 70*time.Millisecond)
	got := gather(t, reg)
	require.Equal(t, []map[string]string{{"processor": "detect", "model": "/models/yolo.onnx", "provider": "cpu"}}, got["edgeagent_inference_provider_info"])
	require.Equal(t, []map[string]string{{"processor": "detect", "provider": "cpu", "count": "2"}}, got["edgeagent_inference_duration_seconds"])
	clear()
	require.Empty(t, gather(t, reg)["edgeagent_inference_provider_info"])
}
