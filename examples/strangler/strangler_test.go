package strangler_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tapline/tapline/examples/strangler"
	"github.com/tapline/tapline/internal/servicetest"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The strangler example end to end, with a shorter load than `make demo`:
// every view must equal its source row by row, read-your-writes must have
// worked, and the lag must have been measured.
func TestStranglerDemo(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	rdb := servicetest.Redis(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tapline")
	build := exec.Command("go", "build", "-o", bin, "github.com/tapline/tapline/cmd/tapline")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tapline: %v\n%s", err, out)
	}
	name := servicetest.Name(t, "demo")
	o := strangler.Options{
		Tapline:     bin,
		Pipelines:   "pipelines",
		DataDir:     filepath.Join(dir, "data"),
		PostgresDSN: dsn,
		ShopDB:      name + "_shop",
		ReportingDB: name + "_rep",
		MySQLDSN:    servicetest.MySQLDSN(t),
		MySQLDB:     name + "_branch",
		RedisAddr:   "127.0.0.1:6379",
		CachePrefix: name + ":",
		Load:        12 * time.Second,
		Rate:        60,
		HTTP:        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		NATSPort:    freePort(t),
		Log:         os.Stderr,
	}
	t.Cleanup(func() {
		if db, err := sql.Open("mysql", o.MySQLDSN); err == nil {
			db.Exec("DROP DATABASE IF EXISTS `" + o.MySQLDB + "`")
			db.Close()
		}
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, o.CachePrefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	servicetest.PostgresDatabaseCleanup(t, dsn, o.ShopDB)
	servicetest.PostgresDatabaseCleanup(t, dsn, o.ReportingDB)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := strangler.Run(ctx, o)
	if err != nil {
		if b, rerr := os.ReadFile(filepath.Join(o.DataDir, "tapline.log")); rerr == nil {
			t.Logf("tapline log:\n%s", tail(b, 4000))
		}
		t.Fatal(err)
	}
	rep.Print(testWriter{t})
	if !rep.OK() {
		if b, rerr := os.ReadFile(filepath.Join(o.DataDir, "tapline.log")); rerr == nil {
			t.Logf("tapline log:\n%s", tail(b, 4000))
		}
		t.Fatal("a view differs from its source")
	}
	if rep.RYWSamples == 0 || rep.LagSamples == 0 || rep.Events == 0 {
		t.Errorf("read-your-writes samples %d, lag samples %d, events %.0f: the demo measured nothing", rep.RYWSamples, rep.LagSamples, rep.Events)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
