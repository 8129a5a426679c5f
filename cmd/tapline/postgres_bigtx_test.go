package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/internal/servicetest"
)

// A 2,000,000-row single transaction streams through `tapline source
// postgres` with a peak RSS under 300 MB: the source never holds a whole
// transaction.
func TestPostgresTwoMillionRowTransactionInBoundedMemory(t *testing.T) {
	const rows = 2_000_000
	dsn := servicetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := servicetest.Name(t, "tlbig")
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE SCHEMA %s; CREATE TABLE %s.t (id bigint PRIMARY KEY, v int, s text)", name, name)); err != nil {
		t.Fatal(err)
	}
	servicetest.DropPostgresLater(t, dsn, name, name, name)
	t.Cleanup(func() { conn.Close(ctx) })
	cmd := exec.Command(binary, "source", "postgres", "--dsn", dsn, "--tables", name+".t",
		"--slot", name, "--publication", name, "--snapshot", "never", "--omit-schema", "--heartbeat", "0s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "the slot to be streaming", func() bool {
		var active bool
		return conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&active) == nil && active
	})
	if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s.t SELECT g, g, 'row ' || g FROM generate_series(1, %d) g", name, rows)); err != nil {
		t.Fatal(err)
	}
	counted := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			n++
			if n == rows {
				break
			}
		}
		counted <- n
	}()
	select {
	case n := <-counted:
		if n != rows {
			t.Fatalf("read %d events, want %d\n%s", n, rows, logs)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("2M events did not arrive within 5 minutes\n%s", logs)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go func() { bufio.NewReader(out).WriteTo(discard{}) }()
	cmd.Wait()
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for the source process")
	}
	peakMB := ru.Maxrss / 1024
	t.Logf("2,000,000-row transaction: peak RSS %d MB", peakMB)
	if peakMB >= 300 {
		t.Fatalf("peak RSS %d MB, want under 300 MB", peakMB)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
