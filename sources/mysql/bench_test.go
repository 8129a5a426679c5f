package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gmysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
)

// BenchmarkDrain compares, over the same binlog range: the server's own
// `mariadb-binlog --read-from-remote-server --verbose` to /dev/null; a raw
// go-mysql BinlogSyncer drain that decodes every row (go-mysql's own
// decoding) and touches every value but builds nothing; and tapline's
// source building full events into a loop that discards them. Run it with
// `go test -run '^$' -bench Drain -benchtime=1x -v ./sources/mysql/`
// (rows from TAPLINE_BENCH_ROWS, default 1,000,000, in 1,000-row
// transactions; rounds from TAPLINE_BENCH_ROUNDS, default 3). It reports
// the median events/s of the rounds with min and max, CPU seconds per
// million events and the ratios.
func BenchmarkDrain(b *testing.B) {
	rows := servicetest.Count(b, "TAPLINE_BENCH_ROWS", 1_000_000)
	rounds := servicetest.Count(b, "TAPLINE_BENCH_ROUNDS", 3)
	for _, workload := range []string{"insert", "mixed"} {
		b.Run(workload, func(b *testing.B) { benchWorkload(b, workload, rows, rounds) })
	}
}

// binlogRange is where a workload's events are.
type binlogRange struct {
	file       string
	start, end uint32 // offsets in file
	startGTID  string
	endGTID    gtidPos
}

func masterStatus(b *testing.B, db *sql.DB) (string, uint32) {
	rows, err := db.Query("SHOW MASTER STATUS")
	if err != nil {
		b.Fatal(err)
	}
	vals, err := firstRow(rows)
	if err != nil {
		b.Fatal(err)
	}
	off, _ := strconv.ParseUint(vals[1], 10, 32)
	return vals[0], uint32(off)
}

func benchWorkload(b *testing.B, workload string, rows, rounds int) {
	dsn := servicetest.MySQLDSN(b)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	name := servicetest.Name(b, "tlbench")
	must := func(q string) {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	must("CREATE DATABASE " + name)
	defer db.Exec("DROP DATABASE " + name)
	must(fmt.Sprintf("CREATE TABLE %s.t (id bigint PRIMARY KEY, qty int, price decimal(12,2), name varchar(100), at timestamp(6) NULL)", name))
	must("FLUSH BINARY LOGS") // the range starts in a fresh file
	var r binlogRange
	r.file, r.start = masterStatus(b, db)
	if err := db.QueryRow("SELECT @@GLOBAL.gtid_binlog_pos").Scan(&r.startGTID); err != nil {
		b.Fatal(err)
	}
	events := 0
	for lo := 1; lo <= rows; lo += 1000 {
		hi := min(lo+999, rows)
		must(fmt.Sprintf("INSERT INTO %s.t SELECT seq, seq %% 100, seq * 1.25, CONCAT('name ', seq), NOW(6) FROM seq_%d_to_%d", name, lo, hi))
		events += hi - lo + 1
		if workload == "mixed" {
			tx, err := db.Begin()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(fmt.Sprintf("UPDATE %s.t SET qty = qty + 1 WHERE id BETWEEN %d AND %d", name, lo, lo+499)); err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(fmt.Sprintf("DELETE FROM %s.t WHERE id BETWEEN %d AND %d", name, lo+500, lo+749)); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			events += min(500, hi-lo+1) + max(0, min(250, hi-lo+1-500))
		}
	}
	var end string
	if err := db.QueryRow("SELECT @@GLOBAL.gtid_binlog_pos").Scan(&end); err != nil {
		b.Fatal(err)
	}
	r.endGTID, _ = parseGTIDPos(end)
	var endFile string
	endFile, r.end = masterStatus(b, db)
	if endFile != r.file {
		b.Fatalf("the workload spans binlogs %s..%s; raise max_binlog_size or lower TAPLINE_BENCH_ROWS", r.file, endFile)
	}
	b.Logf("%s workload: %d events in %s:%d..%d (%d MB of binlog)", workload, events, r.file, r.start, r.end, (r.end-r.start)>>20)

	drains := []struct {
		name string
		run  func() (int, error)
	}{
		{"mariadb-binlog", func() (int, error) { return events, drainMariadbBinlog(dsn, r) }},
		{"raw_go-mysql", func() (int, error) { return drainRaw(dsn, r) }},
		{"tapline", func() (int, error) { return drainTapline(dsn, name, r, false) }},
		{"tapline_minimal", func() (int, error) { return drainTapline(dsn, name, r, true) }},
	}
	// An unmeasured drain first reads the binlog into the page cache.
	if _, err := drainRaw(dsn, r); err != nil {
		b.Fatal(err)
	}
	type result struct{ rate, cpu []float64 }
	results := map[string]*result{}
	for round := 0; round < rounds; round++ {
		for _, d := range drains {
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			start := time.Now()
			n, err := d.run()
			elapsed := time.Since(start)
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			if err != nil {
				b.Fatalf("%s: %v", d.name, err)
			}
			if d.name == "mariadb-binlog" {
				ru0, ru1 = syscall.Rusage{}, lastChildUsage
			}
			if n != events {
				b.Fatalf("%s read %d events, want %d", d.name, n, events)
			}
			cpu := tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)
			res := results[d.name]
			if res == nil {
				res = &result{}
				results[d.name] = res
			}
			res.rate = append(res.rate, float64(n)/elapsed.Seconds())
			res.cpu = append(res.cpu, cpu/float64(n)*1e6)
		}
	}
	med := func(xs []float64) (m, lo, hi float64) {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[len(s)/2], s[0], s[len(s)-1]
	}
	rawRate, _, _ := med(results["raw_go-mysql"].rate)
	mbRate, _, _ := med(results["mariadb-binlog"].rate)
	b.Logf("| workload | drain | events/s (median of %d) | min..max | CPU s per 1M events | rate vs raw drain | rate vs mariadb-binlog |", rounds)
	for _, d := range drains {
		res := results[d.name]
		m, lo, hi := med(res.rate)
		cpu, _, _ := med(res.cpu)
		b.Logf("| %s | %s | %.0f | %.0f..%.0f | %.2f | %.2fx | %.2fx |", workload, d.name, m, lo, hi, cpu, m/rawRate, m/mbRate)
		b.ReportMetric(m, d.name+"_events/s")
	}
	tapRate, _, _ := med(results["tapline"].rate)
	b.ReportMetric(tapRate/rawRate, "tapline/raw")
	minRate, _, _ := med(results["tapline_minimal"].rate)
	b.ReportMetric(minRate/tapRate, "minimal/tapline")
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

var lastChildUsage syscall.Rusage

// drainMariadbBinlog runs the server's client over the range.
func drainMariadbBinlog(dsn string, r binlogRange) error {
	d, err := parseDSN(dsn)
	if err != nil {
		return err
	}
	args := []string{"--read-from-remote-server", "--verbose", "-h", d.host, "-P", strconv.Itoa(int(d.port)), "-u", d.cfg.User,
		"--start-position=" + strconv.FormatUint(uint64(r.start), 10), "--stop-position=" + strconv.FormatUint(uint64(r.end), 10), r.file}
	if d.cfg.Passwd != "" {
		args = append(args, "--password="+d.cfg.Passwd)
	}
	cmd := exec.Command("mariadb-binlog", args...)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd.Stdout = devnull
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mariadb-binlog: %v: %s", err, stderr.String())
	}
	lastChildUsage = *cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return nil
}

