package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
)

// BenchmarkDrain compares, over the same WAL range and each on its own
// fresh slot created at the same point: pg_recvlogical draining pgoutput to
// /dev/null; a raw pglogrepl drain that decodes every message and column
// and builds nothing (the floor for a Go client); and tapline's source
// building full events into nothing. Run it with `make bench-postgres`
// (rows from TAPLINE_BENCH_ROWS, default 1,000,000, in 1,000-row
// transactions); it reports events/s, CPU seconds per million events and
// the ratio to the raw drain.
func BenchmarkDrain(b *testing.B) {
	rows := 1_000_000
	if v := os.Getenv("TAPLINE_BENCH_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	for _, workload := range []string{"insert", "mixed"} {
		b.Run(workload, func(b *testing.B) { benchWorkload(b, workload, rows) })
	}
}

func benchWorkload(b *testing.B, workload string, rows int) {
	dsn := servicetest.PostgresDSN(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	name := servicetest.Name(b, "tlbench")
	must := func(sql string) {
		if _, err := conn.Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	must(fmt.Sprintf("CREATE SCHEMA %[1]s; CREATE TABLE %[1]s.t (id bigint PRIMARY KEY, qty int, price numeric(12,2), name text, at timestamptz)", name))
	must(fmt.Sprintf("CREATE PUBLICATION %[1]s FOR TABLE %[1]s.t", name))
	slots := []string{name + "_recv", name + "_raw", name + "_tap", name + "_warm", name + "_raw2"}
	servicetest.DropPostgresLater(b, dsn, "", name, name)
	for _, s := range slots {
		must(fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", s))
		servicetest.DropPostgresLater(b, dsn, s, "", "")
	}
	// The workload: 1,000-row transactions.
	events := 0
	for lo := 1; lo <= rows; lo += 1000 {
		hi := min(lo+999, rows)
		must(fmt.Sprintf("INSERT INTO %s.t SELECT g, g %% 100, g * 1.25, 'name ' || g, now() FROM generate_series(%d, %d) g", name, lo, hi))
		events += hi - lo + 1
		if workload == "mixed" {
			must(fmt.Sprintf("BEGIN; UPDATE %[1]s.t SET qty = qty + 1 WHERE id BETWEEN %[2]d AND %[2]d + 499; DELETE FROM %[1]s.t WHERE id BETWEEN %[2]d + 500 AND %[2]d + 749; COMMIT", name, lo))
			events += min(500, hi-lo+1) + max(0, min(250, hi-lo+1-500))
		}
	}
	var end string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		b.Fatal(err)
	}
	endLSN, _ := pglogrepl.ParseLSN(end)
	b.Logf("%s workload: %d events up to %s", workload, events, end)
	// A first, unmeasured drain reads the WAL into the page cache and warms
	// the server's decoding, so that the order of the measured drains does
	// not decide the result.
	rawDrain(b, dsn, slots[3], name, endLSN)

	type result struct {
		secs, cpu float64
	}
	results := map[string]result{}
	run := func(label string, drain func() (cpu float64)) {
		b.Run(label, func(b *testing.B) {
			if b.N > 1 {
				b.Skip("each drain consumes its slot: run with -benchtime=1x")
			}
			start := time.Now()
			cpu := drain()
			secs := time.Since(start).Seconds()
			results[label] = result{secs, cpu}
			b.ReportMetric(float64(events)/secs, "events/s")
			b.ReportMetric(cpu/float64(events)*1e6, "cpu-s/Mevents")
		})
	}
	run("pg_recvlogical", func() float64 {
		cmd := exec.Command("pg_recvlogical", "-d", dsn, "--slot", slots[0], "--start", "--no-loop",
			"-o", "proto_version=1", "-o", "publication_names="+name, "--endpos", end, "-f", "/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pg_recvlogical: %v\n%s", err, out)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		return tv(ru.Utime) + tv(ru.Stime)
	})
	run("raw_pglogrepl", func() float64 {
		before := cpuSelf()
		rawDrain(b, dsn, slots[1], name, endLSN)
		return cpuSelf() - before
	})
	run("tapline", func() float64 {
		before := cpuSelf()
		cfg := DefaultConfig()
		cfg.DSN = connectors.Secret(dsn)
		cfg.Tables = []string{name + ".t"}
		cfg.Slot, cfg.Publication, cfg.Snapshot, cfg.Heartbeat = slots[2], name, "never", 0
		s, err := New(cfg, connectors.Runtime{Pipeline: name})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Open(ctx, nil); err != nil {
			b.Fatal(err)
		}
		defer s.Close(ctx)
		n := 0
		for n < events {
			batch, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 1000, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			n += len(batch.Events)
			if batch.Last != nil {
				s.Ack(ctx, batch.Last)
			}
		}
		return cpuSelf() - before
	})
	// A/A: the raw drain again, last, on its own slot: how far two runs of
	// the same thing differ here is the noise the ratios above carry.
	run("raw_pglogrepl_again", func() float64 {
		before := cpuSelf()
		rawDrain(b, dsn, slots[4], name, endLSN)
		return cpuSelf() - before
	})
	if raw, ok := results["raw_pglogrepl"]; ok {
		for label, r := range results {
			b.Logf("%s %s: %.0f events/s, %.2f CPU s per million events, %.2fx the raw drain's rate, %.2fx pg_recvlogical's",
				workload, label, float64(events)/r.secs, r.cpu/float64(events)*1e6, raw.secs/r.secs, results["pg_recvlogical"].secs/r.secs)
		}
	}
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func cpuSelf() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tv(ru.Utime) + tv(ru.Stime)
}

// rawDrain reads the slot to endLSN with pglogrepl, decoding every message
// and touching every column, building nothing.
func rawDrain(b *testing.B, dsn, slot, pub string, endLSN pglogrepl.LSN) {
	ctx := context.Background()
	cfg, err := replicationConfig(dsn, "")
	if err != nil {
		b.Fatal(err)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"}})
	if err != nil {
		b.Fatal(err)
	}
	sink := 0
	for {
		raw, err := conn.ReceiveMessage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		cd, ok := raw.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 {
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, _ := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if ka.ServerWALEnd >= endLSN {
				return
			}
			if ka.ReplyRequested {
				pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: ka.ServerWALEnd})
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				b.Fatal(err)
			}
			msg, err := pglogrepl.Parse(xld.WALData)
			if err != nil {
				b.Fatal(err)
			}
			var tuples []*pglogrepl.TupleData
			switch m := msg.(type) {
			case *pglogrepl.InsertMessage:
				tuples = append(tuples, m.Tuple)
			case *pglogrepl.UpdateMessage:
				tuples = append(tuples, m.OldTuple, m.NewTuple)
			case *pglogrepl.DeleteMessage:
				tuples = append(tuples, m.OldTuple)
			case *pglogrepl.CommitMessage:
				if m.TransactionEndLSN >= endLSN {
					return
				}
			}
			for _, t := range tuples {
				if t == nil {
					continue
				}
				for _, c := range t.Columns {
					sink += len(c.Data)
				}
			}
		}
	}
}
