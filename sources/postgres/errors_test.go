package postgres

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestSlotCreateErrorsSayWhatToDo(t *testing.T) {
	for code, want := range map[string]string{
		"53400": "raise max_replication_slots",
		"42501": "ALTER ROLE <user> REPLICATION",
		"XX000": `create replication slot "s"`,
	} {
		err := slotCreateError("s", &pgconn.PgError{Code: code, Message: "boom"})
		if !strings.Contains(err.Error(), want) {
			t.Errorf("code %s: %q lacks %q", code, err, want)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Errorf("code %s: the server's error is not wrapped", code)
		}
	}
}

func TestCompareLSNPosition(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
		ok   bool
	}{
		{"0/16B3748:1", "0/16B3748:2", -1, true},
		{"1/0:1", "0/FFFFFFFF:9", 1, true},
		{"0/16B3748", "0/16B3748:1", -1, true},
		{"0/16B3748:3", "0/16B3748:3", 0, true},
		{"snapshot:public.t:1", "0/1:1", 0, false},
	} {
		got, ok := CompareLSNPosition(c.a, c.b)
		if got != c.want || ok != c.ok {
			t.Errorf("CompareLSNPosition(%q, %q) = %d, %v; want %d, %v", c.a, c.b, got, ok, c.want, c.ok)
		}
	}
}
