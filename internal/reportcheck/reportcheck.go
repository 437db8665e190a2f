// Package reportcheck checks a nightly report as a person sees it, in a
// real headless Chromium: the page makes no request but for itself, logs
// no error, shows the matrix, every chart drawn, and a regression's facts
// (first failing and last passing run, the fix) in the DOM. It serves the
// report's unit test and the end-to-end test of the nightly.
package reportcheck

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/internal/browser"
)

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
