// Package shop is the legacy application of the strangler example: the
// schema of a small shop in Postgres, a load generator that behaves like the
// monolith writing to it, and the canonical content checksums the demo
// compares its views with.
package shop

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresSchema creates the shop's tables; it is idempotent.
//
//go:embed postgres.sql
var PostgresSchema string

// Setup creates the shop's tables and the seed data (products, customers
// and their first orders) when the database has none.
func Setup(ctx context.Context, db *pgxpool.Pool, seed uint64) error {
	if _, err := db.Exec(ctx, PostgresSchema); err != nil {
		return fmt.Errorf("shop schema: %w", err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM products`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, 1))
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for i := 1; i <= 50; i++ {
			if _, err := tx.Exec(ctx, `INSERT INTO products (sku, name, price, description, attributes) VALUES ($1, $2, $3, $4, $5)`,
				fmt.Sprintf("SKU-%04d", i), fmt.Sprintf("Product %d", i), price(r), description(r),
				fmt.Sprintf(`{"color": %q, "weight_g": %d}`, colors[r.IntN(len(colors))], 100+r.IntN(5000))); err != nil {
				return err
			}
		}
		for i := 1; i <= 200; i++ {
			if _, err := tx.Exec(ctx, `INSERT INTO customers (email, name, phone, attributes) VALUES ($1, $2, $3, $4)`,
				fmt.Sprintf("seed%d@example.com", i), name(r), phone(r), `{"newsletter": true}`); err != nil {
				return err
			}
		}
		for i := 0; i < 100; i++ {
			if err := newOrder(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

var colors = []string{"red", "green", "blue", "black", "white", "ünïcödé"}

func price(r *rand.Rand) string {
	return fmt.Sprintf("%d.%02d", 1+r.IntN(500), r.IntN(100))
}

func name(r *rand.Rand) string {
	first := []string{"Ada", "Grace", "Edsger", "Barbara", "Ken", "Frances", "Leslie", "Zoë", "José"}
	last := []string{"Lovelace", "Hopper", "Dijkstra", "Liskov", "Thompson", "Allen", "Lamport", "O'Brien"}
	return first[r.IntN(len(first))] + " " + last[r.IntN(len(last))]
}

func phone(r *rand.Rand) any {
	if r.IntN(5) == 0 {
		return nil
	}
	return fmt.Sprintf("+44 20 %04d %04d", r.IntN(10000), r.IntN(10000))
}

// description is about 3 KB of text: with the column's EXTERNAL storage it
// lives in the TOAST table.
func description(r *rand.Rand) string {
	words := []string{"durable", "hand-made", "recycled", "steel", "oak", "waterproof", "compact", "quiet", "bright", "classic"}
	var b strings.Builder
	for b.Len() < 3000 {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
		fmt.Fprintf(&b, "%d ", r.IntN(1_000_000))
	}
	return b.String()
}

// Load is the legacy application at work: new customers and orders, status
// changes, cancellations and deletions, price changes that leave the long
// description alone (TOAST), a few large transactions, and a schema change
// partway through.
type Load struct {
	DB *pgxpool.Pool
	// Rate is the number of business transactions per second (default 50).
	Rate int
	// Workers run transactions concurrently (default 4).
	Workers int
	// SchemaChangeAfter is when the application's new release adds a
	// column (customers.loyalty_tier); 0 means never.
	SchemaChangeAfter time.Duration
	// BigTxEvery is how often a large transaction runs (a bulk repricing of
	// order lines); 0 means never.
	BigTxEvery time.Duration
	Seed       uint64

	schemaChanged atomic.Bool
	txs           atomic.Int64
	errs          atomic.Int64
}

// Stats counts what a Load did.
type Stats struct {
	Transactions int64
	// Errors are transactions that failed on a conflict and were dropped,
	// as a real application's would be (deadlocks, a row deleted
	// meanwhile); they changed nothing.
	Errors int64
}

// Run writes until ctx is done.
func (l *Load) Run(ctx context.Context) (Stats, error) {
	rate, workers := l.Rate, l.Workers
	if rate <= 0 {
		rate = 50
	}
	if workers <= 0 {
		workers = 4
	}
	start := time.Now()
	ticks := make(chan struct{}, workers)
	errc := make(chan error, workers+2)
	for w := range workers {
		go func() {
			r := rand.New(rand.NewPCG(l.Seed, uint64(w)+100))
			for range ticks {
				if err := l.one(ctx, r); err != nil && ctx.Err() == nil {
					var fatal fatalError
					if errors.As(err, &fatal) {
						errc <- err
						return
					}
					l.errs.Add(1)
				}
			}
			errc <- nil
		}()
	}
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	var lastBig time.Time = start
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			break loop
		case <-t.C:
		}
		if l.SchemaChangeAfter > 0 && !l.schemaChanged.Load() && time.Since(start) >= l.SchemaChangeAfter {
			if _, err = l.DB.Exec(ctx, `ALTER TABLE customers ADD COLUMN IF NOT EXISTS loyalty_tier text`); err != nil {
				break
			}
			l.schemaChanged.Store(true)
		}
		if l.BigTxEvery > 0 && time.Since(lastBig) >= l.BigTxEvery {
			lastBig = time.Now()
			if err = l.bigTx(ctx); err != nil && ctx.Err() == nil {
				break
			}
			err = nil
		}
		select {
		case ticks <- struct{}{}:
		default: // the database is slower than the rate: skip the tick
		}
	}
	close(ticks)
	for range workers {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = nil
	}
	return Stats{Transactions: l.txs.Load(), Errors: l.errs.Load()}, err
}

type fatalError struct{ error }

// one runs one business transaction.
func (l *Load) one(ctx context.Context, r *rand.Rand) error {
	err := pgx.BeginFunc(ctx, l.DB, func(tx pgx.Tx) error {
		switch p := r.IntN(100); {
		case p < 10: // a new customer
			_, err := tx.Exec(ctx, `INSERT INTO customers (email, name, phone, attributes) VALUES ($1, $2, $3, $4)`,
				fmt.Sprintf("c%d.%d@example.com", time.Now().UnixNano(), r.IntN(1000)), name(r), phone(r),
				fmt.Sprintf(`{"newsletter": %v, "source": "web"}`, r.IntN(2) == 0))
			return err
		case p < 45: // a new order with its lines
			return newOrder(ctx, tx, r)
		case p < 70: // an order moves on
			_, err := tx.Exec(ctx, `UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid'::order_status
			      WHEN 'paid' THEN 'shipped'::order_status ELSE status END
			    WHERE id = (SELECT id FROM orders WHERE status IN ('new', 'paid') ORDER BY random() LIMIT 1)`)
			return err
		case p < 78: // a customer edits their profile
			set := `phone = $1, updated_at = now()`
			if l.schemaChanged.Load() {
				set += `, loyalty_tier = (ARRAY['bronze','silver','gold'])[1 + floor(random()*3)::int]`
			}
			_, err := tx.Exec(ctx, `UPDATE customers SET `+set+`, attributes = attributes || jsonb_build_object('edits', coalesce((attributes->>'edits')::int, 0) + 1)
			    WHERE id = (SELECT id FROM customers ORDER BY random() LIMIT 1)`, phone(r))
			return err
		case p < 86: // a price change; the long description is left alone (TOAST)
			_, err := tx.Exec(ctx, `UPDATE products SET price = $1 WHERE id = $2`, price(r), 1+r.IntN(50))
			return err
		case p < 88: // a description rewrite
			_, err := tx.Exec(ctx, `UPDATE products SET description = $1 WHERE id = $2`, description(r), 1+r.IntN(50))
			return err
		case p < 94: // a cancellation
			_, err := tx.Exec(ctx, `UPDATE orders SET status = 'cancelled', note = 'cancelled by customer'
			    WHERE id = (SELECT id FROM orders WHERE status = 'new' ORDER BY random() LIMIT 1)`)
			return err
		default: // housekeeping deletes a cancelled order (its lines cascade)
			_, err := tx.Exec(ctx, `DELETE FROM orders WHERE id = (SELECT id FROM orders WHERE status = 'cancelled' ORDER BY id LIMIT 1)`)
			return err
		}
	})
	if err == nil {
		l.txs.Add(1)
	}
	return err
}

func newOrder(ctx context.Context, tx pgx.Tx, r *rand.Rand) error {
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO orders (customer_id, note)
	    SELECT id, $1 FROM customers ORDER BY random() LIMIT 1 RETURNING id`, note(r)).Scan(&id)
	if err != nil {
		return err
	}
	return addLines(ctx, tx, r, id)
}

func addLines(ctx context.Context, tx pgx.Tx, r *rand.Rand, id int64) error {
	lines := 1 + r.IntN(5)
	for i := 1; i <= lines; i++ {
		if _, err := tx.Exec(ctx, `INSERT INTO order_lines (order_id, line_no, product_id, qty, unit_price)
		    SELECT $1, $2, id, $3, price FROM products WHERE id = $4`, id, i, 1+r.IntN(3), 1+r.IntN(50)); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `UPDATE orders SET total = (SELECT coalesce(sum(qty * unit_price), 0) FROM order_lines WHERE order_id = $1) WHERE id = $1`, id)
	return err
}

func note(r *rand.Rand) any {
	if r.IntN(3) == 0 {
		return nil
	}
	return []string{"gift wrap", "leave at the door", "call first", "🎁 birthday"}[r.IntN(4)]
}

// bigTx reprices every line of recent orders in one transaction: thousands
// of row changes that arrive as one upstream transaction.
func (l *Load) bigTx(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, l.DB, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE order_lines SET unit_price = round(unit_price * 1.01, 2)
		    WHERE order_id IN (SELECT id FROM orders ORDER BY id DESC LIMIT 2000)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE orders o SET total = (SELECT coalesce(sum(qty * unit_price), 0) FROM order_lines WHERE order_id = o.id)
		    WHERE id IN (SELECT id FROM orders ORDER BY id DESC LIMIT 2000)`)
		return err
	})
	if err == nil {
		l.txs.Add(1)
	}
	return err
}

// PlaceOrder is what the new service does when a customer orders: it writes
// through the legacy database (the system of record until the writes move)
// and returns the new order's id and the WAL position of a heartbeat written
// after the commit, for read-your-writes.
func PlaceOrder(ctx context.Context, db *pgxpool.Pool, customerID int64, seed uint64) (id int64, lsn string, err error) {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return 0, "", err
	}
	defer conn.Release()
	r := rand.New(rand.NewPCG(seed, 7))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO orders (customer_id, note) VALUES ($1, 'placed by the new service') RETURNING id`, customerID).Scan(&id); err != nil {
			return err
		}
		return addLines(ctx, tx, r, id)
	})
	if err != nil {
		return 0, "", err
	}
	// Right after the commit, a heartbeat message: the tapline source passes
	// it on once every transaction committed before it (this order's) is
	// emitted, and the view that has applied it has applied the order. Its
	// LSN is the position to wait for.
	err = conn.QueryRow(ctx, `SELECT pg_logical_emit_message(false, 'tapline_heartbeat', '')::text`).Scan(&lsn)
	return id, lsn, err
}
