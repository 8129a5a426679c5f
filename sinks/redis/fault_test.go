package redis

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
)

// A fault-injecting connection, installed through the sink's dial hook: it
// breaks the connection at a chosen point of the next batch, the way a
// crash or a network cut would.

type fault int

const (
	faultNone fault = iota
	// faultFirstWrite fails the next write before anything is sent: the
	// batch never reaches Redis (a crash before the atomic unit).
	faultFirstWrite
	// faultTornScript sends part of the batch script's request and cuts
	// the connection: Redis never runs an incomplete command (a crash
	// within the atomic unit).
	faultTornScript
	// faultLostReply sends the whole script and cuts the connection before
	// the reply is read: the batch is applied but the sink does not know
	// (a crash right after the atomic unit).
	faultLostReply
)

type injector struct {
	mu       sync.Mutex
	armed    fault
	fired    int
	tornAt   int    // bytes of the script request sent before a torn cut
	onScript func() // runs once, before the next script request is sent
}

func (in *injector) arm(f fault, tornAt int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.armed, in.tornAt = f, tornAt
}

func (in *injector) disarm() fault {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.armed
	in.armed = faultNone
	return f
}

func (in *injector) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, in: in}, nil
}

// errInjected looks like what a cut connection gives.
var errInjected = &net.OpError{Op: "write", Net: "tcp", Err: errors.New("injected fault: connection reset")}

type faultConn struct {
	net.Conn
	in       *injector
	cutRead  bool // the lost-reply fault: fail the next read
	inScript bool // the script request is being sent in several writes
}

// isScript reports whether a write starts a script request: the command
// name comes first, in any case.
func isScript(b []byte) bool {
	head := bytes.ToUpper(b[:min(len(b), 32)])
	return bytes.Contains(head, []byte("\r\nEVALSHA\r\n")) || bytes.Contains(head, []byte("\r\nEVAL\r\n"))
}

func (c *faultConn) Write(b []byte) (int, error) {
	in := c.in
	in.mu.Lock()
	script := isScript(b)
	if script && in.onScript != nil {
		f := in.onScript
		in.onScript = nil
		in.mu.Unlock()
		f()
		in.mu.Lock()
	}
	switch {
	case in.armed == faultFirstWrite:
		in.armed = faultNone
		in.fired++
		in.mu.Unlock()
		c.Conn.Close()
		return 0, errInjected
	case in.armed == faultTornScript && script:
		in.armed = faultNone
		in.fired++
		n := min(in.tornAt, len(b)-1)
		in.mu.Unlock()
		c.Conn.Write(b[:n])
		c.Conn.Close()
		return n, errInjected
	case in.armed == faultLostReply && script:
		in.armed = faultNone
		in.fired++
		c.cutRead = true
	}
	in.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *faultConn) Read(b []byte) (int, error) {
	if c.cutRead {
		c.cutRead = false
		c.Conn.Close()
		return 0, errInjected
	}
	return c.Conn.Read(b)
}
