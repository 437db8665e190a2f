package report

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/internal/browser"
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
	CheckPage(t, filepath.Join(out, "index.html"), Expect{Regression: "default.x86_64 uffd/fdinfo", FirstFail: ids[1], LastPass: ids[0], Charts: len(d.Charts)},
		filepath.Join(artefactDir(t), "report.png"))
}

// Expect is what CheckPage looks for.
type Expect struct {
	// Regression, FirstFail, LastPass: an open regression row; Fixed: or
	// a fixed one ("" for an open regression).
	Regression, FirstFail, LastPass, Fixed string
	Charts                                 int
}

// CheckPage opens index.html in headless Chromium and checks it as a
// person would see it; the screenshot goes to png.
func CheckPage(t *testing.T, index string, x Expect, png string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := browser.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	abs, _ := filepath.Abs(index)
	u := (&url.URL{Scheme: "file", Path: abs}).String()
	if err := b.Load(u); err != nil {
		t.Fatal(err)
	}
	if err := b.Screenshot(png); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", png)
	for _, r := range b.Requests() {
		if r != u && !strings.HasPrefix(r, "data:") {
			t.Errorf("the page requested %s: a report must be self-contained", r)
		}
	}
	if f := b.Failed(); len(f) > 0 {
		t.Errorf("failed requests: %v", f)
	}
	if e := b.Errors(); len(e) > 0 {
		t.Errorf("console errors: %v", e)
	}
	rows, err := browser.Eval[int](b, `document.querySelectorAll("#matrix-table tbody tr").length`)
	if err != nil || rows == 0 {
		t.Errorf("matrix rows: %d %v", rows, err)
	}
	// Every chart is an SVG with a size and drawn paths.
	type chart struct {
		ID     string  `json:"id"`
		W      float64 `json:"w"`
		H      float64 `json:"h"`
		Paths  int     `json:"paths"`
		Legend string  `json:"text"`
	}
	charts, err := browser.Eval[[]chart](b, `[...document.querySelectorAll("figure.chart")].map(f => {
		const s = f.querySelector("svg"); const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};
		return {id: f.dataset.chart, w: r.width, h: r.height, paths: s ? s.querySelectorAll("path").length : 0, text: s ? s.textContent.slice(0, 80) : ""};
	})`)
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != x.Charts {
		t.Errorf("%d charts on the page, want %d", len(charts), x.Charts)
	}
	for _, c := range charts {
		if c.W < 100 || c.H < 100 || c.Paths < 3 {
			t.Errorf("chart %s not drawn: %+v", c.ID, c)
		}
	}
	sel := `tr.regression`
	if x.Fixed != "" {
		sel = `tr.fixed`
	}
	type reg struct {
		Key, FirstFail, LastPass, Fixed, Text string
	}
	regs, err := browser.Eval[[]reg](b, `[...document.querySelectorAll("`+sel+`")].map(r => ({Key: r.dataset.key, FirstFail: r.dataset.firstFail,
		LastPass: r.dataset.lastPass, Fixed: r.dataset.fixed || "", Text: r.innerText}))`)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range regs {
		if r.Key == x.Regression {
			found = true
			if r.FirstFail != x.FirstFail || r.LastPass != x.LastPass || r.Fixed != x.Fixed {
				t.Errorf("%s row: %+v, want first fail %s, last pass %s, fixed %q", sel, r, x.FirstFail, x.LastPass, x.Fixed)
			}
			// The facts are visible, not only in attributes.
			for _, run := range []string{x.FirstFail, x.LastPass, x.Fixed} {
				if !strings.Contains(r.Text, run) {
					t.Errorf("%s row does not show %s: %q", sel, run, r.Text)
				}
			}
		}
	}
	if !found {
		t.Errorf("no %s row for %s among %+v", sel, x.Regression, regs)
	}
}
