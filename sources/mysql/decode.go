package mysql

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"

	gmysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/mysqlconv"
)

// rowsDecoder decodes the rows of rows events with internal/mysqlconv, in
// go-mysql's parsing goroutine (BinlogSyncerConfig.RowsEventDecodeFunc),
// straight into connectors.Values: RowsEvent.Rows then holds one
// []connectors.Value per row image. Rows of tables that are not captured
// are not decoded at all. The decoder is used by one goroutine at a time.
type rowsDecoder struct {
	charsets *mysqlconv.Charsets
	opts     mysqlconv.Options
	filter   *tableFilter
	plans    map[uint64]*decodePlan // by table id
	history  bool                   // captured tables' rows are decoded by the receiver, with the schema history
}

// deferredRows stands for the rows of a captured table when the schema
// history is in use: the receiver decodes them in binlog order, once it has
// applied the DDL before them (the parser runs ahead of it).
type deferredRows struct {
	data []byte
	pos  int
}

// decodePlan is how the rows of one TABLE_MAP version are decoded.
type decodePlan struct {
	tm         *replication.TableMapEvent
	captured   bool
	dec        *mysqlconv.RowDecoder
	binaryJSON bool  // MySQL json columns: go-mysql decodes those
	deferred   bool  // decoded by the receiver (schema history)
	err        error // the table cannot be decoded
}

// go-mysql keeps two facts about a rows event unexported: whether MariaDB
// compressed it, and its exact event type (a partial JSON update). They are
// read by reflection; TestRowsEventFieldsExist fails if a new go-mysql
// renames them.
var (
	compressedField = fieldIndex("compressed")
	eventTypeField  = fieldIndex("eventType")
)

func fieldIndex(name string) []int {
	f, ok := reflect.TypeFor[replication.RowsEvent]().FieldByName(name)
	if !ok {
		return nil
	}
	return f.Index
}

func rowsEventCompressed(e *replication.RowsEvent) bool {
	return compressedField != nil && reflect.ValueOf(e).Elem().FieldByIndex(compressedField).Bool()
}

func rowsEventType(e *replication.RowsEvent) replication.EventType {
	if eventTypeField == nil {
		return 0
	}
	return replication.EventType(reflect.ValueOf(e).Elem().FieldByIndex(eventTypeField).Uint())
}

func newRowsDecoder(cs *mysqlconv.Charsets, opts mysqlconv.Options, f *tableFilter) *rowsDecoder {
	return &rowsDecoder{charsets: cs, opts: opts, filter: f, plans: map[uint64]*decodePlan{}}
}

// decodeError stands for the rows of an event that could not be decoded:
// RowsEvent.Rows is then one row holding only it, and the receiver returns
// the error (go-mysql would report a decode error with the whole event's
// bytes, row data included, and without its type).
type decodeError struct{ err error }

// rowsError returns the decode error a rows event carries, if any.
func rowsError(e *replication.RowsEvent) error {
	if len(e.Rows) == 1 && len(e.Rows[0]) == 1 {
		if de, ok := e.Rows[0][0].(decodeError); ok {
			return de.err
		}
	}
	return nil
}

// decode is the RowsEventDecodeFunc.
func (d *rowsDecoder) decode(e *replication.RowsEvent, data []byte) error {
	pos, err := e.DecodeHeader(data)
	if err != nil {
		return err
	}
	e.Rows = nil
	if err := d.decodeRows(e, data, pos); err != nil {
		e.Rows = [][]any{{decodeError{fmt.Errorf("mysql: table %s.%s: %w", e.Table.Schema, e.Table.Table, err)}}}
	}
	return nil
}

func (d *rowsDecoder) decodeRows(e *replication.RowsEvent, data []byte, pos int) (err error) {
	plan := d.plan(e.Table)
	if !plan.captured {
		return nil
	}
	if plan.deferred {
		e.Rows = [][]any{{deferredRows{data: slices.Clone(data), pos: pos}}}
		return nil
	}
	if plan.err != nil {
		return plan.err
	}
	rows, err := decodeWith(plan.dec, plan.binaryJSON, e, data, pos)
	if err != nil {
		return err
	}
	e.Rows = rows
	return nil
}

