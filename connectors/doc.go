// Package connectors is the contract every tapline connector meets: the
// change event, positions, table schemas, batches, the Source and Sink
// interfaces, the registry of connectors by name, and the errors the engine
// classifies.
//
// The engine (package pipelines) reads bounded batches from a Source, passes
// them through transforms and writes them to a Sink. Only after the Sink
// reports a batch durable does the engine commit the batch's last position
// and acknowledge it to the Source. That makes at-least-once the floor for
// every pipeline; a Sink that also implements AtomicSink stores the position
// in the same transaction as the data, and the engine then resumes from the
// sink's own position, which gives exactly-once.
//
// This package imports nothing else of tapline.
package connectors
