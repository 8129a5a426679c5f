package pipelines

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines/transforms"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func dropIf(drop func(id int64) bool) transforms.Transform {
	return transforms.Func(func(ev *connectors.Event) (bool, error) {
		return !drop(ev.After[0].(int64)), nil
	})
}

// Heartbeat events pass the transforms untouched: they have no table or
// row for a filter, mask or route (dropIf would panic on one).
func TestHeartbeatsPassTransforms(t *testing.T) {
	hb := connectors.Event{Op: connectors.OpHeartbeat, Source: connectors.SourceInfo{Connector: "postgres", DB: "shop", Position: "0/10:0"}}
	b := connectors.Batch{Events: []connectors.Event{seqEvent(1, 1, ""), hb, seqEvent(2, 1, "")}}
	j := Job{Transforms: []transforms.Transform{dropIf(func(int64) bool { return true })}}
	if err := j.transform(&b); err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != 1 || b.Events[0].Op != connectors.OpHeartbeat {
		t.Fatalf("after dropping every row: %d events (%v); want the heartbeat alone", len(b.Events), b.Events)
	}
}
