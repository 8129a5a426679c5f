package kafka_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/sinks/kafka"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kfakeConnGoroutines are the top functions of the in-process broker's
// side of a client connection. The broker holds a fetch (a long poll) of
// a client that has closed until the poll's wait ends, and these two live
// on until then: kfake's goroutines, not the sink's, whose own are still
// checked.
var kfakeConnGoroutines = []string{
	"github.com/twmb/franz-go/pkg/kfake.(*clientConn).read",
	"github.com/twmb/franz-go/pkg/kfake.(*clientConn).write",
}

func TestConformance(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	connectortest.RunSink(t, connectortest.SinkHarness{
		New: func(t *testing.T) connectors.Sink { return newSink(t, cfg, "conformance") },
		State: func(t *testing.T) map[string]string {
			return fold(t, consume(t, c, true, itemsTopic(cfg)))
		},
		IgnoreLeaks: kfakeConnGoroutines,
	})
}

func TestConformanceExactlyOnce(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	cfg.Delivery = kafka.ExactlyOnce
	cfg.OffsetsTopic = cfg.TopicPrefix + ".offsets"
	connectortest.RunSink(t, connectortest.SinkHarness{
		New: func(t *testing.T) connectors.Sink { return newSink(t, cfg, "conformance-eos") },
		State: func(t *testing.T) map[string]string {
			return fold(t, consume(t, c, true, itemsTopic(cfg)))
		},
		Records:     func(t *testing.T) int { return len(consume(t, c, true, itemsTopic(cfg))) },
		IgnoreLeaks: kfakeConnGoroutines,
	})
}
