package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
)

// The crash test writes ~100,000 generated changes through the sink while
// breaking the connection at random points of random batches: before the
// batch's transaction is sent, in the middle of sending it, and after it
// was sent but before its reply is read. After each failure the test either
// retries the batch on the same sink (as the engine does) or "crashes":
// it drops the sink, opens a new one and resumes from its
// CommittedPosition, cutting batches differently. At the end:
//
//   - every event was applied exactly once, in order: the batch's
//     transaction appends the positions of the events it applies to a
//     list (a test hook inside the same transaction), which must be
//     exactly the positions of all events;
//   - Redis holds exactly the rows and index sets that an independent fold
//     of the events in Go gives;
//   - the table list holds exactly the key patterns of the tables written.

func TestCrashRecoveryHash(t *testing.T) {
	runCrash(t, FormatHash, servicetest.Count(t, "TAPLINE_CRASH_EVENTS", 100_000))
}

func TestCrashRecoveryJSON(t *testing.T) {
	runCrash(t, FormatJSON, servicetest.Count(t, "TAPLINE_CRASH_EVENTS", 100_000)/4)
}

// Without index sets nearly every batch is row groups only.
func TestCrashRecoveryNoIndexes(t *testing.T) {
	runCrashIndexed(t, FormatHash, servicetest.Count(t, "TAPLINE_CRASH_EVENTS", 100_000)/4, false)
}

type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) { l.t.Log(string(b)); return len(b), nil }

func runCrash(t *testing.T, format string, n int) { runCrashIndexed(t, format, n, true) }

