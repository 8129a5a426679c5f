package offsets_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// A pipeline's writer takes the pipeline's lock, reads where to resume, and
// commits each batch's last position once the sink has made it durable.
func Example() {
	dataDir, err := os.MkdirTemp("", "tapline-data")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dataDir)
	ctx := context.Background()

	lock, err := offsets.Lock(dataDir, "orders")
	if err != nil {
		log.Fatal(err) // a *LockedError if the pipeline runs elsewhere
	}
	defer lock.Unlock()

	store, err := offsets.OpenSQLite(filepath.Join(dataDir, "offsets.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	pos, err := store.Get(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("resume from:", pos)

	last := connectors.TxPosition{Commit: 1200, Ordinal: 3}
	if err := store.Commit(ctx, "orders", last.Encode()); err != nil {
		log.Fatal(err)
	}

	// While the lock is held, nobody else can move the position.
	_, err = offsets.Lock(dataDir, "orders")
	var locked *offsets.LockedError
	fmt.Println("second writer refused:", errors.As(err, &locked))

	entries, err := store.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		tp, _ := connectors.DecodeTxPosition(e.Position)
		fmt.Println(e.Pipeline, tp)
	}
	// Output:
	// resume from: (none)
	// second writer refused: true
	// orders 1200:3
}
