// Package metrics exposes the agent's state in the Prometheus text format
// (DESIGN.md section 9) with github.com/prometheus/client_golang.
//
// The engine does not import this package: a collector reads the agent's
// state through a function returning *engine.Status (Agent.Status) at
// scrape time, so nothing is counted twice and nothing is updated on the
// hot path. New builds a Metrics with that collector, the Go runtime and
// process collectors, on a registry of its own (never the global one, so
// tests and several agents in one process do not collide).
//
// Other components add their own collectors with Register (or hand
// Registerer to a library that takes one), or add a whole registry of
// their own with AddGatherer. Their metric names should follow the same
// conventions: the edgeagent_ prefix, base units as suffixes (_seconds,
// _bytes), _total on counters, and bounded label values. The names
// reserved for the components DESIGN.md section 9 lists are:
//
//	edgeagent_mqtt_connected{processor,broker}                      gauge 0/1
//	edgeagent_inference_duration_seconds{processor,provider}        histogram
//	edgeagent_camera_frames_captured_total{processor}               counter
//	edgeagent_camera_frames_skipped_total{processor,reason}         counter
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"edgeagent.dev/internal/engine"
)

// Namespace prefixes every metric name of the agent.
const Namespace = "edgeagent"

// StatusFunc returns the agent's current state; Agent.Status is one.
type StatusFunc func() (*engine.Status, error)

// Metrics is the agent's metric registry and its HTTP handler.
type Metrics struct {
	reg *prometheus.Registry

	mu        sync.Mutex
	gatherers prometheus.Gatherers // reg first, then those added
	log       *slog.Logger
}

// Option configures New.
type Option func(*Metrics)

// WithLogger logs scrape errors (a collector that fails) to l.
func WithLogger(l *slog.Logger) Option { return func(m *Metrics) { m.log = l } }

// New returns a Metrics whose registry holds the agent collector reading
// status (nil: no agent metrics, only those registered later), the Go
// runtime collector and the process collector (CPU, RSS, open files).
func New(status StatusFunc, opts ...Option) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(m)
	}
	m.gatherers = prometheus.Gatherers{m.reg}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if status != nil {
		m.reg.MustRegister(NewCollector(status), processorMetrics{status})
	}
	return m
}

// Register adds a collector; an error means a metric it describes is
// already registered (or is inconsistent), see prometheus.Registerer.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// MustRegister adds collectors and panics on an error; for collectors
// built once at start-up.
func (m *Metrics) MustRegister(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Unregister removes a collector added with Register (a processor that
// stops with a reload); it reports whether it was registered.
func (m *Metrics) Unregister(c prometheus.Collector) bool { return m.reg.Unregister(c) }

// Registerer is the registry, for libraries that take a
// prometheus.Registerer.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// AddGatherer serves the metrics of another registry too (a client library
// that keeps its own, such as the Pulsar client's). Its metric names must
// not clash with the agent's.
func (m *Metrics) AddGatherer(g prometheus.Gatherer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gatherers = append(m.gatherers[:len(m.gatherers):len(m.gatherers)], g)
}

// Gather collects every metric (prometheus.Gatherer).
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) {
	m.mu.Lock()
	g := m.gatherers
	m.mu.Unlock()
	return g.Gather()
}

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics/protobuf when the scraper asks for it). A collector that
// fails is logged and left out; the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slogPrinter{m.log},
	})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Warn("metrics: a collector failed; its metrics are left out of this scrape", "err", fmt.Sprint(v...))
}

// Collector turns the agent's status into metrics at each scrape.
type Collector struct {
	status StatusFunc

	up, build, flow, uptime, reloads, reloadFailures                               *prometheus.Desc
	repoUsed, repoFile, repoMax, repoFull                                          *prometheus.Desc
	queueCount, queueBytes, queueMaxCount, queueMaxBytes, queueAge, queueBackpr    *prometheus.Desc
	procIn, procOut, procTriggers, procFailures, procBackpr, procYield, procCommit *prometheus.Desc
}

