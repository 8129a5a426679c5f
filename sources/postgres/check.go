package postgres

import (
	"context"
	"errors"
	"fmt"
)

// Check connects and verifies what streaming needs, without creating or
// changing anything: wal_level, the REPLICATION privilege, the tables and
// their keys, free replication slots, and the slot if it exists
// (`tapline validate --connect`).
func (s *Source) Check(ctx context.Context) error {
	pool, err := pxpool(ctx, s.cfg.DSN.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := checkServer(ctx, pool); err != nil {
		return err
	}
	if _, err := resolveTables(ctx, pool, s.cfg.Tables); err != nil {
		return err
	}
	s.pool = pool
	defer func() { s.pool = nil }()
	st, err := readSlot(ctx, pool, s.slot)
	if err != nil {
		return err
	}
	var errs []error
	switch {
	case !st.exists:
		var free int
		if err := pool.QueryRow(ctx, "SELECT current_setting('max_replication_slots')::int - count(*) FROM pg_replication_slots").Scan(&free); err != nil {
			return fmt.Errorf("postgres: count replication slots: %w", err)
		}
		if free <= 0 {
			errs = append(errs, fmt.Errorf("postgres: no free replication slot for %q (max_replication_slots is used up: drop unused slots, or raise it and restart)", s.slot))
		}
	case st.wrongKind || st.plugin != "pgoutput":
		errs = append(errs, fmt.Errorf("postgres: replication slot %q exists but is not a logical pgoutput slot", s.slot))
	case st.wrongDB:
		errs = append(errs, fmt.Errorf("postgres: replication slot %q belongs to database %q, not %q", s.slot, st.slotDB, st.currentDB))
	}
	if !s.cfg.CreatePublication {
		var exists bool
		if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.pub).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			errs = append(errs, fmt.Errorf("postgres: publication %q does not exist and create_publication is false", s.pub))
		}
	}
	return errors.Join(errs...)
}
