package shop_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tapline/tapline/examples/strangler/shop"
	"github.com/tapline/tapline/internal/servicetest"
)

// The load generator must behave like a consistent application: every
// order's total equals the sum of its lines, the schema change happens, and
// the large transaction and deletes run.
func TestLoadKeepsTheShopConsistent(t *testing.T) {
	dsn := servicetest.PostgresDatabase(t, servicetest.Name(t, "shop"))
	ctx := context.Background()
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := shop.Setup(ctx, db, 1); err != nil {
		t.Fatal(err)
	}
	if err := shop.Setup(ctx, db, 1); err != nil { // idempotent
		t.Fatalf("second setup: %v", err)
	}
	l := &shop.Load{DB: db, Rate: 200, SchemaChangeAfter: time.Second, BigTxEvery: 1500 * time.Millisecond, Seed: 1}
	runCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := l.Run(runCtx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if st.Transactions < 50 {
		t.Errorf("only %d transactions in 3s at 200/s", st.Transactions)
	}
	var bad, orders, deleted int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM orders o WHERE total <> (SELECT coalesce(sum(qty*unit_price),0) FROM order_lines WHERE order_id = o.id)`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("%d orders whose total is not the sum of their lines", bad)
	}
	if err := db.QueryRow(ctx, `SELECT count(*), coalesce(max(id),0) - count(*) FROM orders`).Scan(&orders, &deleted); err != nil {
		t.Fatal(err)
	}
	if orders == 0 {
		t.Error("no orders")
	}
	var hasTier bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'loyalty_tier')`).Scan(&hasTier); err != nil || !hasTier {
		t.Errorf("the schema change did not happen: %v", err)
	}
	id, lsn, err := shop.PlaceOrder(ctx, db, 1, 9)
	if err != nil || id == 0 || lsn == "" {
		t.Fatalf("PlaceOrder: %d %q %v", id, lsn, err)
	}
	t.Logf("%d transactions, %d errors, %d orders (%d ids gone), order %d at %s", st.Transactions, st.Errors, orders, deleted, id, lsn)
}
