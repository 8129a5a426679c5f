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

// snapRows and snapEstimate are an initial snapshot's progress per table:
// rows read so far, and the planner's estimate of the table's rows.
var (
	snapRows = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tapline_postgres_snapshot_rows",
		Help: "Rows the initial snapshot has read from the table so far.",
	}, []string{"pipeline", "table"})
	snapEstimate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tapline_postgres_snapshot_rows_estimated",
		Help: "The planner's estimate of the table's rows (pg_class.reltuples) when its snapshot started.",
	}, []string{"pipeline", "table"})
)

// register registers c once per registry and returns the registered one.
func register(reg prometheus.Registerer, c *prometheus.GaugeVec) *prometheus.GaugeVec {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.GaugeVec)
		}
	}
	return c
}

// watchLag measures the slot's lag every interval, exports it and warns
// when it passes the configured threshold.
func (s *Source) watchLag(ctx context.Context) {
	gauge := register(s.rt.Metrics, slotLag).WithLabelValues(s.rt.Pipeline, s.slot)
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
