# tapline: make targets. `make test` is the one command CI runs.
SHELL    := bash
.SHELLFLAGS := -o pipefail -ec
GO       ?= go
BIN      ?= bin/tapline
PKGS     ?= ./...
TIMEOUT  ?= 15m

.PHONY: all build test test-short services vet fmt bench bench-postgres clean demo quickstart

all: build

## build: compile the tapline binary into bin/
build:
	$(GO) build -o $(BIN) ./cmd/tapline

## services: install, configure and start PostgreSQL, MariaDB, NATS and Redis (idempotent; root on Debian)
services:
	bash scripts/services.sh

## vet: go vet and a gofmt check
vet:
	$(GO) vet $(PKGS)
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Verbose, so the output names every test that ran (integration tests
# against the real services included), without the RUN/PAUSE/CONT noise.
GOTEST = $(GO) test -race -count=1 -timeout $(TIMEOUT) -v $(PKGS) 2>&1 | grep -v -E '^=== (RUN|PAUSE|CONT|NAME)'

## test: services, vet, then every test with the race detector
test: services vet
	$(GOTEST)

## test-short: the tests without setting up services (they must already run)
test-short:
	$(GOTEST)

## bench: benchmarks of the pure packages (codec, offsets); connector benchmarks have their own targets
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./connectors/... ./offsets/...

## bench-postgres: the Postgres source against pg_recvlogical and a raw pglogrepl drain (TAPLINE_BENCH_ROWS, default 1,000,000)
bench-postgres: services
	$(GO) test -run '^$$' -bench Drain -benchtime=1x -v -timeout 60m ./sources/postgres/

fmt:
	gofmt -w .

clean:
	rm -rf bin data

## demo: the strangler migration: a legacy Postgres shop under load captured into embedded NATS, three views, a verification report
demo: services build
	$(GO) run ./examples/strangler/cmd/demo -tapline $(BIN) $(DEMO_FLAGS)

## quickstart: synthetic changes through the daemon into a JSON-lines file, then a check
quickstart: build
	rm -rf data/quickstart
	$(BIN) validate examples/quickstart
	$(BIN) run examples/quickstart --data-dir data/quickstart --http ""
	@n=$$(wc -l < data/quickstart/events.jsonl); \
	  if [ "$$n" -ne 50000 ]; then echo "quickstart: FAILED: $$n events, want 50000"; exit 1; fi; \
	  echo "quickstart: OK: 50000 events in data/quickstart/events.jsonl"
	$(BIN) offsets list --data-dir data/quickstart --config examples/quickstart
