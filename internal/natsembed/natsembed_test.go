package natsembed_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/natsembed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func jsConnect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	js, _ := jetstream.New(nc)
	return nc, js
}

// Two users in one process share one server; another client reaches it on
// 127.0.0.1:<port>; streams survive a restart (file storage); the last
// release shuts it down; its logs go to the given logger.
func TestSharedServerLifecycle(t *testing.T) {
	ctx := context.Background()
	dir, port := t.TempDir(), freePort(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	url1, release1, err := natsembed.Acquire(ctx, dir, port, log)
	if err != nil {
		t.Fatal(err)
	}
	url2, release2, err := natsembed.Acquire(ctx, dir, port, log)
	if err != nil {
		t.Fatal(err)
	}
	if want := "nats://127.0.0.1:" + strconv.Itoa(port); url1 != want || url2 != want {
		t.Fatalf("urls %q and %q, want %q for both", url1, url2, want)
	}
	if got := strings.Count(logs.String(), "embedded NATS server started"); got != 1 {
		t.Fatalf("%d servers started for two users; want 1", got)
	}
	nc, js := jsConnect(t, url1)
	name, _ := natsembed.ServerName(dir)
	if nc.ConnectedServerName() != name {
		t.Fatalf("server name %q, want %q", nc.ConnectedServerName(), name)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "keep.a", []byte("survives")); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	release1()
	release1() // a second call is harmless
	if nc, _ := jsConnect(t, url1); !nc.IsConnected() {
		t.Fatal("the server stopped while a user holds it")
	} else {
		nc.Close()
	}
	release2()
	if nc, err := nats.Connect(url1, nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Fatal("the server still answers after the last release")
	}
	if !strings.Contains(logs.String(), "component=nats-server") {
		t.Error("no server log reached the logger")
	}

	// Started again on the same data directory: the stream and its message
	// are there.
	url, release, err := natsembed.Acquire(ctx, dir, port, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	nc, js = jsConnect(t, url)
	defer nc.Close()
	st, err := js.Stream(ctx, "KEEP")
	if err != nil {
		t.Fatalf("stream lost over a restart: %v", err)
	}
	msg, err := st.GetMsg(ctx, 1)
	if err != nil || string(msg.Data) != "survives" {
		t.Fatalf("message lost over a restart: %v", err)
	}
}

// A port held by another program is an error naming the port and the
// config field.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // answers nothing, as a foreign program would
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	_, _, err = natsembed.Acquire(context.Background(), t.TempDir(), port, nil)
	if err == nil || !strings.Contains(err.Error(), "port "+strconv.Itoa(port)) || !strings.Contains(err.Error(), "embedded_port") {
		t.Fatalf("Acquire on a taken port: %v", err)
	}
}

// When the port is served by the embedded server of another process for
// the same data directory (a hot standby), Acquire uses it as a client.
func TestPeerServerForSameDataDir(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	name, _ := natsembed.ServerName(dir)
	// The "other process": a server this package did not start.
	peer, err := server.NewServer(&server.Options{ServerName: name, Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	peer.Start()
	defer func() { peer.Shutdown(); peer.WaitForShutdown() }()
	if !peer.ReadyForConnections(10 * time.Second) {
		t.Fatal("peer server did not start")
	}
	url, release, err := natsembed.Acquire(context.Background(), dir, port, nil)
	if err != nil {
		t.Fatalf("Acquire with a peer on the port: %v", err)
	}
	release()
	if url != "nats://127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("url %q", url)
	}
	if !peer.Running() {
		t.Fatal("releasing a peer's server shut it down")
	}
	// Another data directory's server on the port is not ours to use.
	if _, _, err := natsembed.Acquire(context.Background(), t.TempDir(), port, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Acquire with another data dir's server on the port: %v", err)
	}
}

func TestConnValidateAndDescribe(t *testing.T) {
	c := natsembed.DefaultConn()
	if err := c.Validate(); err != nil || !c.UsesEmbedded() {
		t.Fatalf("defaults: %v, embedded %v", err, c.UsesEmbedded())
	}
	for _, bad := range []func(*natsembed.Conn){
		func(c *natsembed.Conn) { c.Embedded, c.URL = true, "nats://x:4222" },
		func(c *natsembed.Conn) { c.EmbeddedPort = 70000 },
		func(c *natsembed.Conn) { c.Creds, c.NKey = "a", "b" },
		func(c *natsembed.Conn) { c.Password = "p" },
		func(c *natsembed.Conn) { c.TLSCert = "cert.pem" },
	} {
		c := natsembed.DefaultConn()
		bad(&c)
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
	c.URL = "nats://bob:hunter2@127.0.0.1:4222"
	if d := c.Describe(); strings.Contains(d, "hunter2") {
		t.Fatalf("Describe shows the password: %s", d)
	}
	c.Password = connectors.Secret("s3cret-pw")
	if s := slogText(c); strings.Contains(s, "s3cret-pw") {
		t.Fatalf("logging the config shows the password: %s", s)
	}
}

func slogText(v any) string {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("cfg", "conn", v)
	return b.String()
}
