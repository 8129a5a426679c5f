package connectors

import (
	"errors"
	"fmt"
	"strings"
)

// ErrClosed is returned by a connector used after Close.
var ErrClosed = errors.New("connector closed")

// IsRetryable reports whether err, or an error it wraps, says that trying the
// same operation again may succeed (a lost connection, a timeout, a broker
// leader change). The engine retries only these, with backoff; any other
// error stops the pipeline.
func IsRetryable(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}

// Retryable wraps err so that IsRetryable reports true for it. It returns
// nil for a nil err.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err}
}

type retryableError struct{ err error }

func (e *retryableError) Error() string   { return e.err.Error() }
func (e *retryableError) Unwrap() error   { return e.err }
func (e *retryableError) Retryable() bool { return true }

// EventError is one event a sink refused, by its index in the batch.
type EventError struct {
	Index int
	Err   error
}

// RejectError is returned by Sink.WriteBatch when particular events can never
// be written (a value the store cannot hold, a row too large). The sink has
// written nothing of the batch. The engine applies the pipeline's error
// policy: fail, skip the events, or send them to a dead-letter sink; then it
// writes the rest of the batch again.
type RejectError struct {
	Events []EventError
}

// Error lists the first few rejected events.
func (e *RejectError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sink rejected %d event(s)", len(e.Events))
	for i, ev := range e.Events {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Events)-3)
			break
		}
		fmt.Fprintf(&b, "; event %d: %v", ev.Index, ev.Err)
	}
	return b.String()
}
