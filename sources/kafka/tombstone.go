package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
)

// Record headers read from tombstones. They are the Kafka sink's header
// names (sinks/kafka HeaderTable etc.), repeated here because a source
// imports nothing of another connector.
const (
	headerTable     = "table"     // the logical table, schema.name
	headerConnector = "connector" // optional: the origin connector
	headerDB        = "db"        // optional: the origin database
)

// maxTombstoneSchemas bounds the cache of key-only schemas.
const maxTombstoneSchemas = 1024

// tombstone turns a tombstone (a record with a key and no value) into a
// delete event with a key-only schema. It reports false, with no error,
// for a tombstone it cannot place: one without a table header (Debezium
// writes none) or without a key.
func (s *Source) tombstone(r *kgo.Record) (connectors.Event, bool, error) {
	var table, conn, db string
	for _, h := range r.Headers {
		switch h.Key {
		case headerTable:
			table = string(h.Value)
		case headerConnector:
			conn = string(h.Value)
		case headerDB:
			db = string(h.Value)
		}
	}
	if table == "" || len(r.Key) == 0 {
		s.log.Debug("kafka: tombstone without a key or a table header skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		return connectors.Event{}, false, nil
	}
	names, types, vals, err := parseKey(r.Key)
	if err != nil {
		return connectors.Event{}, false, fmt.Errorf("kafka: %s/%d at offset %d: tombstone of %s: the key is not a JSON object of key columns: %w", r.Topic, r.Partition, r.Offset, table, err)
	}
	if len(names) == 0 {
		s.log.Debug("kafka: tombstone with an empty key skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "table", table)
		return connectors.Event{}, false, nil
	}
	id := connectors.ParseTableID(table)
	sch, err := s.keySchema(id, names, types)
	if err != nil {
		return connectors.Event{}, false, fmt.Errorf("kafka: %s/%d at offset %d: tombstone of %s: %w", r.Topic, r.Partition, r.Offset, table, err)
	}
	ev := connectors.Event{
		Op:     connectors.OpDelete,
		Schema: sch,
		Before: vals,
		Source: connectors.SourceInfo{Connector: conn, DB: db, Schema: id.Schema, Table: id.Name},
	}
	if !r.Timestamp.IsZero() {
		ev.TsMs = r.Timestamp.UnixMilli()
	}
	return ev, true, nil
}

// keySchema returns the key-only schema of table id with the named key
// columns of the given types, shared between tombstones of one shape.
func (s *Source) keySchema(id connectors.TableID, names []string, types []connectors.Type) (*connectors.Schema, error) {
	var k strings.Builder
	k.WriteString(id.Schema)
	k.WriteByte(0)
	k.WriteString(id.Name)
	for i := range names {
		k.WriteByte(0)
		k.WriteString(names[i])
		k.WriteByte(0)
		k.WriteString(string(types[i]))
	}
	if sch, ok := s.keySchemas[k.String()]; ok {
		return sch, nil
	}
	cols := make([]connectors.Column, len(names))
	for i := range names {
		cols[i] = connectors.Column{Name: names[i], Type: types[i], Key: i + 1}
	}
	sch, err := connectors.NewSchema(id, connectors.KeyOnlyVersion, cols)
	if err != nil {
		return nil, err
	}
	if s.keySchemas == nil || len(s.keySchemas) >= maxTombstoneSchemas {
		s.keySchemas = map[string]*connectors.Schema{}
	}
	s.keySchemas[k.String()] = sch
	return sch, nil
}

// parseKey parses a record key in the event JSON key form ({"id":42},
// fields in key order) into column names, types and values: integers are
// int64 (uint64 past its range), other numbers decimals carried as their
// text, strings strings, booleans bools, objects and arrays JSON. A null
// key column is an error.
func parseKey(key []byte) (names []string, types []connectors.Type, vals []connectors.Value, err error) {
	dec := json.NewDecoder(bytes.NewReader(key))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, nil, errors.New("not an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, nil, err
		}
		name, _ := tok.(string)
		if name == "" {
			return nil, nil, nil, errors.New("a key column has an empty name")
		}
		if seen[name] {
			return nil, nil, nil, fmt.Errorf("key column %q appears twice", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, nil, fmt.Errorf("key column %q: %w", name, err)
		}
		t, v, err := keyValue(raw)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("key column %q: %w", name, err)
		}
		names, types, vals = append(names, name), append(types, t), append(vals, v)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, nil, errors.New("data after the key object")
	}
	return names, types, vals, nil
}

// keyValue types one key column's JSON value.
func keyValue(raw json.RawMessage) (connectors.Type, connectors.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", nil, errors.New("no value")
	}
	switch c := raw[0]; {
	case c == 'n':
		return "", nil, errors.New("a key column is null")
	case c == 't' || c == 'f':
		return connectors.TypeBool, c == 't', nil
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, err
		}
		return connectors.TypeString, s, nil
	case c == '{' || c == '[':
		return connectors.TypeJSON, connectors.JSON(bytes.Clone(raw)), nil
	}
	text := string(raw)
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return connectors.TypeInt64, n, nil
	}
	if n, err := strconv.ParseUint(text, 10, 64); err == nil {
		return connectors.TypeUint64, n, nil
	}
	if _, err := strconv.ParseFloat(text, 64); err != nil && !errors.Is(err, strconv.ErrRange) {
		return "", nil, fmt.Errorf("bad number %s", text)
	}
	return connectors.TypeDecimal, text, nil
}
