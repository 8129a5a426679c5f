package main

// The connectors this binary ships. Each registers itself by name from its
// package's init, as database/sql drivers do.
import (
	_ "github.com/tapline/tapline/sinks/jsonl"
	_ "github.com/tapline/tapline/sinks/kafka"
	_ "github.com/tapline/tapline/sinks/mysql"
	_ "github.com/tapline/tapline/sinks/nats"
	_ "github.com/tapline/tapline/sinks/postgres"
	_ "github.com/tapline/tapline/sinks/redis"
	_ "github.com/tapline/tapline/sinks/sqlite"
	_ "github.com/tapline/tapline/sources/generate"
	_ "github.com/tapline/tapline/sources/jsonl"
	_ "github.com/tapline/tapline/sources/kafka"
	_ "github.com/tapline/tapline/sources/mysql"
	_ "github.com/tapline/tapline/sources/nats"
	_ "github.com/tapline/tapline/sources/postgres"
)
