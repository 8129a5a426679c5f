package generate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/sources/generate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSource(t testing.TB, mod func(*generate.Config)) *generate.Source {
	t.Helper()
	cfg := generate.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	s, err := generate.New(cfg, connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readN opens a source at pos and reads until n events or io.EOF.
func readN(t testing.TB, s *generate.Source, pos connectors.Position, n int, lim connectors.Limits) []connectors.Event {
	t.Helper()
	ctx := context.Background()
	if err := s.Open(ctx, pos); err != nil {
		t.Fatal(err)
	}
	var out []connectors.Event
	for len(out) < n {
		b, err := s.ReadBatch(ctx, lim)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Events...)
		if b.Last != nil {
			s.Ack(ctx, b.Last)
		}
	}
	return out
}

var lim = connectors.Limits{MaxEvents: 100, MaxBytes: 1 << 20, MaxWait: time.Second}

func TestConformance(t *testing.T) {
	connectortest.RunSource(t, connectortest.SourceHarness{
		New: func(t *testing.T) connectors.Source {
			return newSource(t, func(c *generate.Config) {
				c.Tables = []string{"shop.orders", "shop.customers", "audit"}
				c.Count = 600
				c.Ops = "ccud"
			})
		},
		Events: 600,
	})
}

func TestDefaults(t *testing.T) {
	reg, err := connectors.Default.Lookup(connectors.KindSource, "generate")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range reg.Fields() {
		if f.Doc == "" {
			t.Errorf("key %s has no doc", f.Key)
		}
		got = append(got, f.Key+"="+f.Default)
	}
	if s := strings.Join(got, " "); s != "tables=orders count= rate= seed=1 ops=c" {
		t.Errorf("config keys and defaults: %s", s)
	}
	if s := reg.FormatPosition(connectors.TxPosition{Commit: 42, Ordinal: 1}.Encode()); s != "42:1" {
		t.Errorf("FormatPosition = %q", s)
	}
	src, err := reg.NewSource(reg.NewConfig(), connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*generate.Source)
	evs := readN(t, s, nil, 3, lim)
	for i, ev := range evs[:3] {
		if ev.Op != connectors.OpCreate || ev.Table().String() != "orders" || ev.After[0] != int64(i+1) ||
			ev.Source.Position != fmt.Sprintf("%d:1", i+1) || ev.Tx.ID != fmt.Sprint(i+1) || ev.Source.Connector != "generate" {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	s.Close(context.Background())
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*generate.Config)
		want string
	}{
		{func(c *generate.Config) { c.Tables = nil }, "tables: give at least one table"},
		{func(c *generate.Config) { c.Tables = []string{"a", "a"} }, `tables: "a" is listed twice`},
		{func(c *generate.Config) { c.Tables = []string{"s."} }, `tables: "s." is not a table name`},
		{func(c *generate.Config) { c.Count = -1 }, "count: -1 is negative"},
		{func(c *generate.Config) { c.Rate = -5 }, "rate: -5 is not a rate"},
		{func(c *generate.Config) { c.Ops = "" }, "ops: give at least one letter"},
		{func(c *generate.Config) { c.Ops = "ucd" }, `ops "ucd": the update at letter 1 has no row to change yet`},
		{func(c *generate.Config) { c.Ops = "cdd" }, `ops "cdd": the delete at letter 3 has no row to change yet`},
		{func(c *generate.Config) { c.Ops = "cdud" }, `ops "cdud": the update at letter 3`},
		{func(c *generate.Config) { c.Ops = "cx" }, `ops "cx": 'x' is not an operation`},
		{func(c *generate.Config) { c.Ops = "ct" }, `truncates are not generated`},
	} {
		cfg := generate.DefaultConfig()
		tc.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", cfg, err, tc.want)
		}
		if _, err := generate.New(cfg, connectors.Runtime{}); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	cfg := generate.DefaultConfig()
	cfg.Ops = "cud"
	if err := cfg.Validate(); err != nil {
		t.Errorf("cud: %v", err)
	}
}

// The same seed makes the same events, whatever the batch sizes; another
// seed makes other values with the same keys.
func TestDeterministic(t *testing.T) {
	mod := func(seed int64) func(*generate.Config) {
		return func(c *generate.Config) {
			c.Seed, c.Count, c.Ops, c.Tables = seed, 2000, "cccuud", []string{"a", "b.c"}
		}
	}
	a := readN(t, newSource(t, mod(1)), nil, 2000, connectors.Limits{MaxEvents: 7})
	b := readN(t, newSource(t, mod(1)), nil, 2000, connectors.Limits{MaxEvents: 500})
	c := readN(t, newSource(t, mod(2)), nil, 2000, lim)
	if len(a) != 2000 || len(b) != 2000 || len(c) != 2000 {
		t.Fatalf("read %d, %d, %d events", len(a), len(b), len(c))
	}
	same := 0
	for i := range a {
		if describe(&a[i]) != describe(&b[i]) {
			t.Fatalf("event %d differs between runs:\n%s\n%s", i+1, describe(&a[i]), describe(&b[i]))
		}
		if a[i].Op != connectors.OpDelete && describe(&a[i]) == describe(&c[i]) { // deletes hold only the key
			same++
		}
	}
	if same > 0 {
		t.Errorf("seeds 1 and 2 made %d identical inserts and updates", same)
	}
}

func describe(ev *connectors.Event) string {
	b, err := eventjson.AppendEvent([]byte(ev.Position.String()+" "), &connectors.Event{
		Op: ev.Op, Schema: ev.Schema, Before: ev.Before, After: ev.After, Tx: ev.Tx,
	}, eventjson.Options{OmitSchema: true, ValidateJSON: true})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Resuming after any event gives the rest of an uninterrupted run.
func TestResume(t *testing.T) {
	mod := func(c *generate.Config) { c.Count, c.Ops, c.Tables = 300, "rcud", []string{"x", "y"} }
	all := readN(t, newSource(t, mod), nil, 300, lim)
	for _, k := range []int{1, 2, 3, 150, 299} {
		rest := readN(t, newSource(t, mod), all[k-1].Position, 300, lim)
		if len(rest) != 300-k {
			t.Fatalf("after event %d: %d events, want %d", k, len(rest), 300-k)
		}
		for i := range rest {
			if describe(&rest[i]) != describe(&all[k+i]) {
				t.Fatalf("after event %d: event %d is %s, want %s", k, k+i+1, describe(&rest[i]), describe(&all[k+i]))
			}
		}
	}
	// (n, 0) is before event n; the end of the stream reads nothing.
	rest := readN(t, newSource(t, mod), connectors.TxPosition{Commit: 10}.Encode(), 300, lim)
	if len(rest) != 291 || describe(&rest[0]) != describe(&all[9]) {
		t.Fatalf("from 10:0: %d events starting %s", len(rest), describe(&rest[0]))
	}
	if rest := readN(t, newSource(t, mod), all[299].Position, 300, lim); len(rest) != 0 {
		t.Fatalf("after the last event: %d events", len(rest))
	}
	if err := newSource(t, mod).Open(context.Background(), connectors.Position("nope")); err == nil || !strings.Contains(err.Error(), "not a transaction position") {
		t.Fatalf("Open at a foreign position: %v", err)
	}
}

// Updates and deletes change only rows that exist, inserts only make new
// ones, so that a view built from the stream is well defined; the tables
// grow by the pattern's inserts minus deletes.
func TestOpsKeepAViewWellDefined(t *testing.T) {
	for _, ops := range []string{"c", "cud", "ccud", "cccuuddr", "rrruc", "cu", "cd"} {
		t.Run(ops, func(t *testing.T) {
			const n = 6000
			s := newSource(t, func(c *generate.Config) { c.Count, c.Ops, c.Tables = n, ops, []string{"t1", "t2", "t3"} })
			views := map[string]map[int64]bool{}
			counts := map[connectors.Op]int{}
			for _, ev := range readN(t, s, nil, n, connectors.Limits{MaxEvents: 1000}) {
				counts[ev.Op]++
				v := views[ev.Table().String()]
				if v == nil {
					v = map[int64]bool{}
					views[ev.Table().String()] = v
				}
				id := ev.Key()[0].Value.(int64)
				switch ev.Op {
				case connectors.OpCreate, connectors.OpRead:
					if v[id] || ev.Before != nil || len(ev.After) != 6 {
						t.Fatalf("insert of existing row %d: %+v", id, ev)
					}
					v[id] = true
				case connectors.OpUpdate:
					if !v[id] || ev.After == nil {
						t.Fatalf("update of missing row %d", id)
					}
				case connectors.OpDelete:
					if !v[id] || ev.After != nil || ev.Before[1] != nil {
						t.Fatalf("delete of missing row %d: %+v", id, ev)
					}
					delete(v, id)
				}
			}
			for _, c := range ops {
				if counts[connectors.Op(c)] == 0 {
					t.Errorf("no %c events: %v", c, counts)
				}
			}
			ins := strings.Count(ops, "c") + strings.Count(ops, "r")
			want := n / 3 / len(ops) * (ins - strings.Count(ops, "d"))
			for name, v := range views {
				if len(v) < want || len(v) > want+len(ops) {
					t.Errorf("table %s holds %d rows, want about %d", name, len(v), want)
				}
			}
		})
	}
}

func TestValues(t *testing.T) {
	evs := readN(t, newSource(t, func(c *generate.Config) { c.Count = 200; c.Tables = []string{"public.orders"} }), nil, 200, lim)
	nullPayloads := 0
	for _, ev := range evs {
		if err := connectors.ParseTableID("public.orders"); ev.Table() != err {
			t.Fatalf("table %v", ev.Table())
		}
		a := ev.After
		if _, ok := a[1].(string); !ok {
			t.Fatalf("name %#v", a[1])
		}
		if s, ok := a[2].(string); !ok || !strings.Contains(s, ".") || len(s) < 4 {
			t.Fatalf("amount %#v", a[2])
		}
		if s, ok := a[3].(string); !ok || !strings.HasSuffix(s, "Z") {
			t.Fatalf("created_at %#v", a[3])
		} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			t.Fatalf("created_at %q: %v", s, err)
		}
		if a[4] == nil {
			nullPayloads++
		} else if _, ok := a[4].(connectors.JSON); !ok {
			t.Fatalf("payload %#v", a[4])
		}
		if _, ok := a[5].(bool); !ok {
			t.Fatalf("flag %#v", a[5])
		}
		if ev.Source.Schema != "public" || ev.Source.Table != "orders" || ev.Source.DB != "generate" || ev.Source.TsMs == 0 || ev.TsMs == 0 {
			t.Fatalf("source %+v", ev.Source)
		}
		if _, err := eventjson.AppendEvent(nil, &ev, eventjson.Options{ValidateJSON: true}); err != nil {
			t.Fatal(err)
		}
	}
	if nullPayloads == 0 || nullPayloads > 40 {
		t.Errorf("%d of 200 payloads are null, want a few", nullPayloads)
	}
}

func TestBatchBounds(t *testing.T) {
	s := newSource(t, nil) // endless
	ctx := context.Background()
	if _, err := s.ReadBatch(ctx, lim); err == nil {
		t.Fatal("ReadBatch before Open: no error")
	}
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 10})
	if err != nil || len(b.Events) != 10 || b.Last.Compare(b.Events[9].Position) != 0 {
		t.Fatalf("MaxEvents 10: %d events, %v", len(b.Events), err)
	}
	b, err = s.ReadBatch(ctx, connectors.Limits{MaxBytes: 5000})
	size := b.Size()
	if err != nil || size < 5000 || size-b.Events[len(b.Events)-1].Size() >= 5000 {
		t.Fatalf("MaxBytes 5000: %d events of %d bytes, %v", len(b.Events), size, err)
	}
	if b, _ := s.ReadBatch(ctx, connectors.Limits{}); len(b.Events) != 1000 {
		t.Fatalf("no limits: %d events, want the default bound 1000", len(b.Events))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.ReadBatch(cctx, lim); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ReadBatch: %v", err)
	}
	if err := s.Ack(ctx, b.Last); err != nil || s.Acked().Compare(b.Last) != 0 {
		t.Fatalf("Acked() = %v after Ack(%v): %v", s.Acked(), b.Last, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBatch(ctx, lim); !errors.Is(err, connectors.ErrClosed) {
		t.Fatalf("ReadBatch after Close: %v", err)
	}
}

func TestCountEndsWithEOF(t *testing.T) {
	s := newSource(t, func(c *generate.Config) { c.Count = 25 })
	ctx := context.Background()
	s.Open(ctx, nil)
	b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 20})
	if err != nil || len(b.Events) != 20 {
		t.Fatal(len(b.Events), err)
	}
	b, err = s.ReadBatch(ctx, connectors.Limits{MaxEvents: 20})
	if err != nil || len(b.Events) != 5 {
		t.Fatal(len(b.Events), err)
	}
	for range 2 {
		if b, err := s.ReadBatch(ctx, lim); !errors.Is(err, io.EOF) || len(b.Events) != 0 {
			t.Fatalf("after the count: %d events, %v", len(b.Events), err)
		}
	}
}

