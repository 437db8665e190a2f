package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/run"
	"github.com/kharness/kharness/harness/shard"
)

// planFor splits the pipeline's matrix into n shards, packed by the
// durations in the history index at db (defaults where it has none, or
// when there is no index). n 0 picks the number of shards that keeps
// each under maxMinutes by the estimates.
func planFor(ctx context.Context, p *run.Pipeline, n int, db string, maxMinutes int) (*shard.Plan, error) {
	d := shard.Durations{Boot: map[string]float64{}, Test: map[string]float64{}}
	if _, err := os.Stat(db); err == nil {
		var herr error
		if d, herr = durations(ctx, db); herr != nil {
			return nil, outcome.Errorf(outcome.Infra, "%w", herr)
		}
	}
	tests := func(c config.MatrixCell) []string {
		var out []string
		for _, spec := range c.Suites {
			g := guest.ParseSuiteSpec(spec)
			re, err := guest.CompileTests(g.Tests)
			for _, t := range p.Catalog.Tests[g.Name] {
				if g.Tests == "" || (err == nil && re.MatchString(t)) {
					out = append(out, g.Name+"/"+t)
				}
			}
		}
		return out
	}
	auto := n <= 0
	if auto {
		n = 1
	}
	pl, err := shard.Make(p.Cfg.Path, p.Cfg.Matrix(p.Catalog), n, d, tests, p.Cfg.Duration, shard.DefaultDefaults)
	if err == nil && auto {
		// As many shards as keep each under maxMinutes (GitHub's job limit
		// is 6 h): the total estimate over the limit, rounded up.
		n = int(pl.Shards[0].Seconds/(float64(maxMinutes)*60)) + 1
		pl, err = shard.Make(p.Cfg.Path, p.Cfg.Matrix(p.Catalog), n, d, tests, p.Cfg.Duration, shard.DefaultDefaults)
	}
	if err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "%w", err)
	}
	return pl, nil
}

// durations are the mean of each cell's and test's last five timings
// (host faults left out); a cell's boot is its wall time less its tests.
func durations(ctx context.Context, path string) (shard.Durations, error) {
	d := shard.Durations{Boot: map[string]float64{}, Test: map[string]float64{}}
	db, err := history.Open(ctx, path)
	if err != nil {
		return d, err
	}
	defer db.Close()
	runs, obs, err := db.Load(ctx)
	if err != nil {
		return d, err
	}
	cells, err := db.Cells(ctx)
	if err != nil {
		return d, err
	}
	seq := map[string]int{}
	for _, r := range runs {
		seq[r.ID] = r.Seq
	}
	const last = 5
	testSum := map[[2]string]float64{} // (run, cell) → seconds of tests
	for k, os := range obs {
		if k.Suite == history.KernelSuite {
			continue
		}
		var xs []float64
		for _, o := range os {
			if o.Status != history.Error && o.DurationMS > 0 {
				xs = append(xs, float64(o.DurationMS)/1000)
			}
			testSum[[2]string{o.Run.ID, k.CellID()}] += float64(o.DurationMS) / 1000
		}
		if len(xs) > 0 {
			d.Test[k.CellID()+" "+k.TestName()] = mean(lastN(xs, last))
		}
	}
	sort.SliceStable(cells, func(i, j int) bool { return seq[cells[i].RunID] < seq[cells[j].RunID] })
	boots := map[string][]float64{}
	for _, c := range cells {
		if c.BootSeconds <= 0 || c.Outcome == outcome.Infra || c.Outcome == outcome.Interrupted {
			continue
		}
		b := c.BootSeconds - testSum[[2]string{c.RunID, c.CellID}]
		if b < 0 {
			b = 0
		}
		boots[c.CellID] = append(boots[c.CellID], b)
	}
	for id, xs := range boots {
		d.Boot[id] = mean(lastN(xs, last))
	}
	return d, nil
}

func lastN(xs []float64, n int) []float64 {
	if len(xs) > n {
		return xs[len(xs)-n:]
	}
	return xs
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func planCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	n := fs.Int("shards", 1, "test shards (at most one per cell, at most 256); 0: enough to keep each under --shard-minutes")
	maxMin := fs.Int("shard-minutes", 240, "with --shards 0: the longest a shard should take, by the estimates")
	db := fs.String("db", DefaultHistoryDB, "history index whose durations pack the shards")
	format := fs.String("format", "tests", "what to print: tests (the test jobs' matrix), builds (the build jobs' matrix) or plan (everything, for run --plan)")
	out := fs.String("o", "", "also write the whole plan to this file (for kharness run --shard i/N --plan FILE)")
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	cfg, err := c.load()
	if err != nil {
		return fail(stderr, err)
	}
	ctx, stop := signalContext(stderr, nil)
	defer stop()
	p, err := run.New(ctx, cfg, nil)
	if err != nil {
		return fail(stderr, err)
	}
	pl, err := planFor(ctx, p, *n, *db, *maxMin)
	if err != nil {
		return fail(stderr, err)
	}
	if *out != "" {
		b, _ := json.MarshalIndent(pl, "", "  ")
		if err := cache.WriteFile(*out, append(b, '\n')); err != nil {
			return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
		}
	}
	var v any
	switch *format {
	case "tests":
		v = pl.TestMatrix()
	case "builds":
		v = pl.BuildMatrix()
	case "plan":
		v = pl
	default:
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "--format %q: want tests, builds or plan", *format))
	}
	b, _ := json.Marshal(v)
	fmt.Fprintln(stdout, string(b))
	for _, s := range pl.Shards {
		fmt.Fprintf(stderr, "shard %d/%d: %d cell(s), ~%.0f min\n", s.Index, s.Count, len(s.Cells), s.Seconds/60)
	}
	fmt.Fprintf(stderr, "%d kernel(s) to build\n", len(pl.Builds))
	return 0
}
