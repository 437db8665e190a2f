package history

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/internal/runfixture"
)

// realRun is a record of a real run: the uffd-fdinfo-total mutant on
// x86_64, uffd handshake passing and fdinfo failing, its retry too.
const realRun = "../../testdata/runs/20261203-182644-25594"

func loadReal(t testing.TB) *results.Run {
	t.Helper()
	r, err := runfixture.Load(runfixture.MutantRun)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func synthRun(t testing.TB, root string, base *results.Run, id string, start time.Time, edit func(*results.Run)) string {
	t.Helper()
	dir, err := runfixture.Write(root, base, id, start, edit)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

var passing = runfixture.Passing

func TestImportIdempotent(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	actions := func(srcs ...string) string {
		ims, err := db.Import(ctx, srcs, nil)
		if err != nil {
			t.Fatal(err)
		}
		var a []string
		for _, im := range ims {
			a = append(a, im.Action)
		}
		return strings.Join(a, ",")
	}
	if got := actions(realRun); got != "added" {
		t.Errorf("first import: %s", got)
	}
	if got := actions(realRun, filepath.Join(realRun, "results.json")); got != "unchanged" {
		t.Errorf("second import: %s", got)
	}
	// The same run, finished since (an incomplete run imported early).
	root := t.TempDir()
	r := loadReal(t)
	synthRun(t, root, r, r.ID, r.Started, func(r *results.Run) { r.Reason = "finished later" })
	if got := actions(root); got != "replaced" {
		t.Errorf("changed record: %s", got)
	}
	runs, err := db.Runs(ctx)
	if err != nil || len(runs) != 1 || runs[0].Reason != "finished later" {
		t.Fatalf("runs %+v %v", runs, err)
	}
	obs, err := db.Observations(ctx, runs)
	if err != nil {
		t.Fatal(err)
	}
	fd := obs[Key{Source: "debian:linux-source-6.12", Cell: "default", Target: "x86_64", Suite: "uffd", Test: "fdinfo"}]
	if len(fd) != 1 || fd[0].Status != Fail || fd[0].Retry != Fail || fd[0].Rev.PatchStack == "" || fd[0].Rev.KconfigSHA == "" || fd[0].Rev.SourceID == "" {
		t.Errorf("fdinfo observations %+v", fd)
	}
	kern := obs[Key{Source: "debian:linux-source-6.12", Cell: "default", Target: "x86_64", Suite: KernelSuite, Test: KernelTest}]
	if len(kern) != 1 || kern[0].Status != Pass {
		t.Errorf("kernel row %+v", kern)
	}
}

func TestImportRejects(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "results.json"), []byte(`{"schema": "kharness.run/v0", "id": "x"}`), 0o644)
	if _, err := db.Import(ctx, []string{dir}, nil); err == nil || !strings.Contains(err.Error(), "schema") {
		t.Errorf("a record of another schema: %v", err)
	}
	if _, err := db.Import(ctx, []string{t.TempDir()}, nil); err == nil || !strings.Contains(err.Error(), "holds no run") {
		t.Errorf("an empty directory: %v", err)
	}
}