// NewCollector returns a collector reading status at each scrape.
func NewCollector(status StatusFunc) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	conn := []string{"connection"}
	proc := []string{"processor", "type"}
	return &Collector{
		status: status,

		up:             d("status_up", "1 when the agent's status could be read at this scrape, else 0 (and no other edgeagent_ metric is reported)."),
		build:          d("build_info", "Always 1; the labels tell the agent's version and the Go version it was built with.", "version", "goversion"),
		flow:           d("flow_info", "Always 1; the labels tell the agent id and the flow file running, with its sha256.", "agent_id", "flow_file", "flow_sha256"),
		uptime:         d("uptime_seconds", "Seconds since the agent started."),
		reloads:        d("reloads_total", "Flow reloads that took effect."),
		reloadFailures: d("reload_failures_total", "Flow reloads refused or failed; the running flow was kept."),

		repoUsed: d("repository_used_bytes", "Bytes of the repository's disk budget in use (flowfile content, queues, provenance)."),
		repoFile: d("repository_file_bytes", "Size of the repository's database file on disk."),
		repoMax:  d("repository_max_bytes", "The repository's disk budget (agent.repository.max_size)."),
		repoFull: d("repository_full", "1 while the repository is at its budget and refuses new content, else 0."),

		queueCount:    d("queue_flowfiles", "Flowfiles queued on the connection.", conn...),
		queueBytes:    d("queue_bytes", "Bytes of content queued on the connection.", conn...),
		queueMaxCount: d("queue_max_flowfiles", "The connection's max_count: flowfiles queued before backpressure (or drop_oldest) applies.", conn...),
		queueMaxBytes: d("queue_max_bytes", "The connection's max_bytes: bytes queued before backpressure (or drop_oldest) applies.", conn...),
		queueAge:      d("queue_oldest_age_seconds", "Age of the oldest queued flowfile, 0 when the queue is empty.", conn...),
		queueBackpr:   d("queue_backpressure", "1 while the connection is full and applies backpressure to its source, else 0.", conn...),

		procIn:       d("processor_flowfiles_in_total", "Flowfiles the processor took from its input connections (resets when the flow is reloaded).", proc...),
		procOut:      d("processor_flowfiles_out_total", "Flowfiles the processor transferred to a relationship (resets when the flow is reloaded).", proc...),
		procTriggers: d("processor_triggers_total", "Times the processor ran (resets when the flow is reloaded).", proc...),
		procFailures: d("processor_failures_total", "Runs that failed and rolled back (resets when the flow is reloaded).", proc...),
		procBackpr:   d("processor_backpressure", "1 while the processor is held back because an output connection is full, else 0.", proc...),
		procYield:    d("processor_yielded", "1 while the processor has yielded (nothing to do, or penalized), else 0.", proc...),
		procCommit:   d("processor_commit_latency_average_seconds", "Average time a session commit of the processor took, since the flow started.", proc...),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.up, c.build, c.flow, c.uptime, c.reloads, c.reloadFailures,
		c.repoUsed, c.repoFile, c.repoMax, c.repoFull,
		c.queueCount, c.queueBytes, c.queueMaxCount, c.queueMaxBytes, c.queueAge, c.queueBackpr,
		c.procIn, c.procOut, c.procTriggers, c.procFailures, c.procBackpr, c.procYield, c.procCommit,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	st, err := c.status()
	if err != nil || st == nil {
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	gauge(c.build, 1, st.Version, runtime.Version())
	gauge(c.flow, 1, st.AgentID, st.FlowFile, st.FlowSHA256)
	gauge(c.uptime, st.UptimeSeconds)
	counter(c.reloads, float64(st.Reloads))
	counter(c.reloadFailures, float64(st.ReloadFailures))

	r := st.Repository
	gauge(c.repoUsed, float64(r.UsedBytes))
	gauge(c.repoFile, float64(r.FileBytes))
	gauge(c.repoMax, float64(r.MaxBytes))
	gauge(c.repoFull, boolFloat(r.Full))

	for _, q := range st.Queues {
		gauge(c.queueCount, float64(q.Count), q.Name)
		gauge(c.queueBytes, float64(q.Bytes), q.Name)
		gauge(c.queueMaxCount, float64(q.MaxCount), q.Name)
		gauge(c.queueMaxBytes, float64(q.MaxBytes), q.Name)
		gauge(c.queueAge, q.OldestAgeSecs, q.Name)
		gauge(c.queueBackpr, boolFloat(q.Full), q.Name)
	}
	for _, p := range st.Processors {
		counter(c.procIn, float64(p.In), p.Name, p.Type)
		counter(c.procOut, float64(p.Out), p.Name, p.Type)
		counter(c.procTriggers, float64(p.Triggers), p.Name, p.Type)
		counter(c.procFailures, float64(p.Failures), p.Name, p.Type)
		gauge(c.procBackpr, boolFloat(p.Backpressured), p.Name, p.Type)
		gauge(c.procYield, boolFloat(p.Yielded), p.Name, p.Type)
		gauge(c.procCommit, p.CommitAvgMS/1e3, p.Name, p.Type)
	}
}

// processorMetrics exports the figures processors report themselves
// (edgeagent.MetricsReporter) as edgeagent_processor_<name>. Their names are
// only known at scrape time, so this collector describes nothing (an
// "unchecked" collector for the registry).
type processorMetrics struct{ status StatusFunc }

func (processorMetrics) Describe(chan<- *prometheus.Desc) {}

func (c processorMetrics) Collect(ch chan<- prometheus.Metric) {
	st, err := c.status()
	if err != nil || st == nil {
		return
	}
	for _, p := range st.Processors {
		for _, m := range p.Metrics {
			d := prometheus.NewDesc(prometheus.BuildFQName(Namespace, "processor", m.Name), m.Help, []string{"processor", "type"}, nil)
			vt := prometheus.GaugeValue
			if m.Counter {
				vt = prometheus.CounterValue
			}
			if cm, err := prometheus.NewConstMetric(d, vt, m.Value, p.Name, p.Type); err == nil {
				ch <- cm
			}
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