func runCrashIndexed(t *testing.T, format string, n int, indexed bool) {
	e := newEnv(t)
	ctx := context.Background()
	evs := generate(42, n)
	in := &injector{}
	logKey := e.cfg.OffsetsPrefix + "applied"
	adjust := func(c *Config) {
		c.Format = format
		if indexed {
			c.Indexes = []Index{{Table: "shop.orders", Column: "customer_id"}, {Table: "lines", Column: "memo"}}
		}
	}
	open := func() *Sink {
		s := e.sink(t, adjust)
		s.dial, s.applyLog = in.dial, logKey
		if os.Getenv("CRASH_DEBUG") != "" {
			s.log = slog.New(slog.NewTextHandler(tlog{t}, nil))
		}
		if err := s.Open(ctx); err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}
	r := rand.New(rand.NewPCG(7, 7))
	s := open()
	defer func() { s.Close(ctx) }()
	fired := map[fault]int{}
	crashes, retries := 0, 0
	var committed connectors.Position
	sent := map[string]bool{}
	for next := 0; next < len(evs); {
		end := min(next+1+r.IntN(400), len(evs))
		b := connectors.Batch{Events: evs[next:end], Last: evs[end-1].Position}
		f := faultNone
		switch x := r.IntN(100); {
		case x < 10:
			f = faultFirstWrite
		case x < 20:
			f = faultTornBatch
		case x < 30:
			f = faultLostReply
		}
		in.arm(f, 1+r.IntN(300))
		sent[string(b.Last)] = true
		err := s.WriteBatch(ctx, b)
		if os.Getenv("CRASH_DEBUG") != "" && next > 50500 && next < 51500 {
			t.Logf("batch [%d,%d) fault %d err %v", next, end, f, err)
		}
		if in.disarm() == faultNone && f != faultNone {
			fired[f]++
		}
		if err == nil {
			next, committed = end, b.Last
			continue
		}
		if os.Getenv("CRASH_DEBUG") != "" {
			t.Logf("batch [%d,%d) fault %d: %v", next, end, f, err)
		}
		if !connectors.IsRetryable(err) {
			t.Fatalf("batch ending at event %d: a non-retryable error after an injected %d: %v", end, f, err)
		}
		if r.IntN(2) == 0 {
			// The engine retries the batch on the same sink.
			retries++
			if os.Getenv("CRASH_DEBUG") != "" {
				t.Logf("retry")
			}
			if err := s.WriteBatch(ctx, b); err != nil {
				t.Fatalf("retry of the batch ending at event %d: %v", end, err)
			}
			next, committed = end, b.Last
			continue
		}
		// The process dies and starts again from the sink's position.
		crashes++
		s.Close(ctx)
		s = open()
		pos, err := s.CommittedPosition(ctx)
		if err != nil {
			t.Fatalf("CommittedPosition: %v", err)
		}
		// The batch in flight may have been applied; so may an earlier one
		// whose reply was lost and whose transaction arrived late.
		if c := pos.Compare(committed); c < 0 || c > 0 && !sent[string(pos)] {
			t.Fatalf("after a crash the position is %s; want the last one acknowledged (%s) or the end of a batch sent since", pos, committed)
		}
		if os.Getenv("CRASH_DEBUG") != "" {
			t.Logf("crash: reopened at %s", pos)
		}
		committed = pos
		next = sort.Search(len(evs), func(i int) bool { return evs[i].Position.Compare(pos) > 0 })
	}
	t.Logf("%d events (%s): faults fired %v (1 before, 2 torn, 3 lost reply), %d retries, %d crashes", len(evs), format, fired, retries, crashes)
	for _, f := range []fault{faultFirstWrite, faultTornBatch, faultLostReply} {
		if fired[f] < 3 {
			t.Errorf("fault %d fired only %d times; the test did not exercise it", f, fired[f])
		}
	}
	if pos, _ := s.CommittedPosition(ctx); pos.Compare(evs[len(evs)-1].Position) != 0 {
		t.Errorf("final position %s, want %s", pos, evs[len(evs)-1].Position)
	}

	// Exactly once, in order.
	applied, err := e.rc.LRange(ctx, logKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	if len(applied) != len(evs) {
		problems = append(problems, fmt.Sprintf("%d events applied, want %d", len(applied), len(evs)))
	}
	for i := 0; i < min(len(applied), len(evs)); i++ {
		if applied[i] != string(evs[i].Position) {
			problems = append(problems, fmt.Sprintf("applied #%d is %x, want %x", i, applied[i], []byte(evs[i].Position)))
			if len(problems) > 5 {
				break
			}
		}
	}
	if len(problems) > 0 {
		t.Fatalf("events not applied exactly once in order:\n  %s", strings.Join(problems, "\n  "))
	}
	e.rc.Del(ctx, logKey)

	checkState(t, e, format, indexed, fold(evs))
}

// checkState compares everything under the test's prefix (but the sink's
// own keys) with the expected rows and (when indexed) the index sets they
// imply, and the key lists with the keys that exist.
func checkState(t *testing.T, e *testEnv, format string, indexed bool, want map[string]map[string]connectors.Value) {
	t.Helper()
	ctx := context.Background()
	wantIdx := map[string][]string{}
	for k, row := range want {
		table, pk, _ := strings.Cut(k, ":")
		col := map[string]string{"orders": "customer_id", "lines": "memo"}[table]
		if v, ok := row[col]; ok && v != nil && indexed {
			ik := fmt.Sprintf("%s:by:%s:%s", table, col, foldEscape(fmt.Sprint(v)))
			wantIdx[ik] = append(wantIdx[ik], pk)
		}
	}
	var problems []string
	var present []string
	for _, full := range e.mustScan(t, "*") {
		if strings.HasPrefix(full, e.cfg.OffsetsPrefix) {
			continue
		}
		present = append(present, full)
		k := strings.TrimPrefix(full, e.prefix)
		if strings.Contains(k, ":by:") {
			got := e.members(t, k)
			w := wantIdx[k]
			sort.Strings(w)
			if !reflect.DeepEqual(got, w) {
				problems = append(problems, fmt.Sprintf("index %s = %v, want %v", k, got, w))
			}
			delete(wantIdx, k)
			continue
		}
		row, ok := want[k]
		if !ok {
			problems = append(problems, "unexpected key "+k)
			continue
		}
		if got, w := e.row(t, format, k), expectRow(format, row); !reflect.DeepEqual(got, w) {
			problems = append(problems, fmt.Sprintf("%s = %v, want %v", k, got, w))
		}
		delete(want, k)
	}
	for k := range want {
		problems = append(problems, "missing row "+k)
	}
	for k := range wantIdx {
		problems = append(problems, "missing index set "+k)
	}
	// The table list.
	tables, _ := e.rc.SMembers(ctx, e.cfg.OffsetsPrefix+"p:tables").Result()
	sort.Strings(tables)
	var wantTables []string
	for _, table := range []string{"lines", "orders"} {
		wantTables = append(wantTables, e.prefix+table+":*")
	}
	if !reflect.DeepEqual(tables, wantTables) {
		problems = append(problems, fmt.Sprintf("the table list holds %v, want %v", tables, wantTables))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 15 {
			problems = append(problems[:15], fmt.Sprintf("... and %d more", len(problems)-15))
		}
		t.Fatalf("Redis differs from the fold of the events:\n  %s", strings.Join(problems, "\n  "))
	}
}

// expectRow is how a folded row reads back in the format.
func expectRow(format string, row map[string]connectors.Value) map[string]any {
	out := map[string]any{}
	for c, v := range row {
		switch {
		case format == FormatJSON && v == nil:
			out[c] = nil
		case format == FormatJSON:
			if i, ok := v.(int64); ok {
				out[c] = json.Number(strconv.FormatInt(i, 10))
			} else {
				out[c] = v
			}
		case v != nil:
			out[c] = fmt.Sprint(v)
		}
	}
	return out
}

// foldEscape is the key escaping, written again for the test.
func foldEscape(s string) string { return strings.NewReplacer("%", "%25", ":", "%3A").Replace(s) }

// foldKey is the key of an event's row (from image), as the default
// template makes it.
func foldKey(sch *connectors.Schema, image []connectors.Value) string {
	var parts []string
	for _, ci := range sch.KeyColumns() {
		parts = append(parts, foldEscape(fmt.Sprint(image[ci])))
	}
	return sch.Table.Name + ":" + strings.Join(parts, ":")
}

// fold applies the events to rows in memory, independently of the sink:
// key → column → value, a column being absent when its value was never
// known (an Unchanged value of a row that was not there).
func fold(evs []connectors.Event) map[string]map[string]connectors.Value {
	rows := map[string]map[string]connectors.Value{}
	for _, ev := range evs {
		sch := ev.Schema
		switch ev.Op {
		case connectors.OpTruncate:
			for k := range rows {
				if strings.HasPrefix(k, sch.Table.Name+":") {
					delete(rows, k)
				}
			}
		case connectors.OpDelete:
			delete(rows, foldKey(sch, ev.Before))
		default:
			key := foldKey(sch, ev.After)
			base := rows[key]
			if ev.Before != nil && ev.Before[0] != nil {
				if old := foldKey(sch, ev.Before); old != key {
					base = rows[old]
					delete(rows, old)
				}
			}
			row := map[string]connectors.Value{}
			for i, c := range sch.Columns {
				v := ev.After[i]
				if connectors.IsUnchanged(v) {
					if bv, ok := base[c.Name]; ok {
						row[c.Name] = bv
					}
					continue
				}
				row[c.Name] = v
			}
			rows[key] = row
		}
	}
	return rows
}

// generate makes n changes to shop.orders (indexed on customer_id) and
// shop.lines (a composite key with ':' and '%' in it, indexed on memo):
// creates, snapshot reads, updates with and without Before images, with
// Unchanged (TOAST) columns, updates that change the primary key, deletes
// and rare truncates of lines.
func generate(seed uint64, n int) []connectors.Event {
	r := rand.New(rand.NewPCG(seed, seed))
	orders := map[int64][]connectors.Value{}
	lines := map[string][]connectors.Value{}
	statuses := []string{"new", "paid", "sent", "done"}
	skus := []string{"a:1", "b%2", "c", "d:e:f"}
	maybe := func(pct int, v connectors.Value) connectors.Value {
		if r.IntN(100) < pct {
			return nil
		}
		return v
	}
	order := func(id int64) []connectors.Value {
		return []connectors.Value{id, maybe(15, int64(1+r.IntN(40))), statuses[r.IntN(4)],
			maybe(20, strings.Repeat("n", 1+r.IntN(30))), maybe(10, fmt.Sprintf("%d.%02d", r.IntN(500), r.IntN(100)))}
	}
	before := func(row []connectors.Value) []connectors.Value {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1: // key only, as Postgres sends without REPLICA IDENTITY FULL
			out := make([]connectors.Value, len(row))
			out[0] = row[0]
			if len(row) == 4 {
				out[1] = row[1]
			}
			return out
		}
		return append([]connectors.Value(nil), row...)
	}
	var evs []connectors.Event
	for i := 0; i < n; i++ {
		commit := uint64(i/4 + 1)
		var ev connectors.Event
		switch x := r.IntN(100); {
		case x < 70:
			id := int64(1 + r.IntN(3000))
			row, live := orders[id]
			switch y := r.IntN(100); {
			case !live:
				op := connectors.OpCreate
				if y < 20 {
					op = connectors.OpRead
				}
				orders[id] = order(id)
				ev = change(op, ordersSchema, commit, nil, orders[id])
			case y < 20:
				ev = change(connectors.OpDelete, ordersSchema, commit, before(row), nil)
				if ev.Before == nil {
					ev.Before = []connectors.Value{id, nil, nil, nil, nil}
				}
				delete(orders, id)
			case y < 28: // the primary key changes
				nid := int64(3001 + r.IntN(3000))
				if _, taken := orders[nid]; taken {
					nid = id
				}
				after := order(nid)
				next := append([]connectors.Value(nil), after...)
				if r.IntN(100) < 30 {
					after[3] = connectors.Unchanged
					next[3] = row[3]
				}
				b := before(row)
				if b == nil { // a key change always carries the old key
					b = []connectors.Value{id, nil, nil, nil, nil}
				}
				ev = change(connectors.OpUpdate, ordersSchema, commit, b, after)
				delete(orders, id)
				orders[nid] = next
			default:
				after := order(id)
				if r.IntN(100) < 70 {
					after[1] = row[1] // the indexed column mostly stays
				}
				next := append([]connectors.Value(nil), after...)
				if r.IntN(100) < 40 {
					after[3] = connectors.Unchanged
					next[3] = row[3]
				}
				if r.IntN(100) < 10 {
					after[1] = connectors.Unchanged
					next[1] = row[1]
				}
				ev = change(connectors.OpUpdate, ordersSchema, commit, before(row), after)
				orders[id] = next
			}
		case x < 99 || i == 0:
			sku, num := skus[r.IntN(len(skus))], int64(1+r.IntN(100))
			k := sku + "\x00" + strconv.FormatInt(num, 10)
			row, live := lines[k]
			memo := maybe(30, []string{"red", "a:b", "50%"}[r.IntN(3)])
			switch {
			case !live:
				lines[k] = []connectors.Value{sku, num, int64(r.IntN(9)), memo}
				ev = change(connectors.OpCreate, linesSchema, commit, nil, lines[k])
			case r.IntN(4) == 0:
				ev = change(connectors.OpDelete, linesSchema, commit, []connectors.Value{sku, num, nil, nil}, nil)
				delete(lines, k)
			default:
				after := []connectors.Value{sku, num, int64(r.IntN(9)), memo}
				next := append([]connectors.Value(nil), after...)
				if r.IntN(100) < 30 {
					after[3] = connectors.Unchanged
					next[3] = row[3]
				}
				ev = change(connectors.OpUpdate, linesSchema, commit, before(row), after)
				lines[k] = next
			}
		default:
			ev = truncate(linesSchema, commit)
			clear(lines)
		}
		ev.Position = connectors.TxPosition{Commit: commit, Ordinal: uint32(i%4 + 1)}.Encode()
		evs = append(evs, ev)
	}
	return evs
}
