package jsonl

import (
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

var testSchema = connectors.MustSchema(connectors.TableID{Name: "t"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Key: 1},
})

func eventLine(t *testing.T, id int64) []byte {
	t.Helper()
	b, err := eventjson.Marshal(&connectors.Event{Op: connectors.OpCreate, Schema: testSchema, After: []connectors.Value{id}})
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func stdinSource(t *testing.T, r io.Reader) *Source {
	t.Helper()
	s, err := New(DefaultConfig(), connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	s.stdin = r
	return s
}

// Reading a slow stdin: a batch ends MaxWait after its first event, a
// cancelled read returns, and Close does not wait for a read that blocks.
func TestStdinTrickle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		s := stdinSource(t, pr)
		ctx := context.Background()
		if err := s.Open(ctx, nil); err != nil {
			t.Fatal(err)
		}
		go func() {
			for id := int64(1); id <= 3; id++ {
				pw.Write(eventLine(t, id))
				time.Sleep(100 * time.Millisecond)
			}
		}()
		lim := connectors.Limits{MaxEvents: 100, MaxWait: 150 * time.Millisecond}
		start := time.Now()
		b, err := s.ReadBatch(ctx, lim)
		if err != nil || len(b.Events) != 2 || time.Since(start) != 150*time.Millisecond {
			t.Fatalf("first batch: %d events after %v, %v; want 2 after 150ms", len(b.Events), time.Since(start), err)
		}
		b, err = s.ReadBatch(ctx, lim)
		if err != nil || len(b.Events) != 1 || b.Events[0].After[0] != int64(3) {
			t.Fatalf("second batch: %d events, %v", len(b.Events), err)
		}
		// Nothing more comes: a cancelled read returns.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := s.ReadBatch(cctx, lim); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read with nothing to read: %v", err)
		}
		synctest.Wait() // the reader is blocked in Read
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		pw.Close() // the read returns, and the goroutine ends
		<-s.done
	})
}

func TestStdinToEOF(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		for id := int64(1); id <= 2500; id++ {
			pw.Write(eventLine(t, id))
		}
		pw.Close()
	}()
	s := stdinSource(t, pr)
	ctx := context.Background()
	s.Open(ctx, nil)
	n := 0
	for {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 64, MaxWait: time.Second})
		for _, ev := range b.Events {
			n++
			if ev.After[0] != int64(n) {
				t.Fatalf("event %d has id %v", n, ev.After[0])
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != 2500 {
		t.Fatalf("read %d events", n)
	}
	s.Close(ctx)
	<-s.done
}
