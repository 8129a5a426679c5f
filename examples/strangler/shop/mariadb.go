package shop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"
)

// MariaDBSchema is the other half of the legacy shop: the same business in
// MariaDB, as a second legacy application would have it (an older branch
// office system, say): customers and orders with DECIMAL money, an ENUM
// status, JSON attributes and DATETIME(6) timestamps.
var MariaDBSchema = []string{
	`CREATE TABLE IF NOT EXISTS customers (
	  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
	  email      VARCHAR(200) NOT NULL UNIQUE,
	  name       VARCHAR(200) NOT NULL,
	  phone      VARCHAR(50) NULL,
	  attributes JSON NOT NULL,
	  created_at DATETIME(6) NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS orders (
	  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
	  customer_id BIGINT UNSIGNED NOT NULL,
	  status      ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
	  total       DECIMAL(14,2) NOT NULL,
	  placed_at   DATETIME(6) NOT NULL,
	  note        TEXT NULL,
	  KEY (customer_id)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
}

// MariaDBSetup creates the tables and seed customers and orders.
func MariaDBSetup(ctx context.Context, db *sql.DB, seed uint64) error {
	for _, q := range MariaDBSchema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("mariadb shop schema: %w", err)
		}
	}
	r := rand.New(rand.NewPCG(seed, 2))
	for i := 1; i <= 100; i++ {
		if _, err := db.ExecContext(ctx, `INSERT INTO customers (email, name, phone, attributes, created_at) VALUES (?, ?, ?, ?, NOW(6))`,
			fmt.Sprintf("branch%d@example.com", i), name(r), phone(r), `{"newsletter": false}`); err != nil {
			return err
		}
	}
	for i := 0; i < 100; i++ {
		if err := mariaOrder(ctx, db, r); err != nil {
			return err
		}
	}
	return nil
}

func mariaOrder(ctx context.Context, db *sql.DB, r *rand.Rand) error {
	_, err := db.ExecContext(ctx, `INSERT INTO orders (customer_id, total, placed_at, note) VALUES (?, ?, NOW(6), ?)`,
		1+r.IntN(100), price(r), note(r))
	return err
}

// MariaDBLoad is the MariaDB application at work: new customers and
// orders, status changes, price corrections, cancellations and deletions,
// some of them several statements in one transaction.
type MariaDBLoad struct {
	DB   *sql.DB
	Rate int // transactions per second (default 20)
	Seed uint64

	txs atomic.Int64
}

// Run writes until ctx is done and returns the transactions committed.
func (l *MariaDBLoad) Run(ctx context.Context) (int64, error) {
	rate := l.Rate
	if rate <= 0 {
		rate = 20
	}
	r := rand.New(rand.NewPCG(l.Seed, 3))
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return l.txs.Load(), nil
		case <-t.C:
		}
		if err := l.one(ctx, r); err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "context canceled") {
				return l.txs.Load(), nil
			}
			return l.txs.Load(), fmt.Errorf("mariadb load: %w", err)
		}
		l.txs.Add(1)
	}
}

func (l *MariaDBLoad) one(ctx context.Context, r *rand.Rand) error {
	tx, err := l.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	switch p := r.IntN(100); {
	case p < 10:
		_, err = tx.ExecContext(ctx, `INSERT INTO customers (email, name, phone, attributes, created_at) VALUES (?, ?, ?, ?, NOW(6))`,
			fmt.Sprintf("b%d.%d@example.com", time.Now().UnixNano(), r.IntN(1000)), name(r), phone(r), `{"source": "branch"}`)
	case p < 50:
		for i := 0; i < 1+r.IntN(3) && err == nil; i++ {
			_, err = tx.ExecContext(ctx, `INSERT INTO orders (customer_id, total, placed_at, note) SELECT id, ?, NOW(6), ? FROM customers ORDER BY RAND() LIMIT 1`,
				price(r), note(r))
		}
	case p < 75:
		_, err = tx.ExecContext(ctx, `UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid' WHEN 'paid' THEN 'shipped' ELSE status END
		    WHERE status IN ('new', 'paid') ORDER BY RAND() LIMIT 1`)
	case p < 85:
		_, err = tx.ExecContext(ctx, `UPDATE orders SET total = total + 1.05 WHERE status = 'new' ORDER BY RAND() LIMIT 3`)
	case p < 93:
		_, err = tx.ExecContext(ctx, `UPDATE orders SET status = 'cancelled', note = 'cancelled at the branch' WHERE status = 'new' ORDER BY RAND() LIMIT 1`)
	default:
		_, err = tx.ExecContext(ctx, `DELETE FROM orders WHERE status = 'cancelled' ORDER BY id LIMIT 1`)
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}
