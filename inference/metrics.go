package inference

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of every model run in the process. The agent registers
// Collectors with its metrics registry (internal/metrics' Register); the
// names follow DESIGN.md section 9.
var (
	inferenceDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "edgeagent",
		Name:      "inference_duration_seconds",
		Help:      "Time to run a batch through a model: decoding, pre-processing, the run and post-processing.",
		Buckets:   []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"processor", "provider"})
	inferenceProvider = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "edgeagent",
		Name:      "inference_provider_info",
		Help:      "1 for the execution provider each processor's model runs on.",
	}, []string{"processor", "model", "provider"})
)

// Collectors returns the inference metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{inferenceDuration, inferenceProvider}
}

// ObserveDuration records one batch's inference time.
func ObserveDuration(processor string, p Provider, d time.Duration) {
	inferenceDuration.WithLabelValues(processor, string(p)).Observe(d.Seconds())
}

// SetProvider records the provider a processor's model runs on; clear
// removes it when the model is closed.
func SetProvider(processor, model string, p Provider) (clear func()) {
	inferenceProvider.WithLabelValues(processor, model, string(p)).Set(1)
	return func() { inferenceProvider.DeleteLabelValues(processor, model, string(p)) }
}
