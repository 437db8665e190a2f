package ktap

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json from the parser's output")

// golden is what a testdata/NAME.json holds for testdata/NAME.ktap.
type golden struct {
	// Tests lists Flatten's paths with their status, for review at a
	// glance.
	Tests  []string `json:"tests"`
	Counts string   `json:"counts"`
	// Events are the OnTest calls in order.
	Events []string `json:"events"`
	Result *Result  `json:"result"`
}

// parseChecked parses in line by line with OnTest recording, checks the
// invariants every parse must keep and returns the golden record.
func parseChecked(t testing.TB, in []byte, opts Options) golden {
	t.Helper()
	var events []string
	seen := map[*Test]string{}
	opts.OnTest = func(path string, tt *Test) {
		if _, dup := seen[tt]; dup {
			t.Errorf("OnTest called twice for %q", path)
		}
		seen[tt] = path
		events = append(events, string(tt.Result)+" "+path)
	}
	r, err := Parse(bytes.NewReader(in), opts)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, r, seen, opts)
	g := golden{Counts: r.Counts().String(), Events: events, Result: r}
	for _, e := range r.Flatten() {
		g.Tests = append(g.Tests, string(e.Test.Result)+" "+e.Path)
	}
	return g
}

// checkInvariants checks what holds for any input: every test has a
// status and was reported once by OnTest under its Flatten path, leaf
// counts add up, diagnostics respect the cap.
func checkInvariants(t testing.TB, r *Result, seen map[*Test]string, opts Options) {
	t.Helper()
	flat := r.Flatten()
	leaves := 0
	for _, e := range flat {
		switch e.Test.Result {
		case Pass, Fail, Skip, Todo, XFail, XPass, Timeout, Error, Crashed:
		default:
			t.Errorf("%s: status %q", e.Path, e.Test.Result)
		}
		if e.Test.st != nil {
			t.Errorf("%s: not final", e.Path)
		}
		if len(e.Test.Subtests) == 0 {
			leaves++
		}
		if p, ok := seen[e.Test]; !ok {
			t.Errorf("%s: never reported by OnTest", e.Path)
		} else if p != e.Path {
			t.Errorf("OnTest path %q, Flatten path %q", p, e.Path)
		}
		if e.Test.Result == Crashed && e.Test.OK {
			t.Errorf("%s: crashed but ok", e.Path)
		}
		if max := opts.MaxDiagnostics; max > 0 && len(e.Test.Diagnostics) > max {
			t.Errorf("%s: %d diagnostics kept, cap %d", e.Path, len(e.Test.Diagnostics), max)
		}
	}
	if len(seen) != len(flat) {
		t.Errorf("OnTest called for %d tests, tree has %d", len(seen), len(flat))
	}
	c := r.Counts()
	if c.Total() != leaves {
		t.Errorf("Counts total %d, %d leaves", c.Total(), leaves)
	}
	if n := c.Pass + c.Fail + c.Skip + c.Todo + c.XFail + c.XPass + c.Timeout + c.Error + c.Crashed; n != c.Total() {
		t.Errorf("Counts fields add to %d, Total %d", n, c.Total())
	}
	if max := opts.MaxDiagnostics; max > 0 && len(r.Diagnostics) > max {
		t.Errorf("top level: %d diagnostics kept, cap %d", len(r.Diagnostics), max)
	}
}

// TestCorpus parses every testdata/*.ktap and compares with its .json. To
// add a case, drop NAME.ktap in testdata and run
// `go test ./harness/ktap -update`, then review NAME.json.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.ktap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.ktap")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".ktap"), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(parseChecked(t, in, Options{}), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			jf := strings.TrimSuffix(f, ".ktap") + ".json"
			if *update {
				if err := os.WriteFile(jf, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(jf)
			if err != nil {
				t.Fatalf("%v (run `go test ./harness/ktap -update` and review it)", err)
			}
			if d := firstDiff(want, got); d != "" {
				t.Errorf("%s differs from the parse (rerun with -update if the change is intended):\n%s", jf, d)
			}
		})
	}
}

// TestGoldensHaveInputs keeps a .json whose .ktap was removed from lingering.
func TestGoldensHaveInputs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, err := os.Stat(strings.TrimSuffix(f, ".json") + ".ktap"); err != nil {
			t.Errorf("%s has no .ktap: %v", f, err)
		}
	}
}

// firstDiff describes the first line where want and got differ, "" if
// they are equal.
func firstDiff(want, got []byte) string {
	if bytes.Equal(want, got) {
		return ""
	}
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, wl, gl)
		}
	}
	return "trailing bytes differ"
}
