// Package newservice is the "new service" of the strangler example: it
// answers reads from its own view (SQLite, kept up to date by tapline from
// the legacy database's changes) instead of the legacy database, and still
// writes through the legacy database, waiting for its view to have applied
// its own write before it answers (read-your-writes).
package newservice

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tapline/tapline/examples/strangler/shop"
)

// Service is the new service.
type Service struct {
	// Legacy is the legacy database, still the system of record for writes.
	Legacy *pgxpool.Pool
	// View is the service's SQLite view (table orders_by_customer).
	View *sql.DB
	// Tapline is the daemon's --http address, for read-your-writes.
	Tapline string
	// Pipeline is the pipeline that maintains View.
	Pipeline string
}

// Order is an order as the new service shows it.
type Order struct {
	ID         int64  `json:"id"`
	CustomerID int64  `json:"customer_id"`
	Status     string `json:"status"`
	Total      string `json:"total"`
}

// Placed is the answer to an order placed through the service.
type Placed struct {
	Order    Order   `json:"order"`
	Position string  `json:"position"` // the legacy commit's WAL position
	WriteMs  float64 `json:"write_ms"` // the write to the legacy database
	WaitMs   float64 `json:"wait_ms"`  // until the view had applied it
}

// Handler serves:
//
//	GET  /customers/{id}/orders   the customer's orders, from the view
//	POST /customers/{id}/orders   place an order (legacy write), answer from the view
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /customers/{id}/orders", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			http.Error(w, "customer id must be a number", http.StatusBadRequest)
			return
		}
		orders, err := s.Orders(r.Context(), id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, orders)
	})
	mux.HandleFunc("POST /customers/{id}/orders", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			http.Error(w, "customer id must be a number", http.StatusBadRequest)
			return
		}
		p, err := s.Place(r.Context(), id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		writeJSON(w, p)
	})
	return mux
}

// Orders reads a customer's orders from the view.
func (s *Service) Orders(ctx context.Context, customer int64) ([]Order, error) {
	rows, err := s.View.QueryContext(ctx, `SELECT id, customer_id, status, total FROM orders_by_customer WHERE customer_id = ? ORDER BY id`, customer)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Order
	for rows.Next() {
		var o Order
		var total any
		if err := rows.Scan(&o.ID, &o.CustomerID, &o.Status, &total); err != nil {
			return nil, err
		}
		o.Total = fmt.Sprint(total)
		out = append(out, o)
	}
	return out, rows.Err()
}

// Place writes an order through the legacy database, waits until the view
// has applied that write, and reads the order back from the view.
func (s *Service) Place(ctx context.Context, customer int64) (Placed, error) {
	start := time.Now()
	id, lsn, err := shop.PlaceOrder(ctx, s.Legacy, customer, uint64(start.UnixNano()))
	if err != nil {
		return Placed{}, fmt.Errorf("legacy write: %w", err)
	}
	wrote := time.Now()
	if err := s.wait(ctx, lsn); err != nil {
		return Placed{}, err
	}
	waited := time.Now()
	p := Placed{Position: lsn, WriteMs: ms(wrote.Sub(start)), WaitMs: ms(waited.Sub(wrote))}
	var total any
	err = s.View.QueryRowContext(ctx, `SELECT id, customer_id, status, total FROM orders_by_customer WHERE id = ?`, id).
		Scan(&p.Order.ID, &p.Order.CustomerID, &p.Order.Status, &total)
	if err != nil {
		return p, fmt.Errorf("order %d is not in the view after waiting for %s: %w", id, lsn, err)
	}
	p.Order.Total = fmt.Sprint(total)
	return p, nil
}

// wait asks the tapline daemon to wait until the view has applied lsn.
func (s *Service) wait(ctx context.Context, lsn string) error {
	u := fmt.Sprintf("http://%s/v1/pipelines/%s/wait?position=%s&timeout=10s", s.Tapline, url.PathEscape(s.Pipeline), url.QueryEscape(lsn))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("read-your-writes wait: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("read-your-writes wait for %s: %s: %s", lsn, resp.Status, b)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
