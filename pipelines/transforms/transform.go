// Package transforms holds the per-event transforms a pipeline applies
// between its source and its sink (filter, drop_columns, mask_columns,
// rename, route), and the registry they are found in by name.
package transforms

import (
	"github.com/tapline/tapline/connectors"
)

// Transform changes or drops events. Apply is called from one goroutine, in
// source order.
//
// Row slices and schemas are shared between events: a transform that changes
// a row copies it first, and one that changes a schema builds a new one (and
// should cache it per input schema, so that all events of one table version
// share one output schema).
type Transform interface {
	// Apply changes ev in place and reports whether to keep it. An error
	// stops the pipeline; it should name the transform and the table.
	Apply(ev *connectors.Event) (keep bool, err error)
}

// Func adapts a function to Transform.
type Func func(ev *connectors.Event) (bool, error)

// Apply calls f.
func (f Func) Apply(ev *connectors.Event) (bool, error) { return f(ev) }
