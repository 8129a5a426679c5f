package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// privateMariaDB starts a MariaDB server of its own, on a free port, with
// the options given (the shared server keeps binlog_row_metadata=FULL,
// which other tests need), and returns its DSN. It stops with the test.
func privateMariaDB(t *testing.T, opts ...string) string {
	t.Helper()
	dsn, stop, err := startMariaDB(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return dsn
}

// startMariaDB starts a private MariaDB server (see privateMariaDB) and
// returns its DSN and how to stop it and remove its files.
func startMariaDB(opts ...string) (dsn string, stop func(), err error) {
	for _, bin := range []string{"mariadb-install-db", "mariadbd"} {
		if _, err := exec.LookPath(bin); err != nil {
			return "", nil, fmt.Errorf("%s is not installed (make services installs MariaDB): %v", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "tapline-mariadb-")
	if err != nil {
		return "", nil, err
	}
	fail := func(err error) (string, func(), error) {
		os.RemoveAll(dir)
		return "", nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("mariadb-install-db: %v\n%s", err, out))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := append([]string{"--no-defaults", "--datadir=" + data, "--user=root", "--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--socket=" + filepath.Join(dir, "sock"), "--pid-file=" + filepath.Join(dir, "pid"),
		"--log-bin=" + filepath.Join(data, "bin"), "--binlog-format=ROW", "--binlog-row-image=FULL", "--server-id=7",
		"--skip-name-resolve"}, opts...)
	cmd := exec.Command("mariadbd", args...)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return fail(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fail(fmt.Errorf("start mariadbd: %v", err))
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		os.RemoveAll(dir)
	}
	dsn = fmt.Sprintf("root@tcp(127.0.0.1:%d)/", port)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		stop()
		return "", nil, err
	}
	defer db.Close()
	for start := time.Now(); db.Ping() != nil; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			stop()
			return "", nil, fmt.Errorf("the private MariaDB did not start within 30s:\n%s", log)
		}
	}
	return dsn, stop, nil
}

// minimalServer is one private MariaDB with binlog_row_metadata=MINIMAL,
// started by the first test that needs it (newMinimalFixture) and stopped
// by TestMain once every test has run.
var minimalServer struct {
	once sync.Once
	dsn  string
	stop func()
	err  error
}

// stopMinimalServer stops the MINIMAL server, if one was started.
func stopMinimalServer() {
	if minimalServer.stop != nil {
		minimalServer.stop()
	}
}

// newMinimalFixture is newFixture on the package's MINIMAL server: a
// database of its own, with the same items table.
func newMinimalFixture(t *testing.T) *fixture {
	t.Helper()
	minimalServer.once.Do(func() {
		minimalServer.dsn, minimalServer.stop, minimalServer.err = startMariaDB("--binlog-row-metadata=MINIMAL")
	})
	if minimalServer.err != nil {
		t.Fatalf("the MINIMAL server: %v", minimalServer.err)
	}
	return newFixtureOn(t, minimalServer.dsn)
}

// Against a real server with binlog_row_metadata=MINIMAL (TABLE_MAP events
// without column names), the schema history alone names the columns:
// rows before and after ADD, DROP and CHANGE COLUMN map to the right
// names, also after a restart between two DDL statements.
func TestSchemaHistoryOnAMinimalServer(t *testing.T) {
	dsn := privateMariaDB(t, "--binlog-row-metadata=MINIMAL")
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var meta string
	if err := db.QueryRow("SELECT @@binlog_row_metadata").Scan(&meta); err != nil || meta != "MINIMAL" {
		t.Fatalf("binlog_row_metadata = %q, %v; want MINIMAL", meta, err)
	}
	exec("CREATE DATABASE shop")
	exec("CREATE TABLE shop.items (id int PRIMARY KEY, a varchar(10), b int)")
	cfg := DefaultConfig()
	cfg.DSN = connectors.Secret(dsn)
	cfg.Tables = []string{"shop.items"}
	cfg.Snapshot = "never"
	cfg.Heartbeat = time.Second
	rt := connectors.Runtime{Pipeline: "minimal", DataDir: t.TempDir()}
	open := func(pos connectors.Position) *Source {
		t.Helper()
		s, err := New(cfg, rt)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(context.Background(), pos); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(nil)
	exec("INSERT INTO shop.items VALUES (1, 'one', 10)")
	exec("ALTER TABLE shop.items ADD COLUMN c varchar(5) AFTER a")
	exec("INSERT INTO shop.items VALUES (2, 'two', 'x', 20)")
	evs := readN(t, s, 2)
	s.Close(context.Background())
	// Restart after the first DDL, then two more.
	s = open(evs[1].Position)
	defer s.Close(context.Background())
	exec("ALTER TABLE shop.items DROP COLUMN a")
	exec("INSERT INTO shop.items VALUES (3, 'y', 30)")
	exec("ALTER TABLE shop.items CHANGE b bee bigint")
	exec("UPDATE shop.items SET bee = 31 WHERE id = 3")
	evs = append(evs, readN(t, s, 2)...)
	want := []string{
		"map[a:one b:10 id:1]",
		"map[a:two b:20 c:x id:2]",
		"map[b:30 c:y id:3]",
		"map[bee:31 c:y id:3]",
	}
	for i, ev := range evs {
		if got := fmt.Sprint(named(ev)); got != want[i] {
			t.Errorf("event %d (%s): %s, want %s", i, ev.Op, got, want[i])
		}
	}
}
