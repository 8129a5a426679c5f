// Package eventjson encodes and decodes tapline events as JSON, in the
// envelope Debezium's consumers read (Flink's debezium-json format,
// Materialize, ksqlDB, ClickHouse). It does no I/O.
//
// An event is one JSON object with its keys in this order:
//
//	{"op":"u",
//	 "before":{"id":42,"status":"new"},
//	 "after":{"id":42,"status":"paid","amount":"19.90"},
//	 "source":{"connector":"postgres","name":"legacy","db":"shop","schema":"public","table":"orders",
//	           "position":"0/16B3748:3","txId":771,"ts_ms":1763800000000,"snapshot":false,"lsn":"0/16B3748"},
//	 "transaction":{"id":"771","total_order":3},
//	 "ts_ms":1763800000123,
//	 "unchanged":["description"],
//	 "schema":{"table":"public.orders","version":2,"columns":[
//	           {"name":"id","type":"int64","native":"int8","key":1},
//	           {"name":"amount","type":"decimal","native":"numeric(10,2)","nullable":true}]},
//	 "destination":"orders-v2"}
//
// The fields:
//
//   - before and after are null when the image is absent (inserts have no
//     before, deletes no after, truncates neither).
//   - source describes the origin (connectors.SourceInfo): its schema and
//     table never change, and its Extra fields follow the standard ones in
//     order. name is left out when empty.
//   - transaction is left out when the event has no transaction id.
//   - unchanged lists the columns whose value is connectors.Unchanged (an
//     unchanged TOASTed value in Postgres). They are left out of the images
//     and listed here; sinks keep what they have stored. It is left out when
//     there are none.
//   - schema is the event's table version. Its table is the logical one
//     (connectors.Event.Table, which transforms may have renamed) as
//     "schema.name", or "name" without a schema, or ".name" when such a name
//     holds a dot. Its columns carry the portable type, the origin's native
//     type, nullability, the key position and the element type of arrays
//     (keys left out when empty, false or 0). Options.OmitSchema leaves the
//     block out.
//   - destination is left out when empty.
//
// Column values map to JSON without loss: nil is null; bool, int64 and
// uint64 are JSON literals, exactly; a float64 is the shortest number that
// parses back to it, and NaN, +Inf and -Inf are the strings "NaN",
// "Infinity" and "-Infinity"; a string is escaped as JSON requires (invalid
// UTF-8 becomes U+FFFD; <, > and & stay as they are); []byte is standard
// base64; a connectors.JSON document is embedded as it is (line breaks, which
// valid JSON holds only between tokens, become spaces so that an event is
// one line); []Value is an array.
//
// The message key of an event is its primary key as an object of the key
// columns in key order, {"id":42}: see AppendKey.
//
// # Decoding
//
// Decoding uses the schema block's column types to give every value its Go
// type back: integer types decode to int64 (a uint64 column to uint64 above
// math.MaxInt64), floats to float64 (including the three strings), bytes
// from base64, json to connectors.JSON holding the value's bytes, arrays to
// []Value by the column's element type, and every other type to string. A
// column listed in unchanged and absent from an image is Unchanged there;
// any other column absent from a present image is nil. Integer columns
// accept whole numbers in any notation (42, 4.2e1) and numbers written as
// strings; text columns accept numbers and booleans, keeping their text.
// Connectors.JSON holding the document null cannot be told from SQL NULL:
// both are null.
//
// An event without a schema block (Options.OmitSchema, or another
// producer's) still decodes. Its schema, version 0 with no key and every
// column nullable, lists the columns of before, then the new ones of
// after, then the unchanged ones, typed by the values they hold: whole
// numbers that fit become int64 (uint64 above math.MaxInt64), other
// numbers float64 when a float64 holds them exactly and decimal text when
// it does not, strings text, booleans bool, objects and arrays json, and a
// column whose values are of different kinds json. Inferred schemas are
// shared like decoded ones. Inference loses what only the schema knew:
// bytes come back as their base64 text, integral floats as int64.
//
// Unknown fields are ignored, and the Kafka Connect JSON converter's
// {"schema":...,"payload":...} wrapper is unwrapped, so Debezium's own
// output decodes. Malformed input is a *DecodeError naming the field and
// the byte offset.
//
// # Performance
//
// The encoder appends to a caller's buffer without reflection and, with an
// Encoder that remembers each schema's encoded block, without allocating.
// The decoder scans the input twice (once to find the top-level fields and
// validate them, once to decode the images by the schema, which comes last)
// and allocates the event's row slices and values only.
package eventjson
