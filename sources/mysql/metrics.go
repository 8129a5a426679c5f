package mysql

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	lagVec = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tapline_mysql_replication_lag_seconds",
		Help: "Seconds between the commit of the binlog transaction the source read last and its reading; 0 when the source has caught up (the server sent a heartbeat).",
	}, []string{"pipeline"})
	reconnectVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tapline_mysql_reconnects_total",
		Help: "Times the source reconnected to the server after the binlog connection dropped.",
	}, []string{"pipeline"})
	snapshotRowsVec = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tapline_mysql_snapshot_rows",
		Help: "Rows the snapshot has read so far, per table: the initial snapshot's, plus the rows emitted by incremental snapshots (tapline snapshot).",
	}, []string{"pipeline", "table"})
)

// metrics are one source's metrics.
type metrics struct {
	pipeline   string
	lag        prometheus.Gauge
	reconnects prometheus.Counter
	snapRows   *prometheus.GaugeVec
	lagBits    atomic.Uint64 // the last lag, float64 bits
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(C)
		}
	}
	return c
}

// registerMetrics registers the source's metrics once per registry.
func registerMetrics(reg prometheus.Registerer, pipeline string) *metrics {
	return &metrics{
		pipeline:   pipeline,
		lag:        register(reg, lagVec).WithLabelValues(pipeline),
		reconnects: register(reg, reconnectVec).WithLabelValues(pipeline),
		snapRows:   register(reg, snapshotRowsVec),
	}
}

func (m *metrics) setLag(sec float64) {
	if sec < 0 {
		sec = 0
	}
	m.lag.Set(sec)
	m.lagBits.Store(math.Float64bits(sec))
}

// watchLag warns when the replication lag passes lag_warn.
func (s *Source) watchLag(ctx context.Context) {
	if s.cfg.LagWarn <= 0 {
		return
	}
	t := time.NewTicker(min(s.cfg.LagWarn/4+time.Second, 30*time.Second))
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lag := time.Duration(math.Float64frombits(s.metrics.lagBits.Load()) * float64(time.Second))
		if lag > s.cfg.LagWarn && !warned {
			s.log.Warn("replication lag is high: the source reads the binlog this far behind the server", "lag", lag.Round(time.Second), "threshold", s.cfg.LagWarn)
			warned = true
		} else if lag <= s.cfg.LagWarn {
			warned = false
		}
	}
}