// decodeWith decodes the rows of an event with a decoder.
func decodeWith(dec *mysqlconv.RowDecoder, binaryJSON bool, e *replication.RowsEvent, data []byte, pos int) (_ [][]any, err error) {
	if rowsEventType(e) == replication.PARTIAL_UPDATE_ROWS_EVENT {
		return nil, fmt.Errorf("a partial JSON update (binlog_row_value_options=PARTIAL_JSON) carries no full row; set binlog_row_value_options='' on the server")
	}
	body := data[pos:]
	if rowsEventCompressed(e) {
		if body, err = gmysql.DecompressMariadbData(body); err != nil {
			return nil, fmt.Errorf("decompress rows event: %w", err)
		}
	}
	n := len(dec.Cols)
	update := e.ColumnBitmap2 != nil
	var block []connectors.Value
	next := func() []connectors.Value {
		if len(block) < n {
			block = make([]connectors.Value, n*min(32, 1+len(body)/max(n, 1)))
		}
		row := block[:n:n]
		block = block[n:]
		return row
	}
	rows := make([][]any, 0, 4)
	for len(body) > 0 {
		row := next()
		k, err := dec.Decode(body, e.ColumnBitmap1, row)
		if err != nil {
			return nil, err
		}
		body = body[k:]
		rows = append(rows, row)
		if update {
			row := next()
			k, err := dec.Decode(body, e.ColumnBitmap2, row)
			if err != nil {
				return nil, err
			}
			body = body[k:]
			rows = append(rows, row)
		}
	}
	if binaryJSON {
		// MySQL's binary JSON: let go-mysql decode the event too and take
		// its text of the json columns.
		if err := e.DecodeData(pos, data); err != nil {
			return nil, err
		}
		if len(e.Rows) != len(rows) {
			return nil, fmt.Errorf("go-mysql decoded %d rows, tapline %d", len(e.Rows), len(rows))
		}
		for i, row := range rows {
			for j, v := range row {
				if _, ok := v.(mysqlconv.BinaryJSON); ok {
					row[j] = jsonText(e.Rows[i][j])
				}
			}
		}
	}
	return rows, nil
}

// jsonText turns go-mysql's decoding of a json value into connectors.JSON.
func jsonText(v any) connectors.Value {
	switch x := v.(type) {
	case string:
		return connectors.JSON(x)
	case []byte:
		if len(x) == 0 {
			return connectors.JSON("null") // an empty document is JSON null (see json_binary.cc)
		}
		return connectors.JSON(slices.Clone(x))
	case nil:
		return nil
	}
	return connectors.JSON(fmt.Sprintf("%q", fmt.Sprint(v)))
}

func (d *rowsDecoder) plan(tm *replication.TableMapEvent) *decodePlan {
	if p, ok := d.plans[tm.TableID]; ok {
		if p.tm == tm {
			return p
		}
		if sameTableMap(p.tm, tm) {
			p.tm = tm
			return p
		}
	}
	p := &decodePlan{tm: tm, captured: d.filter.decodes(string(tm.Schema), string(tm.Table))}
	p.deferred = p.captured && d.history && d.filter.match(string(tm.Schema), string(tm.Table))
	if p.captured && !p.deferred {
		var hist []histColumn
		if len(tm.ColumnName) == 0 && d.filter.isSignal(string(tm.Schema), string(tm.Table)) {
			hist = signalColumns(tm) // binlog_row_metadata=MINIMAL
		}
		cols, err := binlogColumns(tm, d.charsets, hist)
		if err != nil {
			p.err = err
		} else {
			p.dec = &mysqlconv.RowDecoder{Cols: cols, Opts: d.opts}
			for _, c := range cols {
				if c.Kind == mysqlconv.KindJSON {
					p.binaryJSON = true
				}
			}
		}
	}
	if len(d.plans) > 10000 {
		clear(d.plans) // table ids of dropped tables; the live ones come back
	}
	d.plans[tm.TableID] = p
	return p
}

