//go:build e2e

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/internal/reportcheck"
)

// track reads `kharness history show --json TEST` for one test.
func track(t *testing.T, db, test string) *history.Track {
	t.Helper()
	r := kharness(t, nil, "history", "show", "--db", db, "--known", "/nonexistent", "--json", test)
	if r.code != 0 {
		t.Fatalf("history show: exit %d: %s", r.code, r.stderr)
	}
	var ts []*history.Track
	if err := json.Unmarshal([]byte(r.stdout), &ts); err != nil || len(ts) != 1 {
		t.Fatalf("history show %s: %v: %s", test, err, r.stdout)
	}
	return ts[0]
}

// TestE2ENightlyHistory: three real runs of one x86_64 cell, uffd fdinfo
// only: the default stack; tonight's change, the uffd-fdinfo-total mutant
// stacked on it (fdinfo fails, and fails again on its retry); the default
// stack again. History says regressed (first fail run 2, last pass run 1)
// after the second, fixed (in run 3) after the third; the gate fails on
// the second and passes on the third; the report shows it in Chromium.
func TestE2ENightlyHistory(t *testing.T) {
	cfg, resultsDir := writeConfig(t, "targets: [x86_64]\nduration: 5s\n", nil)
	db := filepath.Join(resultsDir, "history.db")
	stacks := []string{"all", "all,mutants/uffd-fdinfo-total", "all"}
	wantCodes := []outcome.Outcome{outcome.Pass, outcome.TestFail, outcome.Pass}
	var ids []string
	for i, stack := range stacks {
		r := kharness(t, nil, "run", "-c", cfg, "--patchset", stack, "--suite", "uffd:^fdinfo$", "--retry", "--db", db, "--known", "/nonexistent")
		wantCode(t, r, wantCodes[i])
		run, _ := loadRun(t, resultsDir)
		ids = append(ids, run.ID)
		c := run.Cells[0]
		if c.PatchStack == "" || c.KconfigSHA == "" || c.SourceID == "" {
			t.Errorf("run %d: cell identity not recorded: patch stack %q kconfig %q source %q", i+1, c.PatchStack, c.KconfigSHA, c.SourceID)
		}
		fd := findTest(c, "uffd", "fdinfo")
		if i == 1 && (fd == nil || fd.Retry == nil || fd.Retry.Outcome != outcome.TestFail) {
			t.Fatalf("the mutant's fdinfo failure was not retried, or its retry passed: %+v", fd)
		}
		if imp := kharness(t, nil, "history", "import", "--db", db, resultsDir); imp.code != 0 {
			t.Fatalf("history import: %s", imp.stderr)
		}
		gate := kharness(t, nil, "history", "gate", "--db", db, "--known", "/nonexistent", "--fail-on", "regression")
		tr := track(t, db, "uffd/fdinfo")
		switch i {
		case 0:
			if tr.State != history.StatePassing || gate.code != 0 {
				t.Errorf("after the baseline: %s, gate %d", tr.State, gate.code)
			}
		case 1:
			if tr.State != history.StateRegressed || tr.Regression.FirstFail.Run.ID != ids[1] || tr.Regression.LastPass.Run.ID != ids[0] {
				t.Errorf("after the mutant: %s %+v, want regressed, first fail %s, last pass %s", tr.State, tr.Regression, ids[1], ids[0])
			}
			if gate.code != 1 {
				t.Errorf("gate after the mutant: exit %d, want 1\n%s", gate.code, gate.stdout)
			}
			if !strings.Contains(strings.Join(tr.Regression.Changed, ";"), "patch stack") {
				t.Errorf("the regression does not name the patch stack as what changed: %v", tr.Regression.Changed)
			}
		case 2:
			if tr.State != history.StateFixed || tr.Regression.Fixed == nil || tr.Regression.Fixed.Run.ID != ids[2] {
				t.Errorf("after the fix: %s %+v, want fixed in %s", tr.State, tr.Regression, ids[2])
			}
			if gate.code != 0 {
				t.Errorf("gate after the fix: exit %d\n%s", gate.code, gate.stdout)
			}
		}
	}
	show := kharness(t, nil, "history", "show", "--db", db, "--known", "/nonexistent", "uffd/fdinfo")
	for _, want := range []string{"fixed", "first failed in " + ids[1], "last passed in " + ids[0], "fixed in " + ids[2]} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("history show lacks %q:\n%s", want, show.stdout)
		}
	}
	cmp := kharness(t, nil, "history", "compare", "--db", db, "--known", "/nonexistent", "--base", ids[0], "--head", ids[1])
	if !strings.Contains(cmp.stdout, "regression") || !strings.Contains(cmp.stdout, "uffd/fdinfo") {
		t.Errorf("compare:\n%s", cmp.stdout)
	}
	out := filepath.Join(resultsDir, "report")
	if rep := kharness(t, nil, "report", "--db", db, "--known", "/nonexistent", "-o", out); rep.code != 0 {
		t.Fatalf("report: %s", rep.stderr)
	}
	reportcheck.CheckPage(t, filepath.Join(out, "index.html"), reportcheck.Expect{Regression: "default.x86_64 uffd/fdinfo",
		FirstFail: ids[1], LastPass: ids[0], Fixed: ids[2], Charts: 6}, filepath.Join(resultsDir, "report.png"))
}