// TestRegressionFromRealRecords: baseline, tonight's mutant, baseline
// again: fdinfo regressed in run 2 (last pass run 1), fixed in run 3;
// handshake passes throughout; rebuilding the index gives the same.
func TestRegressionFromRealRecords(t *testing.T) {
	ctx := context.Background()
	real := loadReal(t)
	root := t.TempDir()
	t0 := real.Started.Add(-48 * time.Hour)
	synthRun(t, root, real, "20261201-020000-1", t0, passing)
	synthRun(t, root, real, "20261202-020000-2", t0.Add(24*time.Hour), nil)
	synthRun(t, root, real, "20261203-020000-3", t0.Add(48*time.Hour), passing)
	path := filepath.Join(t.TempDir(), "h.db")
	for _, rebuild := range []bool{false, true} {
		var db *DB
		var err error
		if rebuild {
			db, err = Rebuild(ctx, path, []string{root}, nil)
		} else if db, err = Open(ctx, path); err == nil {
			_, err = db.Import(ctx, []string{root}, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		runs, obs, err := db.Load(ctx)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		a := Analyze(Refs(runs), obs, nil, DefaultPolicy, t0.Add(72*time.Hour))
		var fd *Track
		for _, tr := range a.Tracks {
			if tr.Key.TestName() == "uffd/fdinfo" {
				fd = tr
			} else if tr.State != StatePassing {
				t.Errorf("%s: %s", tr.Key, tr.State)
			}
		}
		if fd == nil || fd.State != StateFixed || fd.Regression.FirstFail.Run.ID != "20261202-020000-2" ||
			fd.Regression.LastPass.Run.ID != "20261201-020000-1" || fd.Regression.Fixed.Run.ID != "20261203-020000-3" {
			t.Fatalf("fdinfo track %+v", fd)
		}
		if got := strings.Join(fd.Regression.Changed, ";"); !strings.Contains(got, "patch stack bbbbbbbbbbbb → 4068c6e81aa7") {
			t.Errorf("changed: %q", got)
		}
		// Between the two, compare and gate.
		ch := Compare(a, "20261201-020000-1", "20261202-020000-2")
		if len(ch) != 1 || ch[0].Kind != Regressed || ch[0].Key.Test != "fdinfo" {
			t.Errorf("compare: %+v", ch)
		}
		g, err := Gate(a, runs, "", []string{"regression"})
		if err != nil || g.Code != GateOK {
			t.Errorf("gate on the fixed run: %+v %v", g, err)
		}
	}
}

func TestGate(t *testing.T) {
	ctx := context.Background()
	real := loadReal(t)
	root := t.TempDir()
	t0 := real.Started.Add(-48 * time.Hour)
	synthRun(t, root, real, "20261201-020000-1", t0, passing)
	synthRun(t, root, real, "20261202-020000-2", t0.Add(24*time.Hour), nil)
	synthRun(t, root, real, "20261203-020000-3", t0.Add(48*time.Hour), func(r *results.Run) {
		r.Outcome = outcome.Infra
		for _, c := range r.Cells {
			c.Outcome, c.Raw, c.Tests = outcome.Infra, outcome.Infra, nil
		}
	})
	db, err := Rebuild(ctx, filepath.Join(t.TempDir(), "h.db"), []string{root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runs, obs, err := db.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := Analyze(Refs(runs), obs, nil, DefaultPolicy, t0.Add(72*time.Hour))
	for _, tc := range []struct {
		run    string
		policy []string
		code   int
	}{
		{"20261201-020000-1", []string{"regression"}, GateOK},
		{"20261202-020000-2", []string{"regression"}, GateViolated},
		{"20261202-020000-2", []string{"new-regression"}, GateViolated},
		{"20261203-020000-3", []string{"regression"}, GateIncomplete}, // infra: the regression is neither seen nor cleared
	} {
		g, err := Gate(a, runs, tc.run, tc.policy)
		if err != nil || g.Code != tc.code {
			t.Errorf("gate %s %v = %+v %v, want %d", tc.run, tc.policy, g, err, tc.code)
		}
	}
	if _, err := Gate(a, runs, "", []string{"bogus"}); err == nil {
		t.Error("unknown policy accepted")
	}
	for _, tr := range a.Tracks {
		// The cell never booted in run 3: fdinfo has no result there, the
		// kernel row an ERROR, and neither moves.
		if tr.Key.Test == "fdinfo" && (tr.State != StateRegressed || tr.Last().Run.ID != "20261202-020000-2") {
			t.Errorf("infra moved fdinfo: %s, last %s", tr.State, tr.Last().Run.ID)
		}
		if tr.Key.Test == KernelTest && (tr.State != StatePassing || tr.Last().Status != Error) {
			t.Errorf("kernel row: %s, last %s", tr.State, tr.Last().Status)
		}
	}
}

// TestImport100 measures importing 100 runs made from the real record
// (the figure the README quotes) and checks the index stays small.
func TestImport100(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	real := loadReal(t)
	root := t.TempDir()
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("20260801-020000-%d", i)
		synthRun(t, root, real, id, real.Started.AddDate(0, 0, i-100), func(r *results.Run) {
			if i%3 == 0 {
				passing(r)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "h.db")
	start := time.Now()
	db, err := Rebuild(ctx, path, []string{root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	start = time.Now()
	runs, obs, err := db.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := Analyze(Refs(runs), obs, nil, DefaultPolicy, time.Now())
	analysed := time.Since(start)
	db.Close()
	fi, _ := os.Stat(path)
	t.Logf("import of 100 runs: %s; load and analyse: %s; %d tracks; index %d KiB", took.Round(time.Millisecond), analysed.Round(time.Millisecond), len(a.Tracks), fi.Size()/1024)
	if len(runs) != 100 {
		t.Errorf("%d runs", len(runs))
	}
}
