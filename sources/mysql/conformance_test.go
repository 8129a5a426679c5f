package mysql

import (
	"fmt"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
)

// The source passes the conformance suite against the real server: exact
// resume after a partial acknowledgement inside a transaction, batch
// bounds, order, Close twice, no goroutine left behind.
func TestConformance(t *testing.T) {
	f := newFixture(t)
	start := f.gtidPos()
	// 30 transactions of 10 changes: inserts, then updates and deletes,
	// with a table that is not captured written in between.
	f.exec(fmt.Sprintf("CREATE TABLE %s.other (id int PRIMARY KEY)", f.name))
	for tx := 0; tx < 30; tx++ {
		var stmts []string
		for i := 0; i < 10; i++ {
			id := tx*10 + i
			switch {
			case tx >= 20 && i%2 == 0:
				stmts = append(stmts, fmt.Sprintf(`UPDATE %s.items SET qty = qty + 1, doc = '{"v": %d}' WHERE id = %d`, f.name, tx, id-100))
			case tx >= 20:
				stmts = append(stmts, fmt.Sprintf("DELETE FROM %s.items WHERE id = %d", f.name, id-150))
			default:
				stmts = append(stmts, fmt.Sprintf(`INSERT INTO %s.items VALUES (%d, 'item %d', %d, %d.25, '{"a": [1, 2]}')`, f.name, id, id, i, id))
			}
			if i == 4 {
				stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.other VALUES (%d)", f.name, id))
			}
		}
		f.tx(stmts...)
	}
	cfg := f.config()
	cfg.StartPosition = start
	connectortest.RunSource(t, connectortest.SourceHarness{
		New:    func(t *testing.T) connectors.Source { return f.source(t, cfg) },
		Events: 300,
		Limits: connectors.Limits{MaxEvents: 7, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond},
	})
}
