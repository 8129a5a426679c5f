package mysql

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tapline/tapline/connectors"
)

// A stored position whose binlog was purged is an error that says so and
// offers a re-snapshot, both when Open finds it out and when the server
// reports it; the source never jumps to the oldest binlog.
func TestPurgedBinlogIsAClearError(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	s := f.source(t, cfg)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id) VALUES (1)", f.name))
	stored := readN(t, s, 1)[0].Position // inside the transaction of row 1
	s.Close(ctx)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id) VALUES (2)", f.name))
	f.exec("FLUSH BINARY LOGS")
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id) VALUES (3)", f.name))
	f.exec("FLUSH BINARY LOGS")
	var file string
	var pos, a, b, c any
	if err := f.db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &a, &b); err != nil {
		if err := f.db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &a, &b, &c); err != nil {
			t.Fatal(err)
		}
	}
	f.exec("PURGE BINARY LOGS TO '" + file + "'")

	s = f.source(t, cfg)
	err := s.Open(ctx, stored)
	s.Close(ctx)
	var lost *PositionLostError
	if !errorsAs(err, &lost) || !contains(err.Error(), "tapline offsets delete") || !contains(err.Error(), "purged") {
		t.Fatalf("Open at a purged position = %v; want a *PositionLostError that offers a re-snapshot", err)
	}
	if connectors.IsRetryable(err) {
		t.Errorf("a purged position is not retryable")
	}
	t.Logf("Open: %v", err)

	// The server's own refusal (without the check Open makes) maps to the
	// same error.
	s = f.source(t, cfg)
	defer s.Close(ctx)
	if err := s.connectDB(ctx); err != nil {
		t.Fatal(err)
	}
	if s.server, err = s.checkServer(ctx); err != nil {
		t.Fatal(err)
	}
	s.flavor, s.kind = s.server.flavor, kindMaria
	if s.charsets, err = loadCharsets(ctx, s.db); err != nil {
		t.Fatal(err)
	}
	s.metrics = registerMetrics(nil, f.name)
	sp, _ := decodeStreamPos(stored)
	r := newReceiver(s, sp)
	s.out = make(chan []item, 10)
	if err := r.connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = r.stream(rctx)
	if !errorsAs(err, &lost) {
		t.Fatalf("the server's refusal of a purged position = %v; want a *PositionLostError", err)
	}
	t.Logf("stream: %v", err)
}

// A stored position from another server (a GTID domain this one never
// wrote), or one this server has not reached yet, is an error naming the
// stored and the found values.
func TestServerIdentityIsChecked(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	ctx := context.Background()
	cur, err := parseGTIDPos(f.gtidPos())
	if err != nil || len(cur) == 0 {
		t.Fatalf("gtid_binlog_pos %v: %v", cur, err)
	}

	other := mariaBoundary(gtidPos{{Domain: 77, Server: 9, Seq: 5}})
	s := f.source(t, cfg)
	err = s.Open(ctx, other.encode())
	s.Close(ctx)
	var mismatch *ServerMismatchError
	// The server's own position may move on between the read above and
	// Open (other sessions write to it): match its domain and server id.
	found := fmt.Sprintf("gtid_binlog_pos %d-%d-", cur[0].Domain, cur[0].Server)
	if !errorsAs(err, &mismatch) || !contains(err.Error(), "77-9-5") || !contains(err.Error(), found) || !contains(err.Error(), "domain 77") {
		t.Fatalf("Open at another server's position = %v; want a *ServerMismatchError naming both positions", err)
	}
	t.Logf("%v", err)

	ahead := mariaBoundary(gtidPos{{Domain: cur[0].Domain, Server: cur[0].Server, Seq: cur[0].Seq + 1000}})
	s = f.source(t, cfg)
	err = s.Open(ctx, ahead.encode())
	s.Close(ctx)
	var behind *ServerBehindError
	if !errorsAs(err, &behind) || !connectors.IsRetryable(err) || !contains(err.Error(), ahead.String()) {
		t.Fatalf("Open at a position the server has not reached = %v; want a retryable *ServerBehindError", err)
	}

	file := fileBoundary("server_id=999", "mysql-bin.000001", 4)
	s = f.source(t, cfg)
	err = s.Open(ctx, file.encode())
	s.Close(ctx)
	if !errorsAs(err, &mismatch) || !contains(err.Error(), "server_id=999") || !contains(err.Error(), "server_id=1") {
		t.Fatalf("Open at another server's file position = %v; want a *ServerMismatchError", err)
	}
}

