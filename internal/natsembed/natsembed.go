// Package natsembed runs tapline's default log: an in-process NATS server
// with JetStream on file storage under the data directory, shared by every
// nats connector of the process, and the connection settings with which a
// nats connector reaches either that server or a configured one.
//
// The server is reference counted: the first Acquire starts it, the last
// release shuts it down. It listens on 127.0.0.1 only, on a fixed port
// (embedded_port, default 4223), so that the nats CLI and other processes
// on the machine can reach it. If the port is already served by the
// embedded server of another tapline process using the same data directory
// (a hot standby), Acquire returns that server's URL instead of starting a
// second one; any other program on the port is an error naming the port.
package natsembed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultPort is the embedded server's default port: one above NATS's
// standard 4222, so that it does not collide with a NATS server already
// running on the machine.
const DefaultPort = 4223

// startTimeout bounds how long the server may take to accept connections
// (JetStream recovers its streams from disk first).
const startTimeout = 30 * time.Second

// instance is one embedded server, or a server of another process that this
// process uses as a client.
type instance struct {
	srv  *server.Server // nil when the server belongs to another process
	url  string
	port int
	refs int
}

var (
	mu        sync.Mutex
	instances = map[string]*instance{} // by absolute store directory
)

// StoreDir returns the directory the embedded server keeps its JetStream
// data in: <dataDir>/nats.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "nats") }

// ServerName returns the name the embedded server for dataDir announces to
// clients, "tapline-" and a hash of the store directory's absolute path. It
// is how a second process recognises the server of its hot-standby peer.
func ServerName(dataDir string) (string, error) {
	abs, err := filepath.Abs(StoreDir(dataDir))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	return "tapline-" + hex.EncodeToString(sum[:8]), nil
}

// Acquire returns the client URL of the embedded NATS server for dataDir,
// starting it on 127.0.0.1:port if this process has not yet, and a release
// function to call once the caller has closed its connections. The last
// release shuts the server down. release may be called more than once.
//
// The server's logs go to log: notices at debug level, warnings and errors
// at theirs. ctx bounds the start.
func Acquire(ctx context.Context, dataDir string, port int, log *slog.Logger) (url string, release func(), err error) {
	if dataDir == "" {
		return "", nil, errors.New("embedded NATS: no data directory to keep its streams in (set --data-dir, or set url to use a NATS server)")
	}
	if port <= 0 || port > 65535 {
		return "", nil, fmt.Errorf("embedded NATS: embedded_port %d is not a TCP port", port)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, err := filepath.Abs(StoreDir(dataDir))
	if err != nil {
		return "", nil, fmt.Errorf("embedded NATS: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	in := instances[store]
	if in == nil {
		if in, err = start(ctx, dataDir, store, port, log); err != nil {
			return "", nil, err
		}
		instances[store] = in
	} else if in.port != port {
		return "", nil, fmt.Errorf("embedded NATS: the embedded server for %s already listens on port %d in this process; "+
			"give every nats connector of the process the same embedded_port (this one has %d)", store, in.port, port)
	}
	in.refs++
	var once sync.Once
	return in.url, func() { once.Do(func() { put(store, in, log) }) }, nil
}

// put drops one reference to in, shutting the server down with the last.
func put(store string, in *instance, log *slog.Logger) {
	mu.Lock()
	defer mu.Unlock()
	in.refs--
	if in.refs > 0 {
		return
	}
	delete(instances, store)
	if in.srv != nil {
		in.srv.Shutdown()
		in.srv.WaitForShutdown()
		log.Info("embedded NATS server stopped", "url", in.url)
	}
}

// start starts the server for store on port, or finds that another tapline
// process's server for the same store already serves the port.
func start(ctx context.Context, dataDir, store string, port int, log *slog.Logger) (*instance, error) {
	name, err := ServerName(dataDir)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	url := "nats://" + addr
	ln, lerr := net.Listen("tcp", addr)
	if lerr != nil {
		// Someone serves the port: our standby peer, or something else.
		if peer, err := peerServerName(url); err == nil && peer == name {
			log.Info("embedded NATS: the port is served by another tapline process's embedded server for the same data directory; using it as a client",
				"url", url, "store_dir", store)
			return &instance{url: url, port: port}, nil
		}
		return nil, fmt.Errorf("embedded NATS: port %d on 127.0.0.1 is in use by another program (%v), not by a tapline embedded server for %s; "+
			"set embedded_port to a free port, or set url to use that server", port, lerr, store)
	}
	ln.Close()

	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	opts := &server.Options{
		ServerName:             name,
		Host:                   "127.0.0.1",
		Port:                   port,
		JetStream:              true,
		StoreDir:               store,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	sl := &serverLog{log: log.With("component", "nats-server")}
	srv.SetLoggerV2(sl, false, false, false)
	srv.Start()
	wait := startTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = max(time.Until(dl), time.Millisecond)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if f := sl.fatal(); f != "" {
			return nil, fmt.Errorf("embedded NATS on port %d (embedded_port): %s", port, f)
		}
		return nil, fmt.Errorf("embedded NATS on port %d (embedded_port) did not accept connections within %s", port, wait)
	}
	log.Info("embedded NATS server started", "url", url, "store_dir", store, "server_name", name)
	return &instance{srv: srv, url: url, port: port}, nil
}

// peerServerName connects to url as a plain client and returns the name
// the server announces.
func peerServerName(url string) (string, error) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect(), nats.Name("tapline embedded-server probe"))
	if err != nil {
		return "", err
	}
	defer nc.Close()
	return nc.ConnectedServerName(), nil
}

// serverLog routes nats-server's logger to slog. Notices, which the server
// writes for every routine step, go to debug.
type serverLog struct {
	log *slog.Logger

	mu        sync.Mutex
	lastFatal string
}

func (l *serverLog) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastFatal
}

// Noticef logs at debug level.
func (l *serverLog) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

// Warnf logs at warn level.
func (l *serverLog) Warnf(format string, v ...any) { l.log.Warn(fmt.Sprintf(format, v...)) }

// Fatalf logs at error level and remembers the message; it does not exit.
func (l *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.lastFatal = msg
	l.mu.Unlock()
	l.log.Error(msg)
}

// Errorf logs at error level.
func (l *serverLog) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }

// Debugf logs at debug level.
func (l *serverLog) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

// Tracef logs at debug level.
func (l *serverLog) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
