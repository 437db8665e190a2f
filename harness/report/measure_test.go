package report

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/internal/runfixture"
)

// TestMeasureNightlyScale measures what the README quotes: importing 100
// nightly-sized runs (25 cells × 28 tests, made from the real baseline
// record: its tests, messages and metrics, renamed), the index's size and
// writing the report. KHARNESS_MEASURE=1 runs it (a few seconds).
func TestMeasureNightlyScale(t *testing.T) {
	if os.Getenv("KHARNESS_MEASURE") == "" {
		t.Skip("set KHARNESS_MEASURE=1")
	}
	base, err := runfixture.Load("20261203-184547-28943")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := base.Cells[0]
	var cells []*results.Cell
	for i := 0; i < 25; i++ {
		c := *tmpl
		c.Name = fmt.Sprintf("cell%02d", i)
		c.ID, c.Dir = c.Name+"."+c.Target, "cells/"+c.Name+"."+c.Target
		c.Tests = nil
		for j := 0; j < 28; j++ {
			tt := *tmpl.Tests[j%len(tmpl.Tests)]
			tt.Name = fmt.Sprintf("%s-%02d", tt.Name, j)
			c.Tests = append(c.Tests, &tt)
		}
		cells = append(cells, &c)
	}
	base.Cells = cells
	root := t.TempDir()
	t0 := base.Started.AddDate(0, 0, -100)
	for i := 0; i < 100; i++ {
		i := i
		_, err := runfixture.Write(root, base, fmt.Sprintf("2026%04d-020000-%d", 801+i, i), t0.AddDate(0, 0, i), func(r *results.Run) {
			// Some nights a test fails (every 7th, confirmed) or flakes.
			for k, c := range r.Cells {
				for j, tt := range c.Tests {
					if (i+k+j)%97 == 0 {
						tt.Outcome, tt.Message = outcome.TestFail, "synthetic failure"
						tt.Retry = &results.Retry{Outcome: outcome.TestFail}
						if i%2 == 0 {
							tt.Retry.Outcome = outcome.Pass
						}
					}
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "history.db")
	start := time.Now()
	db, err := history.Rebuild(ctx, path, []string{root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	imported := time.Since(start)
	defer db.Close()
	start = time.Now()
	again, err := db.Import(ctx, []string{root}, nil)
	if err != nil || len(again) != 100 || again[0].Action != "unchanged" {
		t.Fatalf("re-import: %v %v", err, again[:1])
	}
	reimported := time.Since(start)
	out := t.TempDir()
	start = time.Now()
	d, err := Build(ctx, db, nil, Options{Out: out})
	if err == nil {
		err = d.Write(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	reported := time.Since(start)
	db.Close()
	size := int64(0)
	for _, s := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + s); err == nil {
			size += fi.Size()
		}
	}
	html, _ := os.Stat(filepath.Join(out, "index.html"))
	t.Logf("100 runs × 25 cells × 28 tests (%d results): import %s, re-import (unchanged) %s, index %.1f MiB; report %s (index.html %d KiB, %d tracked results, %d open regressions, %d flaky)",
		100*25*29, imported.Round(time.Millisecond), reimported.Round(time.Millisecond), float64(size)/(1<<20),
		reported.Round(time.Millisecond), html.Size()/1024, len(d.Strips), len(d.Regs), len(d.Flaky))
}
