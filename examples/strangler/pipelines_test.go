package strangler_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines"

	kafkasink "github.com/tapline/tapline/sinks/kafka"
	natssink "github.com/tapline/tapline/sinks/nats"
	kafkasource "github.com/tapline/tapline/sources/kafka"
	natssource "github.com/tapline/tapline/sources/nats"

	_ "github.com/tapline/tapline/sinks/postgres"
	_ "github.com/tapline/tapline/sinks/redis"
	_ "github.com/tapline/tapline/sinks/sqlite"
	_ "github.com/tapline/tapline/sources/mysql"
	_ "github.com/tapline/tapline/sources/postgres"
)

// exampleEnv gives the variables the pipeline files need values, as
// examples/examples_test.go does, and leaves the others to their defaults.
func exampleEnv(k string) (string, bool) {
	switch k {
	case "SHOP_PG_DSN", "REPORTING_PG_DSN":
		return "postgres://postgres@127.0.0.1:5432/postgres", true
	case "SHOP_MYSQL_DSN":
		return "root@tcp(127.0.0.1:3306)/shop", true
	}
	return "", false
}

func loadByName(t *testing.T, dir string) map[string]*pipelines.Pipeline {
	t.Helper()
	ps, err := pipelines.Load(dir, connectors.Default, exampleEnv)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	out := map[string]*pipelines.Pipeline{}
	for _, p := range ps {
		out[p.Name] = p
	}
	return out
}

// subjectMatches reports whether a NATS subject filter (tokens, `*` one
// token, `>` the rest) matches name.
func subjectMatches(filter, name string) bool {
	f, n := strings.Split(filter, "."), strings.Split(name, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(n) > i
		case i >= len(n):
			return false
		case tok != "*" && tok != n[i]:
			return false
		}
	}
	return len(f) == len(n)
}

// The Kafka variants of the example's pipelines load, and they are the
// NATS ones with only the log swapped: the same pipelines by name, the
// same database sources, the same views (sink, transforms and batch
// blocks), topics named as the NATS subjects, and topic templates as the
// subject templates. A view changed in one directory and not in the other
// fails here.
func TestKafkaPipelinesMatchNATS(t *testing.T) {
	nats := loadByName(t, "pipelines")
	kafka := loadByName(t, filepath.Join("pipelines", "kafka"))
	for name := range kafka {
		if nats[name] == nil {
			t.Errorf("pipelines/kafka has %s; pipelines has no pipeline of that name", name)
		}
	}
	views, captures := 0, 0
	for name, n := range nats {
		k := kafka[name]
		if k == nil {
			t.Errorf("pipelines has %s; pipelines/kafka has no pipeline of that name", name)
			continue
		}
		if !reflect.DeepEqual(n.Batch, k.Batch) {
			t.Errorf("%s: batch %+v on NATS, %+v on Kafka", name, n.Batch, k.Batch)
		}
		if len(n.Transforms) != len(k.Transforms) {
			t.Errorf("%s: %d transforms on NATS, %d on Kafka", name, len(n.Transforms), len(k.Transforms))
		} else {
			for i := range n.Transforms {
				if n.Transforms[i].Type != k.Transforms[i].Type || !reflect.DeepEqual(n.Transforms[i].Config, k.Transforms[i].Config) {
					t.Errorf("%s: transform %d differs: %s %+v on NATS, %s %+v on Kafka", name, i,
						n.Transforms[i].Type, n.Transforms[i].Config, k.Transforms[i].Type, k.Transforms[i].Config)
				}
			}
		}
		switch {
		case n.Source.Type == "nats": // a view
			views++
			if k.Source.Type != "kafka" {
				t.Errorf("%s: the Kafka variant reads from %s", name, k.Source.Type)
				continue
			}
			if n.Sink.Type != k.Sink.Type || !reflect.DeepEqual(n.Sink.Config, k.Sink.Config) {
				t.Errorf("%s: the view differs:\nNATS  %s %+v\nKafka %s %+v", name, n.Sink.Type, n.Sink.Config, k.Sink.Type, k.Sink.Config)
			}
			subjects := n.Source.Config.(*natssource.Config).Subjects
			topics := k.Source.Config.(*kafkasource.Config).Topics
			if len(subjects) != len(topics) {
				t.Errorf("%s: reads subjects %v on NATS, topics %v on Kafka", name, subjects, topics)
				continue
			}
			for i := range subjects {
				if !subjectMatches(subjects[i], topics[i]) {
					t.Errorf("%s: topic %s is not what subject %s reads", name, topics[i], subjects[i])
				}
			}
		case n.Sink.Type == "nats": // a capture
			captures++
			if k.Sink.Type != "kafka" {
				t.Errorf("%s: the Kafka variant writes to %s", name, k.Sink.Type)
				continue
			}
			if n.Source.Type != k.Source.Type || !reflect.DeepEqual(n.Source.Config, k.Source.Config) {
				t.Errorf("%s: the captured database differs:\nNATS  %s %+v\nKafka %s %+v", name, n.Source.Type, n.Source.Config, k.Source.Type, k.Source.Config)
			}
			ns, ks := n.Sink.Config.(*natssink.Config), k.Sink.Config.(*kafkasink.Config)
			if ns.SubjectPrefix != ks.TopicPrefix || ns.Subject != ks.Topic {
				t.Errorf("%s: subjects %q with prefix %q on NATS, topics %q with prefix %q on Kafka", name, ns.Subject, ns.SubjectPrefix, ks.Topic, ks.TopicPrefix)
			}
			if ks.Delivery != kafkasink.ExactlyOnce {
				t.Errorf("%s: delivery %s; the demo's captures are exactly_once", name, ks.Delivery)
			}
		default:
			t.Errorf("%s: neither reads nor writes the log (%s -> %s)", name, n.Source.Type, n.Sink.Type)
		}
	}
	if views != 4 || captures != 2 {
		t.Errorf("%d views and %d captures; want the example's 4 and 2", views, captures)
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		filter, name string
		want         bool
	}{
		{"shop.public.orders", "shop.public.orders", true},
		{"shop.public.orders", "shop.public.orders.history", false},
		{"mshop.*.orders", "mshop.shop.orders", true},
		{"mshop.*.orders", "mshop.a.b.orders", false},
		{"shop.>", "shop.public.orders", true},
		{"shop.>", "shop", false},
	} {
		if got := subjectMatches(c.filter, c.name); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", c.filter, c.name, got, c.want)
		}
	}
}
