package offsets_test

import (
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tapline/tapline/offsets"
)

// A process committing positions 1, 2, 3, ... is killed with SIGKILL at a
// random moment, several times over the same file (the first time possibly
// while it creates the file). Each reopen must give the last position the
// process reported committed, or the one after it (committed, not yet
// reported): never an older one, never a torn one.
func TestSQLiteSurvivesKill(t *testing.T) {
	const rounds = 8
	path := filepath.Join(t.TempDir(), "data", "offsets.db")
	var reported uint64 // the last position a helper printed, over all rounds
	for round := range rounds {
		// Kill right away in the first round (mid-creation, likely), then
		// after a random number of reported commits.
		wait := 0
		if round > 0 {
			wait = rand.IntN(150)
		}
		h := startHelper(t, "commit", "HELPER_DB="+path)
		lines := make([]string, 0, wait)
		for range wait {
			lines = append(lines, h.line(t))
		}
		lines = append(lines, h.kill(t)...)
		for _, l := range lines {
			n, err := strconv.ParseUint(l, 10, 64)
			if err != nil || n != reported+1 {
				t.Fatalf("round %d: helper printed %q after %d", round, l, reported)
			}
			reported = n
		}

		s, err := offsets.OpenSQLite(path)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		p, err := s.Get(t.Context(), "crash")
		s.Close()
		if err != nil {
			t.Fatalf("round %d: Get after kill: %v", round, err)
		}
		var got uint64
		if p != nil {
			var whole bool
			if got, whole = decodeCrashPosition(p); !whole {
				t.Fatalf("round %d: stored position is torn (%d bytes, says %d)", round, len(p), got)
			}
		}
		t.Logf("round %d: killed after %d reported commits; last reported %d, stored %d", round, wait, reported, got)
		switch {
		case got < reported:
			t.Fatalf("round %d: stored position %d is older than the last reported commit %d", round, got, reported)
		case got > reported+1:
			t.Fatalf("round %d: stored position %d was never committed (last reported %d)", round, got, reported)
		}
		reported = got // the next helper continues after what is stored
	}
	if reported == 0 {
		t.Errorf("no round committed anything")
	}
}
