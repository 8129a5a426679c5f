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
	// faultTornBatch sends part of the batch's transaction (MULTI, some
	// commands) and cuts the connection: Redis discards a transaction
	// whose EXEC it never got (a crash within the atomic unit).
	faultTornBatch
	// faultLostReply sends the whole transaction and cuts the connection
	// before the reply is read: the batch is applied but the sink does not
	// know (a crash right after the atomic unit).
	faultLostReply
)

type injector struct {
	mu      sync.Mutex
	armed   fault
	fired   int
	tornAt  int    // bytes of the transaction sent before a torn cut
	onBatch func() // runs once, before the next transaction is sent
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
	in      *injector
	cutRead bool // the lost-reply fault: fail the next read
}

// isBatch reports whether a write starts a batch's transaction: MULTI
// comes first, in any case.
func isBatch(b []byte) bool {
	head := bytes.ToUpper(b[:min(len(b), 32)])
	return bytes.HasPrefix(head, []byte("*1\r\n$5\r\nMULTI\r\n"))
}

func (c *faultConn) Write(b []byte) (int, error) {
	in := c.in
	in.mu.Lock()
	batch := isBatch(b)
	if batch && in.onBatch != nil {
		f := in.onBatch
		in.onBatch = nil
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
	case in.armed == faultTornBatch && batch:
		in.armed = faultNone
		in.fired++
		n := min(in.tornAt, len(b)-1)
		in.mu.Unlock()
		c.Conn.Write(b[:n])
		c.Conn.Close()
		return n, errInjected
	case in.armed == faultLostReply && batch:
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
