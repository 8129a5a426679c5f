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
