package report

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/internal/browser"
	"github.com/kharness/kharness/internal/reportcheck"
	"github.com/kharness/kharness/internal/runfixture"
)

// ArtefactDir is where a test leaves what people look at (screenshots):
// $KHARNESS_TEST_ARTEFACTS/<test>, or results/test-artefacts/<test> in the
// repository (CI uploads results/).
func artefactDir(t *testing.T) string {
	root := os.Getenv("KHARNESS_TEST_ARTEFACTS")
	if root == "" {
		root = filepath.Join(runfixture.Dir(), "..", "..", "results", "test-artefacts")
	}
	dir := filepath.Join(root, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// history4 is four nights made from a real run: baseline; the mutant
// (fdinfo fails, its retry too: a regression); baseline with handshake
// flaking (fixed; passed on retry); the mutant again (reopened).
func history4(t *testing.T) (*history.DB, []string) {
	t.Helper()
	base, err := runfixture.Load(runfixture.MutantRun)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	t0 := base.Started.Add(-72 * time.Hour)
	ids := []string{"20261130-020000-1", "20261201-020000-2", "20261202-020000-3", "20261203-020000-4"}
	edits := []func(*results.Run){runfixture.Passing, nil, runfixture.Then(runfixture.Passing, runfixture.Flake("uffd", "handshake")), nil}
	for i, id := range ids {
		if _, err := runfixture.Write(root, base, id, t0.Add(time.Duration(i)*24*time.Hour), edits[i]); err != nil {
			t.Fatal(err)
		}
	}
	db, err := history.Rebuild(context.Background(), filepath.Join(t.TempDir(), "h.db"), []string{root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, ids
}

func build(t *testing.T, out string) (*Data, []string) {
	db, ids := history4(t)
	ks, err := known.Parse("known-issues.yaml", []byte("issues:\n  - {id: old, tests: [cow], reason: gone, expires: 2026-01-01}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Build(context.Background(), db, ks, Options{Out: out, KnownPath: "known-issues.yaml", Now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return d, ids
}

func TestBuild(t *testing.T) {
	out := t.TempDir()
	d, ids := build(t, out)
	if len(d.Regs) != 1 || d.Regs[0].FirstFail.Run != ids[1] || d.Regs[0].LastPass.Run != ids[0] || d.Regs[0].Reopened != 1 {
		t.Fatalf("regressions %+v", d.Regs)
	}
	if d.Regs[0].FirstFail.Href == "" {
		t.Error("the first failing run links to no log")
	}
	if len(d.Flaky) != 1 || !strings.HasSuffix(d.Flaky[0].Key, "uffd/handshake") || d.Flaky[0].PassOnRetry != 1 {
		t.Errorf("flaky %+v", d.Flaky)
	}
	if len(d.Matrix.Rows) != 1 || d.Matrix.Rows[0].Cells[0].CSS != "fail" {
		t.Errorf("matrix %+v", d.Matrix)
	}
	if len(d.Expired) != 1 {
		t.Errorf("expired %+v", d.Expired)
	}
	if len(d.Charts) != 3+len(MetricTrends) {
		t.Errorf("%d charts", len(d.Charts))
	}
	var md bytes.Buffer
	if err := d.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| `default.x86_64` | ❌ FAIL 1/2 |", "| `default.x86_64 uffd/fdinfo` | " + ids[1] + " | " + ids[0] + " |", "expired on 2026-01-01"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md.String())
		}
	}
}

// TestBrowser loads index.html in a real headless Chromium: it makes no
// request but for itself, logs no error, and shows the matrix, the
// regression's first failing and last passing runs and every chart.
func TestBrowser(t *testing.T) {
	if _, err := browser.Path(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI must have it: make test runs kharness doctor --install)", err)
		}
		t.Skip(err)
	}
	out := t.TempDir()
	d, ids := build(t, out)
	if err := d.Write(out); err != nil {
		t.Fatal(err)
	}
	reportcheck.CheckPage(t, filepath.Join(out, "index.html"), reportcheck.Expect{Regression: "default.x86_64 uffd/fdinfo", FirstFail: ids[1], LastPass: ids[0], Charts: len(d.Charts)},
		filepath.Join(artefactDir(t), "report.png"))
}