// binlogColumns describes a TABLE_MAP event's columns. It needs the
// metadata binlog_row_metadata=FULL writes: names, signedness, charsets,
// enum and set values, primary key.
//
// With hist (the schema history's columns of the table), names, enum and
// set values and the primary key come from hist instead; the TABLE_MAP's
// own names, if it has them, must agree.
func binlogColumns(tm *replication.TableMapEvent, cs *mysqlconv.Charsets, hist []histColumn) ([]mysqlconv.Column, error) {
	n := int(tm.ColumnCount)
	if hist != nil {
		if len(hist) != n {
			return nil, &DDLError{Statement: string(tm.Schema) + "." + string(tm.Table), Reason: fmt.Sprintf(
				"the TABLE_MAP event has %d columns, the schema history %d (a DDL statement was missed or misread)", n, len(hist))}
		}
		for i, name := range tm.ColumnName {
			if i < len(hist) && !strings.EqualFold(string(name), hist[i].Name) {
				return nil, &DDLError{Statement: string(tm.Schema) + "." + string(tm.Table), Reason: fmt.Sprintf(
					"column %d is %q in the TABLE_MAP event, %q in the schema history", i+1, name, hist[i].Name)}
			}
		}
		return histBinlogColumns(tm, cs, hist)
	}
	if len(tm.ColumnName) != n {
		return nil, &MetadataError{Table: string(tm.Schema) + "." + string(tm.Table)}
	}
	unsigned := tm.UnsignedMap()
	collations := tm.CollationMap()
	enumSetCollations := tm.EnumSetCollationMap()
	// Not tm.EnumStrValueMap and SetStrValueMap: they cache into the event,
	// and the parser's goroutine and the receiver both read it.
	enums := strValues(tm, tm.IsEnumColumn, tm.EnumStrValue)
	sets := strValues(tm, tm.IsSetColumn, tm.SetStrValue)
	geoms := tm.GeometryTypeMap()
	keys := map[int]int{}
	for i, k := range tm.PrimaryKey {
		keys[int(k)] = i + 1
	}
	cols := make([]mysqlconv.Column, n)
	for i := 0; i < n; i++ {
		_, nullable := tm.Nullable(i)
		bc := mysqlconv.BinlogColumn{
			Name:     string(tm.ColumnName[i]),
			Type:     tm.ColumnType[i],
			Meta:     tm.ColumnMeta[i],
			Unsigned: unsigned[i],
			Nullable: nullable,
			Key:      keys[i],
			Geometry: geoms[i],
		}
		if c, ok := collations[i]; ok {
			bc.Collation = c
		}
		if l, ok := enums[i]; ok {
			bc.Labels, bc.Collation = l, enumSetCollations[i]
		}
		if l, ok := sets[i]; ok {
			bc.Labels, bc.Collation = l, enumSetCollations[i]
		}
		if tm.IsEnumOrSetColumn(i) && bc.Labels == nil {
			return nil, &MetadataError{Table: string(tm.Schema) + "." + string(tm.Table)}
		}
		c, err := mysqlconv.ColumnFromBinlog(bc, cs)
		if err != nil {
			return nil, fmt.Errorf("table %s.%s: %w", tm.Schema, tm.Table, err)
		}
		if c.Kind == mysqlconv.KindGeometry && tm.IsCharacterColumn(i) {
			c.Charset = nil // MariaDB lists geometry among the character columns
		}
		cols[i] = c
	}
	return cols, nil
}

// strValues maps the enum (or set) columns to their values, in order.
func strValues(tm *replication.TableMapEvent, is func(int) bool, vals [][][]byte) map[int][]string {
	out := map[int][]string{}
	p := 0
	for i := 0; i < int(tm.ColumnCount) && p < len(vals); i++ {
		if !is(i) {
			continue
		}
		l := make([]string, len(vals[p]))
		for j, v := range vals[p] {
			l[j] = string(v)
		}
		out[i] = l
		p++
	}
	return out
}

