package mysql

import (
	"context"
	"fmt"
	"testing"
)

// ALTER TABLE ADD/DROP/MODIFY COLUMN mid-stream: every event carries the
// columns of its own table version (from the TABLE_MAP before it), also
// when the source restarts in the middle of the DDL sequence.
func TestSchemaChangesMidStreamAndAcrossRestart(t *testing.T) {
	f := newFixture(t)
	tbl := f.name + ".items"
	cfg := f.config()
	cfg.StartPosition = f.gtidPos()
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, qty) VALUES (1, 'a', 10)", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN color varchar(10) AFTER name", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, qty, color) VALUES (2, 'b', 20, 'red')", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN qty", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, color) VALUES (3, 'c', 'blue')", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN name varchar(20) NOT NULL", tbl))
	f.exec(fmt.Sprintf("UPDATE %s SET name = 'cc' WHERE id = 3", tbl))
	want := []struct {
		version int
		row     string
		native  string // of name
	}{
		{1, "map[doc:<nil> id:1 name:a price:<nil> qty:10]", "varchar(100)"},
		{2, "map[color:red doc:<nil> id:2 name:b price:<nil> qty:20]", "varchar(100)"},
		{3, "map[color:blue doc:<nil> id:3 name:c price:<nil>]", "varchar(100)"},
		{4, "map[color:blue doc:<nil> id:3 name:cc price:<nil>]", "varchar(20)"},
	}
	ctx := context.Background()
	s := f.source(t, cfg)
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	evs := readN(t, s, 4)
	s.Close(ctx)
	for i, w := range want {
		ev := evs[i]
		name := ev.Schema.Columns[ev.Schema.Index("name")]
		if got := fmt.Sprint(named(ev)); got != w.row || ev.Schema.Version != w.version || name.Native != w.native {
			t.Errorf("event %d: version %d %s name %s; want version %d %s name %s", i, ev.Schema.Version, got, name.Native, w.version, w.row, w.native)
		}
	}
	if evs[3].Schema.Columns[evs[3].Schema.Index("name")].Nullable {
		t.Errorf("name is NOT NULL after the MODIFY, the schema says nullable")
	}
	if evs[0].Schema == evs[1].Schema || evs[2].Schema != evs[2].Schema {
		t.Errorf("schemas are not one per table version")
	}
	// Restart after the second event, between the ADD and the DROP: the
	// events after it still carry their own columns.
	for _, at := range []int{0, 1, 2} {
		s2 := f.source(t, cfg)
		if err := s2.Open(ctx, evs[at].Position); err != nil {
			t.Fatal(err)
		}
		rest := readN(t, s2, 3-at)
		s2.Close(ctx)
		for i, ev := range rest {
			if got := fmt.Sprint(named(ev)); got != want[at+1+i].row {
				t.Errorf("after a restart at event %d: event %d = %s; want %s", at, at+1+i, got, want[at+1+i].row)
			}
		}
	}
}
