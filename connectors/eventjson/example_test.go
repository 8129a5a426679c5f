package eventjson_test

import (
	"fmt"
	"log"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

// An update encodes as the Debezium envelope; its key is the primary key.
// Decoding gives the values back with their types.
func Example() {
	schema := connectors.MustSchema(connectors.TableID{Schema: "public", Name: "orders"}, 2, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "int8", Key: 1},
		{Name: "status", Type: connectors.TypeString, Native: "text"},
		{Name: "amount", Type: connectors.TypeDecimal, Native: "numeric(10,2)", Nullable: true},
	})
	ev := connectors.Event{
		Op:     connectors.OpUpdate,
		Schema: schema,
		Before: []connectors.Value{int64(42), "new", nil},
		After:  []connectors.Value{int64(42), "paid", "19.90"},
		Source: connectors.SourceInfo{Connector: "postgres", DB: "shop", Schema: "public", Table: "orders",
			Position: "0/16B3748:3", TxID: 771, TsMs: 1763800000000},
		Tx:   connectors.TxInfo{ID: "771", TotalOrder: 3},
		TsMs: 1763800000123,
	}

	enc := eventjson.NewEncoder(eventjson.Options{OmitSchema: true})
	line, err := enc.AppendEvent(nil, &ev)
	if err != nil {
		log.Fatal(err)
	}
	key, _, err := eventjson.AppendKey(nil, &ev)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n%s\n", key, line)

	full, err := eventjson.Marshal(&ev)
	if err != nil {
		log.Fatal(err)
	}
	back, err := eventjson.NewDecoder().Decode(full)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s %#v\n", back.Op, back.Table(), back.After)
	// Output:
	// {"id":42}
	// {"op":"u","before":{"id":42,"status":"new","amount":null},"after":{"id":42,"status":"paid","amount":"19.90"},"source":{"connector":"postgres","db":"shop","schema":"public","table":"orders","position":"0/16B3748:3","txId":771,"ts_ms":1763800000000,"snapshot":false},"transaction":{"id":"771","total_order":3},"ts_ms":1763800000123}
	// u public.orders []interface {}{42, "paid", "19.90"}
}
