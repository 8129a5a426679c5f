package connectors

import (
	"context"
	"strings"
	"sync"
)

// Read-your-writes: a view sink records, in the same transaction as each
// batch, the furthest origin position (SourceInfo.Position) it has applied
// for every origin, so that a caller who wrote to the origin database can
// wait until the view has caught up with its write.

// OriginKey names the origin an event came from: the source connector and
// its logical name, or its database when the name is empty
// ("postgres/shop"). Positions are compared only within one origin.
func OriginKey(s SourceInfo) string {
	name := s.Name
	if name == "" {
		name = s.DB
	}
	return s.Connector + "/" + name
}

// OriginOrder compares two origin positions of one connector: -1, 0 or +1
// when a is before, at or after b, and ok false when either cannot be
// ordered (a snapshot row's position, say).
type OriginOrder func(a, b string) (c int, ok bool)

var (
	originMu     sync.RWMutex
	originOrders = map[string]OriginOrder{}
)

// RegisterOriginOrder sets how positions of the named source connector are
// compared. Sources call it from init.
func RegisterOriginOrder(connector string, order OriginOrder) {
	originMu.Lock()
	defer originMu.Unlock()
	originOrders[connector] = order
}

// CompareOrigin compares two positions of the named connector's origin with
// its registered order; ok is false when the connector registered none or
// either position cannot be ordered.
func CompareOrigin(connector, a, b string) (c int, ok bool) {
	originMu.RLock()
	order := originOrders[connector]
	originMu.RUnlock()
	if order == nil {
		return 0, false
	}
	return order(a, b)
}

// OriginTracker is implemented by sinks that record the origin positions
// they have applied (the view sinks).
type OriginTracker interface {
	// AppliedOrigins returns, per OriginKey, the furthest origin position
	// applied and committed. It is safe to call concurrently with
	// WriteBatch and returns a copy.
	AppliedOrigins(ctx context.Context) (map[string]string, error)
}

// Origins accumulates the furthest position per origin over a batch; view
// sinks use it to know what to store with the batch. The zero value is
// ready to use.
type Origins map[string]string

// Observe records ev's origin position if it is after the one held (see
// Later).
func (o Origins) Observe(ev *Event) {
	if ev.Source.Position == "" || ev.Source.Connector == "" {
		return
	}
	key := OriginKey(ev.Source)
	if old, had := o[key]; !had || Later(ev.Source.Connector, ev.Source.Position, old) {
		o[key] = ev.Source.Position
	}
}

// Merge folds other (positions keyed by OriginKey) into o with the same
// rule, other's positions being the newer ones.
func (o Origins) Merge(other map[string]string) {
	for key, pos := range other {
		connector, _, _ := strings.Cut(key, "/")
		if old, had := o[key]; !had || Later(connector, pos, old) {
			o[key] = pos
		}
	}
}

// Later reports whether origin position next, seen after old, should
// replace it: when the connector orders both, next must be after old; an
// orderable position always beats one that is not (a snapshot row's), and
// between two unorderable ones the newer wins.
func Later(connector, next, old string) bool {
	if c, ok := CompareOrigin(connector, next, old); ok {
		return c > 0
	}
	_, nextOK := CompareOrigin(connector, next, next)
	_, oldOK := CompareOrigin(connector, old, old)
	return nextOK || !oldOK
}