// drainRaw reads the range with a bare BinlogSyncer, go-mysql's row
// decoding, and touches every value.
func drainRaw(dsn string, r binlogRange) (int, error) {
	d, err := parseDSN(dsn)
	if err != nil {
		return 0, err
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: 0x7E000001, Flavor: gmysql.MariaDBFlavor, Host: d.host, Port: d.port, User: d.cfg.User, Password: d.cfg.Passwd,
		DisableRetrySync: true, Logger: discardLogger(),
	})
	defer syncer.Close()
	streamer, err := syncer.StartSync(gmysql.Position{Name: r.file, Pos: r.start})
	if err != nil {
		return 0, err
	}
	n, touched := 0, 0
	for {
		ev, err := streamer.GetEvent(context.Background())
		if err != nil {
			return n, err
		}
		if re, ok := ev.Event.(*replication.RowsEvent); ok {
			step := 1
			if re.Type() == replication.EnumRowsEventTypeUpdate {
				step = 2
			}
			for i := 0; i < len(re.Rows); i += step {
				for _, v := range re.Rows[i] {
					if v != nil {
						touched++
					}
				}
				n++
			}
		}
		if ev.Header.LogPos >= r.end && ev.Header.LogPos != 0 {
			_ = touched
			return n, nil
		}
	}
}

// drainTapline reads the range with the source, into nothing.
//
// With minimal, the source drops what binlog_row_metadata=MINIMAL does not
// write from each TABLE_MAP and works from its schema history (rows are then
// decoded in the receiver's goroutine).
func drainTapline(dsn, db string, r binlogRange, minimal bool) (int, error) {
	cfg := DefaultConfig()
	cfg.DSN = connectors.Secret(dsn)
	cfg.Tables = []string{db + ".t"}
	cfg.Snapshot = "never"
	cfg.StartPosition = r.startGTID
	if r.startGTID == "" {
		cfg.StartPosition = "0-0-0"
	}
	rt := connectors.Runtime{Pipeline: "bench-" + db}
	if minimal {
		dir, err := os.MkdirTemp("", "mysql-ddl-history-bench-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		rt.DataDir = dir
	}
	s, err := New(cfg, rt)
	if err != nil {
		return 0, err
	}
	s.testMinimal = minimal
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		return 0, err
	}
	defer s.Close(ctx)
	want := r.endGTID.sum()
	n := 0
	for {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 1000, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond})
		if err != nil {
			return n, err
		}
		n += len(b.Events)
		if b.Last != nil {
			if err := s.Ack(ctx, b.Last); err != nil {
				return n, err
			}
			if p, err := decodeStreamPos(b.Last); err == nil && p.atBoundary() && p.commit >= want {
				return n, nil
			}
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
