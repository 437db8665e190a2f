package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/internal/runfixture"
)

// TestHistoryCLI drives kharness history and report over three nights
// made from a real record: baseline, the mutant (fdinfo fails, its retry
// too), baseline with handshake failing once (no retry: a suspect) and
// fdinfo passing again (fixed).
func TestHistoryCLI(t *testing.T) {
	base, err := runfixture.Load(runfixture.MutantRun)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	t0 := base.Started.Add(-72 * time.Hour)
	ids := []string{"20261201-020000-1", "20261202-020000-2", "20261203-020000-3"}
	suspect := func(r *results.Run) {
		runfixture.Passing(r)
		runfixture.Flake("uffd", "handshake")(r)
		r.Cells[0].Tests[0].Retry = nil
	}
	for i, edit := range []func(*results.Run){runfixture.Passing, nil, suspect} {
		if _, err := runfixture.Write(root, base, ids[i], t0.Add(time.Duration(i)*24*time.Hour), edit); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(t.TempDir(), "h.db")
	known := filepath.Join(t.TempDir(), "none.yaml")
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := realMain(args, &out, &errb)
		return code, out.String() + errb.String()
	}
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"history", "show", "--db", db}, 2, []string{"import runs first"}},
		{[]string{"history", "import", "--db", db, filepath.Join(root, ids[0]), filepath.Join(root, ids[1])}, 0, []string{"2 added"}},
		{[]string{"history", "gate", "--db", db, "--known", known}, 1, []string{"regression: default.x86_64 uffd/fdinfo failing since " + ids[1] + ", last passed in " + ids[0]}},
		{[]string{"history", "import", "--db", db, root}, 0, []string{"1 added, 0 replaced, 2 unchanged; 3 runs"}},
		{[]string{"history", "show", "--db", db, "--known", known}, 0, []string{"open regressions: 0", "suspects (failed once, not confirmed): 1", "uffd/fdinfo  fixed in " + ids[2] + ", failing since " + ids[1]}},
		{[]string{"history", "show", "--db", db, "--known", known, "fdinfo"}, 0, []string{"fixed", "first failed in " + ids[1] + ", last passed in " + ids[0] + ", fixed in " + ids[2], "changed between them: patch stack"}},
		{[]string{"history", "compare", "--db", db, "--known", known, "--base", ids[0], "--head", ids[1]}, 0, []string{"regression  default.x86_64 uffd/fdinfo  PASS → FAIL/retry FAIL"}},
		{[]string{"history", "compare", "--db", db, "--known", known}, 0, []string{"regression  default.x86_64 uffd/handshake  PASS → FAIL", "fixed       default.x86_64 uffd/fdinfo     FAIL → PASS"}},
		{[]string{"history", "gate", "--db", db, "--known", known, "--fail-on", "suspect"}, 1, []string{"suspect: default.x86_64 uffd/handshake"}},
		{[]string{"history", "gate", "--db", db, "--known", known, "--fail-on", "nonsense"}, 2, []string{"unknown policy"}},
		{[]string{"history", "import", "--db", db, "--rebuild", root}, 0, []string{"3 runs"}},
		{[]string{"report", "--db", db, "--known", known, "-o", filepath.Join(t.TempDir(), "r")}, 0, []string{"3 runs, 0 open regression(s)"}},
	} {
		code, out := run(tc.args...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, code, tc.code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
}
