package main

import (
	"context"
	"flag"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/run"
	"github.com/kharness/kharness/harness/shard"
)

// runFlags are the nightly's flags of run and build: which part of the
// matrix this machine runs, and whether failed tests get a second boot.
type runFlags struct {
	retry bool
	only  []string
	shard string
	plan  string
	db    string
	known string
}

func (f *runFlags) register(fs *flag.FlagSet, cmd string) {
	fs.Var(&listFlag{vals: &f.only}, "only", "only these matrix cells, by id (name.target)")
	fs.StringVar(&f.shard, "shard", "", "run shard i/N of the matrix (kharness plan), recorded for kharness merge")
	fs.StringVar(&f.plan, "plan", "", "with --shard: the plan file kharness plan -o wrote (default: plan now, from --db)")
	fs.StringVar(&f.db, "db", DefaultHistoryDB, "history index: durations for --shard, known states for --retry")
	if cmd != "run" {
		return
	}
	fs.BoolVar(&f.retry, "retry", false, "boot every suspect (a failed test history does not already know as failing) once more, alone, in the same run")
	fs.StringVar(&f.known, "known", DefaultKnownIssues, "with --retry: known issues (their failures are not retried)")
}

// apply narrows the matrix and sets the retry policy.
func (f *runFlags) apply(ctx context.Context, p *run.Pipeline, stderr io.Writer) error {
	all := p.Cfg.Matrix(p.Catalog)
	if f.shard != "" {
		if len(f.only) > 0 {
			return outcome.Errorf(outcome.ConfigError, "--shard and --only: give one")
		}
		i, n, err := shard.ParseSpec(f.shard)
		if err != nil {
			return outcome.Errorf(outcome.ConfigError, "%w", err)
		}
		var pl *shard.Plan
		if f.plan != "" {
			if pl, err = shard.Load(f.plan); err == nil {
				err = pl.Check(all)
			}
			if err != nil {
				return outcome.Errorf(outcome.ConfigError, "--plan: %w", err)
			}
		} else if pl, err = planFor(ctx, p, n, f.db, 0); err != nil {
			return err
		}
		s, err := pl.Shard(i, n)
		if err != nil {
			return outcome.Errorf(outcome.ConfigError, "--shard %s: %w", f.shard, err)
		}
		f.only = s.Cells
		p.Shard = &results.Shard{Index: i, Count: n, Matrix: pl.Matrix}
	}
	if len(f.only) > 0 {
		have := map[string]bool{}
		var ids []string
		for _, c := range all {
			have[c.ID] = true
			ids = append(ids, c.ID)
		}
		for _, id := range f.only {
			if !have[id] {
				return outcome.Errorf(outcome.ConfigError, "--only %s: no such cell in %s (cells: %s)", id, p.Cfg.Path, strings.Join(ids, ", "))
			}
		}
		p.Cfg.Only = f.only
	}
	if f.retry {
		p.Retry = run.RetryFailed
		if _, err := os.Stat(f.db); err == nil {
			pol, err := suspects(ctx, f.db, f.known, p.Cfg.Source)
			if err != nil {
				return outcome.Errorf(outcome.Infra, "--retry: %w", err)
			}
			p.Retry = pol
		}
	}
	return nil
}

// suspects is the retry policy with history: a failed test is retried
// unless history already knows it failing (an open regression, never
// passed, a known issue): only first failures need confirming.
func suspects(ctx context.Context, db, knownPath, source string) (func(*results.Cell, *results.Test) bool, error) {
	h, err := history.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ks, err := known.Load(knownPath)
	if err != nil {
		return nil, err
	}
	runs, obs, err := h.Load(ctx)
	if err != nil {
		return nil, err
	}
	a := history.Analyze(history.Refs(runs), obs, ks, history.DefaultPolicy, time.Now())
	settled := map[history.Key]bool{}
	for _, t := range a.Tracks {
		switch t.State {
		case history.StateRegressed, history.StateFailing, history.StateKnown:
			settled[t.Key] = true
		}
	}
	return func(c *results.Cell, t *results.Test) bool {
		k := history.Key{Source: source, Cell: c.Name, Target: c.Target, Suite: t.Suite, Test: t.Name}
		return run.RetryFailed(c, t) && !settled[k]
	}, nil
}