// sameTableMap reports whether two TABLE_MAP events describe the same
// table version.
func sameTableMap(a, b *replication.TableMapEvent) bool {
	if a.TableID != b.TableID || a.ColumnCount != b.ColumnCount ||
		!bytes.Equal(a.Schema, b.Schema) || !bytes.Equal(a.Table, b.Table) ||
		!bytes.Equal(a.ColumnType, b.ColumnType) || !slices.Equal(a.ColumnMeta, b.ColumnMeta) ||
		!bytes.Equal(a.NullBitmap, b.NullBitmap) || !bytes.Equal(a.SignednessBitmap, b.SignednessBitmap) ||
		!slices.Equal(a.DefaultCharset, b.DefaultCharset) || !slices.Equal(a.ColumnCharset, b.ColumnCharset) ||
		!slices.Equal(a.EnumSetDefaultCharset, b.EnumSetDefaultCharset) || !slices.Equal(a.EnumSetColumnCharset, b.EnumSetColumnCharset) ||
		!slices.Equal(a.PrimaryKey, b.PrimaryKey) || !slices.Equal(a.GeometryType, b.GeometryType) ||
		len(a.ColumnName) != len(b.ColumnName) || len(a.EnumStrValue) != len(b.EnumStrValue) || len(a.SetStrValue) != len(b.SetStrValue) {
		return false
	}
	for i := range a.ColumnName {
		if !bytes.Equal(a.ColumnName[i], b.ColumnName[i]) {
			return false
		}
	}
	eq := func(x, y [][][]byte) bool {
		for i := range x {
			if len(x[i]) != len(y[i]) {
				return false
			}
			for j := range x[i] {
				if !bytes.Equal(x[i][j], y[i][j]) {
					return false
				}
			}
		}
		return true
	}
	return eq(a.EnumStrValue, b.EnumStrValue) && eq(a.SetStrValue, b.SetStrValue)
}

// histBinlogColumns describes a TABLE_MAP event's columns (types,
// signedness, charsets: binlog_row_metadata=MINIMAL) with the names, enum
// and set values and keys of the schema history.
func histBinlogColumns(tm *replication.TableMapEvent, cs *mysqlconv.Charsets, hist []histColumn) ([]mysqlconv.Column, error) {
	unsigned := tm.UnsignedMap()
	collations := tm.CollationMap()
	enumSetCollations := tm.EnumSetCollationMap()
	geoms := tm.GeometryTypeMap()
	cols := make([]mysqlconv.Column, len(hist))
	for i, hc := range hist {
		_, nullable := tm.Nullable(i)
		bc := mysqlconv.BinlogColumn{
			Name:     hc.Name,
			Type:     tm.ColumnType[i],
			Meta:     tm.ColumnMeta[i],
			Unsigned: unsigned[i],
			Nullable: nullable,
			Key:      hc.Key,
			Geometry: geoms[i],
		}
		if c, ok := collations[i]; ok {
			bc.Collation = c
		}
		if tm.IsEnumOrSetColumn(i) {
			if hc.Labels == nil {
				return nil, &DDLError{Statement: string(tm.Schema) + "." + string(tm.Table), Reason: fmt.Sprintf(
					"column %s is an enum or set in the TABLE_MAP event, the schema history has no values for it", hc.Name)}
			}
			bc.Labels, bc.Collation = hc.Labels, enumSetCollations[i]
		}
		c, err := mysqlconv.ColumnFromBinlog(bc, cs)
		if err != nil {
			return nil, fmt.Errorf("table %s.%s: %w", tm.Schema, tm.Table, err)
		}
		if c.Kind == mysqlconv.KindEnum || c.Kind == mysqlconv.KindSet {
			c.Labels = slices.Clone(hc.Labels) // already UTF-8
		}
		if c.Kind == mysqlconv.KindGeometry && tm.IsCharacterColumn(i) {
			c.Charset = nil
		}
		cols[i] = c
	}
	return cols, nil
}

// signalTableColumns is the signal table's layout, as the source creates
// it; on a server without column names in the binlog its columns are
// taken to be in this order.
var signalTableColumns = []string{"pipeline", "window_id", "kind", "signalled_at"}

// signalColumns gives the signal table's column names when the TABLE_MAP
// has none, or nil when it does not have the documented shape.
func signalColumns(tm *replication.TableMapEvent) []histColumn {
	if int(tm.ColumnCount) != len(signalTableColumns) {
		return nil
	}
	out := make([]histColumn, len(signalTableColumns))
	for i, n := range signalTableColumns {
		out[i] = histColumn{Name: n}
	}
	out[0].Key = 1
	return out
}