// The rate holds over time; a batch is returned MaxWait after its first
// event; a cancelled read returns what it has made.
func TestRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSource(t, func(c *generate.Config) { c.Rate = 100 })
		ctx := context.Background()
		s.Open(ctx, nil)
		start := time.Now()
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 1000, MaxWait: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		// Event 1 at once, then one every 10ms until 200ms after it.
		if el := time.Since(start); el != 200*time.Millisecond || len(b.Events) != 21 {
			t.Fatalf("first batch: %d events after %v, want 21 after 200ms", len(b.Events), el)
		}
		total := len(b.Events)
		for time.Since(start) < 10*time.Second {
			b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 50, MaxWait: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Events) != 50 {
				t.Fatalf("batch of %d events, want 50 (the count bound comes first)", len(b.Events))
			}
			total += len(b.Events)
		}
		if el := time.Since(start); total != int(el/(10*time.Millisecond))+1 {
			t.Fatalf("%d events in %v at 100/s", total, el)
		}
		// A stalled reader gets a burst of at most a second's worth.
		time.Sleep(time.Minute)
		b, _ = s.ReadBatch(ctx, connectors.Limits{MaxEvents: 10000, MaxWait: time.Millisecond})
		if len(b.Events) < 95 || len(b.Events) > 110 {
			t.Fatalf("after a 1m stall: a burst of %d events, want about 100", len(b.Events))
		}
		// Cancelling a waiting read returns what it has.
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(55*time.Millisecond, cancel)
		b, err = s.ReadBatch(cctx, connectors.Limits{MaxEvents: 1000, MaxWait: time.Hour})
		if err != nil || len(b.Events) < 5 || len(b.Events) > 7 {
			t.Fatalf("cancelled after 55ms: %d events, %v", len(b.Events), err)
		}
		if _, err := s.ReadBatch(cctx, lim); !errors.Is(err, context.Canceled) {
			t.Fatalf("next read: %v", err)
		}
		s.Close(ctx)
	})
}

func BenchmarkReadBatch(b *testing.B) {
	s := newSource(b, func(c *generate.Config) { c.Ops = "ccud" })
	ctx := context.Background()
	s.Open(ctx, nil)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		batch, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 1000})
		if err != nil {
			b.Fatal(err)
		}
		n += len(batch.Events)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}
