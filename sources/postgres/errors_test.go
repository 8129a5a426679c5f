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
