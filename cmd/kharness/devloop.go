package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/devloop"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/progress"
	"github.com/kharness/kharness/harness/run"
	"github.com/kharness/kharness/harness/source"
)

// walkFlags are what patchcheck and bisect walk: --series SET (a patch
// set of the cell's stack, or appended to it) or --range A..B of a git
// source.
type walkFlags struct {
	c         common
	series    string
	gitRange  string
	stage     string
	keepGoing bool
	// bisect
	good, bad          string
	badTest, badCrash  string
	badOutcomes        []string
	confidence         float64
	maxRuns, probeRuns int
	stateFile          string
}

func (w *walkFlags) register(fs *flag.FlagSet, bisect bool) {
	w.c.register(fs)
	fs.StringVar(&w.series, "series", "", "the patch set to walk patch by patch, stacked on the cell's other sets")
	fs.StringVar(&w.gitRange, "range", "", "A..B: walk the commits of the git source (--source /path/to/tree) instead")
	if bisect {
		fs.StringVar(&w.good, "good", "", "the good end: a position in the series (0 = none of it) or, with --range, A")
		fs.StringVar(&w.bad, "bad", "", "the bad end: a position (default: the whole series) or, with --range, B")
		fs.StringVar(&w.badTest, "bad-test", "", "bad means this test failed (suite:regexp); other failures are skipped")
		fs.Var(&listFlag{vals: &w.badOutcomes}, "bad-outcome", "outcomes that count as bad (default test-failure,kernel-crash)")
		fs.StringVar(&w.badCrash, "bad-crash", "", "bad also needs the crash title to match this regexp")
		fs.Float64Var(&w.confidence, "confidence", 0.95, "target confidence that a good step is good")
		fs.IntVar(&w.maxRuns, "max-runs", 20, "cap on runs per step")
		fs.IntVar(&w.probeRuns, "probe-runs", 4, "runs at the bad end to measure how often it fails")
		fs.StringVar(&w.stateFile, "state", "", "state file to resume from (default bisect-state.json in the results directory)")
	} else {
		fs.StringVar(&w.stage, "stage", "test", "how far to take each patch: build, boot or test")
		fs.BoolVar(&w.keepGoing, "keep-going", false, "go on after the first bad patch")
	}
}

// walk sets up the pipeline and the walk; the cell is the config's first
// (narrow it with --target and --suite).
func (w *walkFlags) walk(ctx context.Context, stderr io.Writer) (*run.Pipeline, devloop.Walk, *progress.Tracker, error) {
	if (w.series == "") == (w.gitRange == "") {
		return nil, nil, nil, outcome.Errorf(outcome.ConfigError, "give --series SET or --range A..B")
	}
	cfg, err := w.c.load()
	if err != nil {
		return nil, nil, nil, err
	}
	track := progress.New(stderr, progress.Options{Live: isTerminal(stderr), Every: 30 * time.Second})
	p, err := run.New(ctx, cfg, track)
	if err != nil {
		track.Close()
		return nil, nil, nil, err
	}
	p.Track = track
	cells := cfg.Matrix(p.Catalog)
	if len(cells) == 0 {
		track.Close()
		return nil, nil, nil, outcome.Errorf(outcome.ConfigError, "the matrix is empty")
	}
	if len(cells) > 1 {
		fmt.Fprintf(stderr, "kharness: %d cells match, walking %s (narrow with --target/--cell)\n", len(cells), cells[0].ID)
	}
	if w.series != "" {
		s, err := devloop.Load(p, cells[0], w.series)
		return p, s, track, err
	}
	from, to, ok := strings.Cut(w.gitRange, "..")
	if !ok || from == "" || to == "" {
		track.Close()
		return nil, nil, nil, outcome.Errorf(outcome.ConfigError, "--range %q: want A..B", w.gitRange)
	}
	spec, err := source.Parse(cfg.Source)
	if err != nil || spec.Kind != source.GitTree {
		track.Close()
		return nil, nil, nil, outcome.Errorf(outcome.ConfigError, "--range needs a git source (--source /path/to/tree), not %q", cfg.Source)
	}
	g, err := devloop.LoadGitRange(ctx, p, cells[0], spec.Path, from, to)
	return p, g, track, err
}

// patchcheckCmd: does every patch build, boot and pass on its own?
func patchcheckCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("patchcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var w walkFlags
	w.register(fs, false)
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	stage := devloop.Stage(w.stage)
	if stage != devloop.StageBuild && stage != devloop.StageBoot && stage != devloop.StageTest {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "--stage %q: want build, boot or test", w.stage))
	}
	ctx, stop := signalContext(stderr, nil)
	defer stop()
	_, walk, track, err := w.walk(ctx, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	rep, r, err := devloop.Check(ctx, devloop.CheckRequest{Walk: walk, Stage: stage, KeepGoing: w.keepGoing}, track)
	track.Close()
	if err != nil && rep == nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout)
	rep.Table(stdout)
	fmt.Fprintf(stdout, "results: %s (patchcheck.json, junit.xml; %.0fs)\n", rep.RunDir, rep.Seconds)
	if err != nil {
		return fail(stderr, err)
	}
	if ctx.Err() != nil || (r != nil && r.Outcome == outcome.Interrupted) {
		return outcome.Interrupted.ExitCode()
	}
	if rep.FirstBad > 0 {
		return outcome.Worst(rep.Patches[rep.FirstBad-1].Outcome, outcome.TestFail).ExitCode()
	}
	return 0
}

// bisectCmd: which patch (or commit) broke it, and how sure are we?
func bisectCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bisect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var w walkFlags
	w.register(fs, true)
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	rule := devloop.Rule{Test: w.badTest, Crash: w.badCrash}
	for _, o := range w.badOutcomes {
		if !outcome.Outcome(o).Valid() {
			return fail(stderr, outcome.Errorf(outcome.ConfigError, "--bad-outcome %q: not an outcome", o))
		}
		rule.Outcomes = append(rule.Outcomes, outcome.Outcome(o))
	}
	if w.badTest != "" {
		if err := rule.Validate(); err != nil {
			return fail(stderr, outcome.Errorf(outcome.ConfigError, "%w", err))
		}
	}
	ctx, stop := signalContext(stderr, nil)
	defer stop()
	if w.gitRange == "" && (w.good != "" || w.bad != "") && w.series == "" {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "give --series SET (positions) or --range A..B (revisions)"))
	}
	p, walk, track, err := w.walk(ctx, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	defer track.Close()
	good, bad := 0, walk.Len()
	if w.series != "" {
		if w.good != "" {
			if _, err := fmt.Sscan(w.good, &good); err != nil {
				return fail(stderr, outcome.Errorf(outcome.ConfigError, "--good %q: want a position in the series", w.good))
			}
		}
		if w.bad != "" {
			if _, err := fmt.Sscan(w.bad, &bad); err != nil {
				return fail(stderr, outcome.Errorf(outcome.ConfigError, "--bad %q: want a position in the series", w.bad))
			}
		}
	}
	state := w.stateFile
	if state == "" {
		state = filepath.Join(p.Cfg.Abs(p.Cfg.Results), "bisect-state.json")
	}
	st, err := devloop.Bisect(ctx, devloop.BisectRequest{Steps: walk, ResultsDir: p.Cfg.Abs(p.Cfg.Results), Good: good, Bad: bad,
		Rule: rule, Confidence: w.confidence, MaxRuns: w.maxRuns, ProbeRuns: w.probeRuns, StateFile: state}, track)
	track.Close()
	if st != nil {
		st.Report(stdout, walk)
		fmt.Fprintf(stdout, "state: %s\n", state)
	}
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}
