package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// slotLag is the bytes of WAL the server keeps for the slot:
// pg_current_wal_lsn() - confirmed_flush_lsn.
var slotLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "tapline_postgres_slot_lag_bytes",
	Help: "WAL the server keeps for the pipeline's replication slot (pg_current_wal_lsn() - confirmed_flush_lsn).",
}, []string{"pipeline", "slot"})

// registerMetrics registers the source's metrics once per registry.
func registerMetrics(reg prometheus.Registerer) *prometheus.GaugeVec {
	if reg == nil {
		return slotLag
	}
	if err := reg.Register(slotLag); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.GaugeVec)
		}
	}
	return slotLag
}

// watchLag measures the slot's lag every interval, exports it and warns
// when it passes the configured threshold.
func (s *Source) watchLag(ctx context.Context) {
	gauge := registerMetrics(s.rt.Metrics).WithLabelValues(s.rt.Pipeline, s.slot)
	t := time.NewTicker(s.cfg.StatusInterval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var lag int64
		err := s.pool.QueryRow(ctx, `SELECT coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint
			FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&lag)
		if err != nil {
			continue
		}
		gauge.Set(float64(lag))
		if s.cfg.SlotLagWarn > 0 && lag > s.cfg.SlotLagWarn && !warned {
			s.log.Warn("replication slot lag is high: the server keeps this much WAL for the pipeline", "slot", s.slot, "lag_bytes", lag, "threshold", s.cfg.SlotLagWarn)
			warned = true
		} else if lag <= s.cfg.SlotLagWarn {
			warned = false
		}
	}
}
