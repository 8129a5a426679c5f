package pipelines

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/connectors"
)

// Metrics are the engine's Prometheus metrics, labelled by pipeline. One
// Metrics serves every pipeline of a process.
type Metrics struct {
	// Registerer is where connectors register their own metrics (it is
	// passed to them as connectors.Runtime.Metrics); nil means nowhere.
	Registerer prometheus.Registerer

	eventsRead    *prometheus.CounterVec
	eventsWritten *prometheus.CounterVec
	batches       *prometheus.CounterVec
	errors        *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	lag           *prometheus.GaugeVec
	lastCommit    *prometheus.GaugeVec
	batchSeconds  *prometheus.HistogramVec
	up            *prometheus.GaugeVec
	restarts      *prometheus.CounterVec
}

// NewMetrics creates the engine's metrics and registers them with reg (if
// not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	l := []string{"pipeline"}
	m := &Metrics{
		eventsRead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_pipeline_events_read_total",
			Help: "Events read from the source (before transforms)."}, l),
		eventsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_pipeline_events_total",
			Help: "Events written durably to the sink and committed."}, l),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_pipeline_batches_total",
			Help: "Batches written, committed and acknowledged."}, l),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_pipeline_errors_total",
			Help: "Errors by kind: retry (a transient error that was retried), ack, fatal (the pipeline stopped)."}, []string{"pipeline", "kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_pipeline_rejected_events_total",
			Help: "Events the sink rejected, skipped or sent to the dead-letter sink."}, l),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tapline_pipeline_lag_seconds",
			Help: "Time from the commit of the last written event at the origin to its commit in the sink."}, l),
		lastCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tapline_pipeline_last_commit_timestamp_seconds",
			Help: "When the pipeline last committed a position (Unix time)."}, l),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tapline_pipeline_batch_duration_seconds",
			Help: "Time to write, commit and acknowledge one batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, l),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tapline_pipeline_up",
			Help: "1 while the pipeline runs."}, l),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tapline_pipeline_restarts_total",
			Help: "Times the daemon restarted the pipeline after a failure."}, l),
	}
	m.Registerer = reg
	if reg != nil {
		reg.MustRegister(m.eventsRead, m.eventsWritten, m.batches, m.errors, m.rejected, m.lag, m.lastCommit, m.batchSeconds, m.up, m.restarts)
	}
	return m
}

// discard collects the metrics of jobs run without a Metrics.
var discard = NewMetrics(nil)

type pipelineMetrics struct {
	read, written, batches, rejected prometheus.Counter
	errors                           *prometheus.CounterVec
	lag, lastCommit, up              prometheus.Gauge
	batchSeconds                     prometheus.Observer
	restarts                         prometheus.Counter
}

func (m *Metrics) pipeline(name string) *pipelineMetrics {
	if m == nil {
		m = discard
	}
	for _, kind := range []string{"retry", "ack", "fatal"} {
		m.errors.WithLabelValues(name, kind) // exported at 0 from the start
	}
	return &pipelineMetrics{
		read:         m.eventsRead.WithLabelValues(name),
		written:      m.eventsWritten.WithLabelValues(name),
		batches:      m.batches.WithLabelValues(name),
		rejected:     m.rejected.WithLabelValues(name),
		errors:       m.errors.MustCurryWith(prometheus.Labels{"pipeline": name}),
		lag:          m.lag.WithLabelValues(name),
		lastCommit:   m.lastCommit.WithLabelValues(name),
		up:           m.up.WithLabelValues(name),
		batchSeconds: m.batchSeconds.WithLabelValues(name),
		restarts:     m.restarts.WithLabelValues(name),
	}
}

func (pm *pipelineMetrics) observeBatch(b *connectors.Batch, n int, d time.Duration) {
	now := time.Now()
	pm.written.Add(float64(n))
	pm.batches.Inc()
	pm.batchSeconds.Observe(d.Seconds())
	pm.lastCommit.Set(float64(now.UnixNano()) / 1e9)
	if n > 0 {
		if ts := b.Events[n-1].Source.TsMs; ts > 0 {
			pm.lag.Set(max(0, float64(now.UnixMilli()-ts)/1000))
		}
	}
}
