package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/run"
)

// runFlags are the nightly's flags of run and build: which part of the
// matrix this machine runs, and whether failed tests get a second boot.
type runFlags struct {
	retry bool
	only  []string
	shard string
	plan  string
	db    string
}

func (f *runFlags) register(fs *flag.FlagSet, cmd string) {
	fs.Var(&listFlag{vals: &f.only}, "only", "only these matrix cells, by id (name.target)")
	if cmd != "run" {
		return
	}
	fs.BoolVar(&f.retry, "retry", false, "boot every failed test once more, alone, in the same run (the nightly's suspects)")
}

// apply narrows the matrix and sets the retry policy.
func (f *runFlags) apply(ctx context.Context, p *run.Pipeline, stderr io.Writer) error {
	if len(f.only) > 0 {
		have := map[string]bool{}
		var ids []string
		for _, c := range p.Cfg.Matrix(p.Catalog) {
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
	}
	_ = ctx
	_ = fmt.Sprint
	return nil
}
