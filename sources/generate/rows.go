package generate

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/tapline/tapline/connectors"
)

// table is one generated table.
type table struct {
	id     connectors.TableID
	schema *connectors.Schema
	salt   uint64 // from the name, so a table's values do not depend on its place in the list
}

// tableSchema is the fixed shape of every generated table.
func tableSchema(id connectors.TableID) *connectors.Schema {
	return connectors.MustSchema(id, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
		{Name: "name", Type: connectors.TypeString, Native: "text", Nullable: true},
		{Name: "amount", Type: connectors.TypeDecimal, Native: "numeric(12,2)", Nullable: true},
		{Name: "created_at", Type: connectors.TypeTimestampTZ, Native: "timestamptz"},
		{Name: "payload", Type: connectors.TypeJSON, Native: "jsonb", Nullable: true},
		{Name: "flag", Type: connectors.TypeBool, Native: "boolean"},
	})
}

// pattern is the cycle of operations each table repeats, with the counts
// that place any step of it in closed form.
type pattern struct {
	ops       []connectors.Op
	insBefore []uint64 // inserts in the cycle before each step
	delBefore []uint64 // deletes in the cycle before each step
	ins, del  uint64   // per cycle
}

func newPattern(ops string) (pattern, error) {
	var p pattern
	if ops == "" {
		return p, fmt.Errorf("ops: give at least one letter: c insert, r snapshot read, u update, d delete")
	}
	live := 0
	for i, c := range ops {
		op := connectors.Op(c)
		switch op {
		case connectors.OpCreate, connectors.OpRead:
			live++
		case connectors.OpUpdate, connectors.OpDelete:
			if live == 0 {
				return p, fmt.Errorf("ops %q: the %s at letter %d has no row to change yet; put an insert (c or r) before it", ops, opWord(op), i+1)
			}
			if op == connectors.OpDelete {
				live--
			}
		case connectors.OpTruncate:
			return p, fmt.Errorf("ops %q: truncates are not generated; use c, r, u and d", ops)
		default:
			return p, fmt.Errorf("ops %q: %q is not an operation; use c insert, r snapshot read, u update, d delete", ops, c)
		}
		p.insBefore = append(p.insBefore, p.ins)
		p.delBefore = append(p.delBefore, p.del)
		p.ops = append(p.ops, op)
		switch op {
		case connectors.OpCreate, connectors.OpRead:
			p.ins++
		case connectors.OpDelete:
			p.del++
		}
	}
	if p.del > p.ins {
		return p, fmt.Errorf("ops %q: more deletes (%d) than inserts (%d) in the pattern would empty the table", ops, p.del, p.ins)
	}
	return p, nil
}

func opWord(op connectors.Op) string {
	if op == connectors.OpUpdate {
		return "update"
	}
	return "delete"
}

// event makes event n (from 1) of the stream.
//
// Events go round-robin over the tables; a table's m-th event is step
// (m-1) mod len(ops) of its pattern. Counting the pattern's inserts and
// deletes before step m gives, with no state, the rows that exist then:
// inserts make ids 1, 2, 3, ... in turn, and deletes remove the oldest row,
// so the live rows are the ids after the deleted ones up to the last
// inserted. An update picks one of them by hash.
func (s *Source) event(n uint64, nowMs int64) connectors.Event {
	t := &s.tables[(n-1)%uint64(len(s.tables))]
	m := (n-1)/uint64(len(s.tables)) + 1
	p := &s.pattern
	q, i := (m-1)/uint64(len(p.ops)), (m-1)%uint64(len(p.ops))
	ins := q*p.ins + p.insBefore[i]
	dels := q*p.del + p.delBefore[i]
	op := p.ops[i]

	pos := connectors.TxPosition{Commit: n, Ordinal: 1}
	posText := pos.String()
	ev := connectors.Event{
		Op:       op,
		Schema:   t.schema,
		Position: pos.Encode(),
		Source: connectors.SourceInfo{
			Connector: "generate", DB: "generate", Schema: t.id.Schema, Table: t.id.Name,
			Position: posText, TxID: int64(n), TsMs: nowMs, Snapshot: op == connectors.OpRead,
		},
		Tx:   connectors.TxInfo{ID: posText[:len(posText)-2], TotalOrder: 1}, // one event per transaction, id n
		TsMs: nowMs,
	}
	switch op {
	case connectors.OpCreate, connectors.OpRead:
		ev.After = s.row(t, ins+1, 0)
	case connectors.OpUpdate:
		id := dels + 1 + s.hash(t.salt, m, 'u')%(ins-dels)
		ev.After = s.row(t, id, m)
	case connectors.OpDelete:
		// As Postgres sends it with the default replica identity: the key,
		// other columns null.
		ev.Before = []connectors.Value{int64(dels + 1), nil, nil, nil, nil, nil}
	}
	return ev
}

