-- The legacy shop, as a monolith of ten years would have it. Loaded by the
-- demo (and by hand: psql -d shop -f postgres.sql); idempotent.
DO $$ BEGIN
  CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE IF NOT EXISTS customers (
  id          bigserial PRIMARY KEY,
  email       text NOT NULL UNIQUE,
  name        text NOT NULL,
  phone       text,
  attributes  jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
  id          serial PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  name        text NOT NULL,
  price       numeric(12,2) NOT NULL,
  description text NOT NULL,            -- long: stored out of line (TOAST)
  attributes  jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS orders (
  id          bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  status      order_status NOT NULL DEFAULT 'new',
  total       numeric(14,2) NOT NULL DEFAULT 0,
  placed_at   timestamptz NOT NULL DEFAULT now(),
  note        text
);
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id);

CREATE TABLE IF NOT EXISTS order_lines (
  order_id    bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  line_no     int NOT NULL,
  product_id  int NOT NULL REFERENCES products(id),
  qty         int NOT NULL,
  unit_price  numeric(12,2) NOT NULL,
  PRIMARY KEY (order_id, line_no)
);

-- Keep descriptions out of line even when short, so every product update
-- that leaves the description alone exercises TOAST's unchanged marker.
ALTER TABLE products ALTER COLUMN description SET STORAGE EXTERNAL;
