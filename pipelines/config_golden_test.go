package pipelines

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGoldenErrors loads each case under testdata/bad (a .yaml file, or a
// directory) and compares the error output with the case's .golden file.
// Run `go test ./pipelines -run Golden -update` to rewrite them.
func TestGoldenErrors(t *testing.T) {
	const dir = "testdata/bad"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases := 0
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() && filepath.Ext(name) != ".yaml" {
			continue
		}
		cases++
		path := filepath.ToSlash(filepath.Join(dir, name))
		golden := filepath.Join(dir, strings.TrimSuffix(name, ".yaml")+".golden")
		t.Run(name, func(t *testing.T) {
			ps, err := Load(path, testRegistry(), testEnv)
			if err == nil {
				t.Fatalf("Load(%s) succeeded with %d pipelines; want errors", path, len(ps))
			}
			if _, ok := err.(ErrorList); !ok {
				t.Fatalf("Load returned %T, want ErrorList", err)
			}
			got := err.Error() + "\n"
			if strings.Contains(got, testSecret) {
				t.Errorf("the errors leak a secret from the environment:\n%s", got)
			}
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s (run with -update to accept):\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
	if cases < 14 {
		t.Errorf("only %d golden cases", cases)
	}
}
