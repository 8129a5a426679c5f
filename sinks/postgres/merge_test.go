package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/internal/viewsql"
	"github.com/tapline/tapline/internal/viewsql/viewsqltest"
)

// The two ways a group of rows is written, one statement reading arrays
// and COPY into a temporary table then a merge, leave the same tables for
// a stream of every kind of change: inserts and snapshot reads of new
// keys, updates of stored rows (some leaving columns unchanged, as TOAST
// does), deletes and truncates, in batches of random sizes; in upsert and
// in history mode.
func TestArraysAndCopyAgree(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	events := viewsqltest.Generate(20_000, 11)
	m := viewsqltest.NewModel()
	for i := range events {
		m.Apply(&events[i])
	}
	for _, mode := range []string{viewsql.ModeUpsert, viewsql.ModeHistory} {
		t.Run(mode, func(t *testing.T) {
			schemas := map[string]string{}
			for _, way := range []string{"arrays", "copy"} {
				sch := servicetest.Name(t, "tvm_"+way)
				servicetest.DropPostgresLater(t, dsn, "", "", sch)
				schemas[way] = sch
				cfg := DefaultConfig()
				cfg.DSN = connectors.Secret(dsn)
				cfg.Schema = sch
				cfg.Mode = mode
				b := newBackend(cfg)
				if way == "copy" {
					b.copyMin = 1
				} else {
					b.copyMin = 1 << 30
				}
				s, err := viewsql.New("postgres", cfg.Config, b, connectors.Runtime{Pipeline: "agree"})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Open(ctx); err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(3, 4))
				for i := 0; i < len(events); {
					n := min(1+rng.IntN(600), len(events)-i)
					b := connectors.Batch{Events: events[i : i+n], Last: events[i+n-1].Position}
					if err := s.WriteBatch(ctx, b); err != nil {
						t.Fatalf("%s: batch at event %d: %v", way, i, err)
					}
					i += n
				}
				if err := s.Close(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tables := map[string][]string{"items": {"id", "name", "qty", "price", "note"}, "pairs": {"tenant", "id", "val"}}
			for table, cols := range tables {
				keyCols := map[string]int{"items": 1, "pairs": 2}[table]
				order := strings.Join(cols[:keyCols], ", ")
				name := table
				if mode == viewsql.ModeHistory {
					name, order = table+"_history", viewsql.HistorySeq
					cols = append([]string{viewsql.HistorySeq, viewsql.HistoryOp, viewsql.HistoryPosition, viewsql.HistoryUnchanged}, cols...)
				}
				var got [2][][]string
				for i, way := range []string{"arrays", "copy"} {
					got[i] = viewsqltest.Query(t, db, fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", strings.Join(cols, ", "), pgx.Identifier{schemas[way], name}.Sanitize(), order))
				}
				if len(got[0]) == 0 {
					t.Fatalf("%s is empty", name)
				}
				if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) {
					t.Fatalf("%s: the arrays and the COPY way differ: %d and %d rows", name, len(got[0]), len(got[1]))
				}
				if mode == viewsql.ModeUpsert {
					viewsqltest.SortRows(got[0], keyCols)
					if want := m.Rows(table, cols, keyCols); fmt.Sprint(got[0]) != fmt.Sprint(want) {
						t.Fatalf("%s differs from the events: %d rows, want %d", name, len(got[0]), len(want))
					}
				} else if len(got[0]) != countTable(events, table) {
					t.Fatalf("%s holds %d rows, want one per event (%d)", name, len(got[0]), countTable(events, table))
				}
			}
		})
	}
}

func countTable(events []connectors.Event, table string) int {
	n := 0
	for i := range events {
		if events[i].Table().Name == table {
			n++
		}
	}
	return n
}