// A user without the replication privileges gets an error naming them
// and the GRANT to run.
func TestMissingPrivilegesAreNamed(t *testing.T) {
	f := newFixture(t)
	user := "tlu" + f.name[len(f.name)-8:]
	f.exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY 'pw-secret'", user))
	t.Cleanup(func() { f.db.Exec(fmt.Sprintf("DROP USER '%s'@'%%'", user)) })
	f.exec(fmt.Sprintf("GRANT SELECT ON %s.* TO '%s'@'%%'", f.name, user))
	cfg := f.config()
	host := strings.TrimSuffix(strings.SplitN(f.dsn, "tcp(", 2)[1], ")/test")
	cfg.DSN = connectors.Secret(fmt.Sprintf("mysql://%s:pw-secret@%s/%s", user, host, f.name))
	s := f.source(t, cfg)
	err := s.Open(context.Background(), nil)
	s.Close(context.Background())
	var priv *PrivilegeError
	if !errorsAs(err, &priv) || !contains(err.Error(), "REPLICATION SLAVE") || !contains(err.Error(), "BINLOG MONITOR") || !contains(err.Error(), user) {
		t.Fatalf("Open as a user without replication grants = %v; want a *PrivilegeError naming them", err)
	}
	if contains(err.Error(), "pw-secret") {
		t.Fatalf("the error shows the password: %v", err)
	}
	t.Logf("%v", err)
}

// Two readers with the same server_id: the server drops the first, which
// stops with an error telling to give each its own server_id.
func TestServerIDClashIsAClearError(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.ServerID = 4000 + uint32(time.Now().UnixNano()%1000)
	ctx := context.Background()
	a := f.source(t, cfg)
	if err := a.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id) VALUES (1)", f.name))
	readN(t, a, 1)
	b := f.source(t, cfg)
	if err := b.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		_, err := a.ReadBatch(rctx, connectors.Limits{MaxEvents: 10, MaxWait: 50 * time.Millisecond})
		if err == nil {
			continue
		}
		var clash *ServerIDClashError
		if !errorsAs(err, &clash) || !contains(err.Error(), fmt.Sprint(cfg.ServerID)) || !contains(err.Error(), "server_id") {
			t.Fatalf("the first reader stopped with %v; want a *ServerIDClashError", err)
		}
		t.Logf("%v", err)
		return
	}
}

// When the binlog connection drops (here: the server kills it), the source
// reconnects after the last event it handed over: nothing lost, nothing
// repeated, and the reconnect is counted.
func TestReconnectAfterTheConnectionDrops(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	s := f.source(t, cfg)
	reg := prometheus.NewRegistry()
	s.rt.Metrics = reg
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	kill := func() {
		rows, err := f.db.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			f.db.Exec(fmt.Sprintf("KILL %d", id))
		}
	}
	next := 1
	var got []int64
	for round := 0; round < 3; round++ {
		f.exec(fmt.Sprintf("INSERT INTO %s.items (id) SELECT seq FROM seq_%d_to_%d", f.name, next, next+499))
		next += 500
		// Read part of the transaction, then cut the connection.
		for _, ev := range readN(t, s, 100) {
			got = append(got, ev.After[0].(int64))
		}
		kill()
	}
	for _, ev := range readN(t, s, next-1-len(got)) {
		got = append(got, ev.After[0].(int64))
	}
	for i, id := range got {
		if id != int64(i+1) {
			t.Fatalf("event %d is row %d: rows lost or repeated across reconnects", i+1, id)
		}
	}
	var m dto.Metric
	if err := reconnectVec.WithLabelValues(f.name).Write(&m); err != nil {
		t.Fatal(err)
	}
	n := m.GetCounter().GetValue()
	if n < 1 {
		t.Fatalf("tapline_mysql_reconnects_total = %v after the server killed the connection", n)
	}
	t.Logf("%d rows in order across %v reconnects", len(got), n)
}

// Check verifies settings, grants and tables without reading or changing
// anything.
func TestCheck(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	if err := f.source(t, cfg).Check(context.Background()); err != nil {
		t.Fatalf("Check on a good setup: %v", err)
	}
	cfg.Tables = []string{f.name + ".missing"}
	if err := f.source(t, cfg).Check(context.Background()); err == nil || !contains(err.Error(), "matches no table") {
		t.Fatalf("Check with a missing table = %v", err)
	}
}
