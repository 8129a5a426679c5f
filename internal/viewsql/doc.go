// Package viewsql is the shared half of the SQL view sinks (sinks/sqlite,
// sinks/postgres, sinks/mysql): what they apply and when, independent of
// the store. A store provides a Backend (connection, catalog, DDL, and
// Apply for one table's share of a batch); Sink does the rest:
//
//   - Mapping: each source table goes to one target table, named by
//     Config.TableName ({table}, or e.g. {schema}_{table}) or
//     Config.Tables[...].Name, with a projection (Columns, Rename) and a
//     mode (upsert or history).
//   - Planning: a batch is coalesced per target table and key (see
//     TableBatch): the last change per key wins, columns left Unchanged
//     (Postgres TOAST) are merged into an earlier change of the key or
//     kept from the stored row, a delete followed by an insert deletes
//     first, and a truncate voids everything before it in the batch.
//     Values go through the store's converters first, so that a value the
//     store cannot hold makes a *connectors.RejectError before anything is
//     written.
//   - Schema evolution: tables are created from the first event's schema,
//     columns of new schema versions added, dropped columns kept (or
//     dropped with DropColumns), and type or key changes the table cannot
//     take refused with TypeChangeError or KeyChangeError.
//   - Key-only deletes: a delete whose schema holds only the key (version
//     0, every column a key column: what the Kafka source makes of a
//     tombstone, all compaction leaves of a deleted row) deletes by key in
//     upsert mode and appends a delete row with only the key columns in
//     history mode. Such a schema never creates, evolves or drops columns
//     of a table, and a table that does not exist is left alone; a key
//     other than the table's is a KeyChangeError. Its key columns take the
//     types of a full schema of the table seen earlier, when there is one.
//   - Exactly once: each batch is one transaction that also writes the
//     pipeline's row of OffsetsTable (position, origins applied, tables
//     written); a batch at or before the stored position is skipped.
//     The row is locked first, as a fence against a second writer: when
//     the sink knows the stored position from its own last commit, one
//     UPDATE ... WHERE position = <that position> locks and moves it
//     (Backend.AdvanceOffset); otherwise, or when that UPDATE finds the
//     row elsewhere, a locking read tells a replayed batch (skipped) from
//     another writer (an error). Stores without transactional DDL (MySQL)
//     run schema changes before the transaction.
//   - Planning allocates little: plans are kept from batch to batch, keys
//     of one int64 need no encoding, and an insert-only batch reaches
//     Apply as the rows it was planned into (see BenchmarkWriteBatch).
//   - Read-your-writes: the origins applied are kept in memory after each
//     commit for connectors.OriginTracker.
//   - Rebuilds: UseShadow and Promote implement connectors.ShadowSink with
//     <table>__shadow tables and a <pipeline>#shadow position, promoted in
//     one transaction, or (MySQL) with one atomic RENAME TABLE and a
//     recorded intent that the next Open finishes or undoes.
//
// Package viewsqltest holds the test suite every SQL view sink runs.
package viewsql
