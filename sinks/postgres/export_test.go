package postgres

import "github.com/tapline/tapline/internal/viewsql"

// SetHooks sets fault-injection hooks, for tests.
func (s *Sink) SetHooks(h viewsql.Hooks) { s.v.SetHooks(h) }
