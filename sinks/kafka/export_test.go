package kafka

import "github.com/twmb/franz-go/pkg/kgo"

// SetBeforeCommit makes the sink call f between a transaction's produce
// and its commit; an error from f returns from WriteBatch at once, leaving
// the transaction open, as a crash there would.
func (s *Sink) SetBeforeCommit(f func() error) { s.beforeCommit = f }

// Unwrap returns the *Sink of a sink New built.
func Unwrap(s any) *Sink {
	if e, ok := s.(ExactlyOnceSink); ok {
		return e.Sink
	}
	return s.(*Sink)
}

// ProducerOptions returns the options the sink builds its client with.
func ProducerOptions(s any) []kgo.Opt { return Unwrap(s).produce }

// KeyPartition exposes the partition choice used for the stored position.
var KeyPartition = keyPartition

// EndWatch returns the logger that sees franz-go turn a commit into an
// abort, and whether it saw one.
func EndWatch(s any) (kgo.Logger, func() bool) {
	w := Unwrap(s).endWatch
	return w, w.abortedCommit
}