// outcomes are a run's per-test outcomes (retries included), by cell.
func outcomes(r *results.Run) map[string][]string {
	m := map[string][]string{}
	for _, c := range r.Cells {
		m[c.ID] = append(m[c.ID], "cell "+string(c.Outcome))
		for _, tt := range c.Tests {
			s := tt.Suite + "/" + tt.Name + " " + string(tt.Outcome)
			if tt.Retry != nil {
				s += " retry " + string(tt.Retry.Outcome)
			}
			m[c.ID] = append(m[c.ID], s)
		}
		sort.Strings(m[c.ID])
	}
	return m
}

// TestE2EShardMerge runs the default matrix (both targets; smoke and two
// uffd tests, to keep it short) once whole and once as two shards, merges
// the shards and checks the merged run says what the whole run says.
func TestE2EShardMerge(t *testing.T) {
	cfg, resultsDir := writeConfig(t, "duration: 5s\n", nil)
	suites := "smoke,uffd:^(handshake|fdinfo)$"
	whole := kharness(t, nil, "run", "-c", cfg, "--suite", suites, "--db", "/nonexistent")
	wr, _ := loadRun(t, resultsDir)
	var parts []string
	for _, s := range []string{"1/2", "2/2"} {
		r := kharness(t, nil, "run", "-c", cfg, "--suite", suites, "--shard", s, "--db", "/nonexistent")
		sr, dir := loadRun(t, resultsDir)
		if sr.Shard == nil || len(sr.Cells) != 1 || len(sr.Shard.Matrix) != 2 {
			t.Fatalf("shard %s ran %d cells, shard record %+v (exit %d)", s, len(sr.Cells), sr.Shard, r.code)
		}
		parts = append(parts, dir)
	}
	merged := filepath.Join(t.TempDir(), "merged")
	m := kharness(t, nil, append([]string{"merge", "-o", merged}, parts...)...)
	if m.code != whole.code {
		t.Errorf("merge exit %d, the whole run's %d", m.code, whole.code)
	}
	mr, _ := loadRun(t, merged)
	got, want := outcomes(mr), outcomes(wr)
	gb, _ := json.MarshalIndent(got, "", " ")
	wb, _ := json.MarshalIndent(want, "", " ")
	if string(gb) != string(wb) {
		t.Errorf("merged per-test outcomes differ from the whole run's:\n%s\nwhole:\n%s", gb, wb)
	}
	var ids, wids []string
	for _, c := range mr.Cells {
		ids = append(ids, c.ID)
	}
	for _, c := range wr.Cells {
		wids = append(wids, c.ID)
	}
	if strings.Join(ids, ",") != strings.Join(wids, ",") || mr.Outcome != wr.Outcome {
		t.Errorf("merged cells %v %s, whole %v %s", ids, mr.Outcome, wids, wr.Outcome)
	}
	if _, err := os.Stat(filepath.Join(merged, mr.ID, "junit.xml")); err != nil {
		t.Error(err)
	}
}