// epoch is the created_at of id 0.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// row makes the values of row id at version (0 when inserted, else the
// table step of the update): name and created_at stay with the id, the
// rest changes with each version.
func (s *Source) row(t *table, id, version uint64) []connectors.Value {
	hid := s.hash(t.salt, id, 0)
	h := s.hash(t.salt, id, version+1)
	var buf [96]byte

	cents := 100 + h%10_000_000
	b := strconv.AppendUint(buf[:0], cents/100, 10)
	b = append(b, '.', byte('0'+cents/10%10), byte('0'+cents%10))
	amount := string(b)

	created := time.UnixMicro(epoch + int64(id)*61_000_000 + int64(hid>>20%1_000_000)).UTC()
	createdAt := string(created.AppendFormat(buf[:0], "2006-01-02T15:04:05.000000Z"))

	var payload connectors.Value
	if h>>8%16 != 0 { // one row version in 16 has a null payload
		b = append(buf[:0], `{"version":`...)
		b = strconv.AppendUint(b, version, 10)
		b = append(b, `,"tags":["`...)
		t1 := h >> 16 % uint64(len(tags))
		t2 := (t1 + 1 + h>>24%uint64(len(tags)-1)) % uint64(len(tags)) // another tag
		b = append(b, tags[t1]...)
		b = append(b, `","`...)
		b = append(b, tags[t2]...)
		b = append(b, `"],"score":`...)
		b = strconv.AppendUint(b, h>>32%1000, 10)
		b = append(b, '}')
		payload = append(connectors.JSON(nil), b...)
	}
	return []connectors.Value{int64(id), names[hid%uint64(len(names))], amount, createdAt, payload, h>>40&1 == 1}
}

// hash mixes the seed with three numbers (splitmix64's finalizer).
func (s *Source) hash(a, b, c uint64) uint64 {
	return mix(mix(mix(s.seed^a)^b) ^ c)
}

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

var tags = []string{"new", "gift", "express", "bulk", "returning", "promo", "fragile", "b2b"}

// names are the full names rows get, boxed once.
var names = func() []connectors.Value {
	first := []string{"Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Donald", "Margaret",
		"Ken", "Radia", "Dennis", "Shafi", "Leslie", "Hedy", "John", "Katherine"}
	last := []string{"Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Knuth", "Hamilton",
		"Thompson", "Perlman", "Ritchie", "Goldwasser", "Lamport", "Lamarr", "Backus", "Johnson"}
	out := make([]connectors.Value, 0, len(first)*len(last))
	for _, f := range first {
		for _, l := range last {
			out = append(out, f+" "+l)
		}
	}
	return out
}()

func init() {
	connectors.RegisterOriginOrder("generate", func(a, b string) (int, bool) {
		pa, errA := connectors.ParseTxPosition(a)
		pb, errB := connectors.ParseTxPosition(b)
		if errA != nil || errB != nil {
			return 0, false
		}
		return bytes.Compare(pa.Encode(), pb.Encode()), true
	})
}
