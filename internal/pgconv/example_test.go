package pgconv_test

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tapline/tapline/internal/pgconv"
)

func ExampleNewColumn() {
	// A Relation message says: column "paid_at", timestamptz(3); column
	// "tags", text[]; column "total", numeric(10,2).
	paid := pgconv.NewColumn("paid_at", pgtype.TimestamptzOID, 3, nil)
	tags := pgconv.NewColumn("tags", pgtype.TextArrayOID, -1, nil)
	total := pgconv.NewColumn("total", pgtype.NumericOID, (10<<16|2)+4, nil)
	for _, c := range []pgconv.Column{paid, tags, total} {
		fmt.Printf("%s: %s (%s) → %s\n", c.Name, c.Type, c.Native, pgconv.DDLType(c.Column))
	}

	// Its values arrive in text form, as the types' output functions
	// print them in the session's TimeZone.
	v, _ := paid.Decode([]byte("2025-11-22 10:11:12.5+05:45"))
	fmt.Printf("%q\n", v)
	v, _ = tags.Decode([]byte(`{new,"on hold",NULL}`))
	fmt.Printf("%q\n", v)
	v, _ = total.Decode([]byte("19.90"))
	fmt.Printf("%q\n", v)
	// Output:
	// paid_at: timestamptz (timestamp(3) with time zone) → timestamp(3) with time zone
	// tags: array (text[]) → text[]
	// total: decimal (numeric(10,2)) → numeric(10,2)
	// "2025-11-22T04:26:12.5Z"
	// ["new" "on hold" <nil>]
	// "19.90"
}
