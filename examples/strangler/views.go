package strangler

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tapline/tapline/examples/strangler/shop"
)

// check compares one view with its source in the legacy database.
type check struct {
	name   string
	cols   []shop.Column
	source func(ctx context.Context) ([][]any, error)
	view   func(ctx context.Context) ([][]any, error)
}

func (c check) compare(ctx context.Context) (ViewResult, error) {
	res := ViewResult{Name: c.name}
	src, err := c.source(ctx)
	if err != nil {
		return res, fmt.Errorf("read the source: %w", err)
	}
	view, err := c.view(ctx)
	if err != nil {
		return res, fmt.Errorf("read the view: %w", err)
	}
	a, err := shop.Canon(src, c.cols)
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	b, err := shop.Canon(view, c.cols)
	if err != nil {
		return res, fmt.Errorf("view: %w", err)
	}
	res.Source, res.View = shop.Sum(a), shop.Sum(b)
	if res.Source != res.View {
		res.Diff = diff(a, b, 5)
	}
	return res, nil
}

// diff lists up to n lines only in a (source) or only in b (view).
func diff(a, b []string, n int) []string {
	in := map[string]int{}
	for _, l := range b {
		in[l]++
	}
	var out []string
	for _, l := range a {
		if in[l] > 0 {
			in[l]--
			continue
		}
		if len(out) < n {
			out = append(out, "source only: "+strings.ReplaceAll(l, "\x1f", " | "))
		}
	}
	for l, k := range in {
		for ; k > 0 && len(out) < 2*n; k-- {
			out = append(out, "view only:   "+strings.ReplaceAll(l, "\x1f", " | "))
		}
	}
	return out
}

func pgRows(db *pgxpool.Pool, q string) func(context.Context) ([][]any, error) {
	return func(ctx context.Context) ([][]any, error) {
		rows, err := db.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out [][]any
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, rows.Err()
	}
}

func sqlRows(db *sql.DB, q string) func(context.Context) ([][]any, error) {
	return func(ctx context.Context) ([][]any, error) {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			return nil, err
		}
		var out [][]any
		for rows.Next() {
			v := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range v {
				ptrs[i] = &v[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, rows.Err()
	}
}

// redisCustomers reads every customer hash of the cache.
func redisCustomers(rdb *redis.Client, prefix string, fields []string) func(context.Context) ([][]any, error) {
	return func(ctx context.Context) ([][]any, error) {
		iter := rdb.Scan(ctx, 0, prefix+"customer:*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return nil, err
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.HGetAll(ctx, k)
		}
		if len(keys) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, err
			}
		}
		out := make([][]any, 0, len(keys))
		for _, c := range cmds {
			h := c.Val()
			row := make([]any, len(fields))
			for i, f := range fields {
				if v, ok := h[f]; ok {
					row[i] = v
				}
			}
			out = append(out, row)
		}
		return out, nil
	}
}

// viewChecks are the example's three views, each against its source.
func viewChecks(legacy *pgxpool.Pool, views *sql.DB, rdb *redis.Client, reporting *pgxpool.Pool, cachePrefix string) []check {
	orderCols := []shop.Column{{Name: "id", Kind: shop.Int}, {Name: "customer_id", Kind: shop.Int}, {Name: "status"},
		{Name: "total", Kind: shop.Decimal, Scale: 2}, {Name: "placed_at", Kind: shop.Time}}
	customerCols := []shop.Column{{Name: "id", Kind: shop.Int}, {Name: "email"}, {Name: "name"}, {Name: "phone"},
		{Name: "attributes", Kind: shop.JSON}, {Name: "created_at", Kind: shop.Time}, {Name: "updated_at", Kind: shop.Time}, {Name: "loyalty_tier"}}
	customerFields := make([]string, len(customerCols))
	for i, c := range customerCols {
		customerFields[i] = c.Name
	}
	reportCols := append(append([]shop.Column(nil), orderCols...), shop.Column{Name: "note"})
	lineCols := []shop.Column{{Name: "order_id", Kind: shop.Int}, {Name: "line_no", Kind: shop.Int}, {Name: "product_id", Kind: shop.Int},
		{Name: "qty", Kind: shop.Int}, {Name: "unit_price", Kind: shop.Decimal, Scale: 2}}
	return []check{
		{
			name:   "orders_by_customer (SQLite)",
			cols:   orderCols,
			source: pgRows(legacy, `SELECT id, customer_id, status::text, total::text, placed_at FROM orders`),
			view:   sqlRows(views, `SELECT id, customer_id, status, total, placed_at FROM orders_by_customer`),
		},
		{
			name: "customer cache (Redis)",
			cols: customerCols,
			source: func(ctx context.Context) ([][]any, error) {
				tier := "NULL::text"
				var has bool
				legacy.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'loyalty_tier')`).Scan(&has)
				if has {
					tier = "loyalty_tier"
				}
				return pgRows(legacy, `SELECT id, email, name, phone, attributes::text, created_at, updated_at, `+tier+` FROM customers`)(ctx)
			},
			view: redisCustomers(rdb, cachePrefix, customerFields),
		},
		{
			name:   "reporting.orders (Postgres)",
			cols:   reportCols,
			source: pgRows(legacy, `SELECT id, customer_id, status::text, total::text, placed_at, note FROM orders`),
			view:   pgRows(reporting, `SELECT id, customer_id, status::text, total::text, placed_at, note FROM reporting.orders`),
		},
		{
			name:   "reporting.order_lines (Postgres)",
			cols:   lineCols,
			source: pgRows(legacy, `SELECT order_id, line_no, product_id, qty, unit_price::text FROM order_lines`),
			view:   pgRows(reporting, `SELECT order_id, line_no, product_id, qty, unit_price::text FROM reporting.order_lines`),
		},
	}
}

// branchCheck compares the MariaDB branch's orders with their SQLite view.
func branchCheck(branch, views *sql.DB) check {
	cols := []shop.Column{{Name: "id", Kind: shop.Int}, {Name: "customer_id", Kind: shop.Int}, {Name: "status"},
		{Name: "total", Kind: shop.Decimal, Scale: 2}, {Name: "placed_at", Kind: shop.Time}, {Name: "note"}}
	return check{
		name:   "branch_orders (MariaDB to SQLite)",
		cols:   cols,
		source: sqlRows(branch, `SELECT id, customer_id, status, total, placed_at, note FROM orders`),
		view:   sqlRows(views, `SELECT id, customer_id, status, total, placed_at, note FROM branch_orders`),
	}
}
