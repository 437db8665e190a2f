// Package devloop is a kernel developer's day with a patch series:
// patchcheck (does every patch build, boot and pass on its own, not only
// the whole stack?) and bisect (which patch broke it, and how sure are
// we?). Both walk prefixes of a series stacked on the rest of a cell's
// patch stack, in the source's one work tree, so each step is an
// incremental build of what the next patch touches.
package devloop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/kconfig"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/patch"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/run"
)

// Stage is how far patchcheck takes each patch.
type Stage string

// The stages, in order.
const (
	StageBuild Stage = "build"
	StageBoot  Stage = "boot"
	StageTest  Stage = "test"
)

// Series is a patch set cut into its prefixes and the stack around it.
type Series struct {
	p      *run.Pipeline
	Cell   config.MatrixCell // target, suites, the whole stack's names
	Before []*patch.Set      // the sets before the walked one
	Set    *patch.Set        // the walked set
	Rest   []*patch.Set      // the sets after it
}

// Load finds set in the cell's stack (appending it when the stack lacks
// it) and loads every set.
func Load(p *run.Pipeline, c config.MatrixCell, set string) (*Series, error) {
	root := p.Cfg.Abs(p.Cfg.Dirs.Patches)
	s := &Series{p: p, Cell: c}
	found := false
	for _, name := range c.PatchSets {
		ps, err := patch.Load(root, name)
		if err != nil {
			return nil, outcome.Errorf(outcome.PatchFail, "%w", err)
		}
		switch {
		case name == set:
			s.Set, found = ps, true
		case found:
			s.Rest = append(s.Rest, ps)
		default:
			s.Before = append(s.Before, ps)
		}
	}
	if !found {
		ps, err := patch.Load(root, set)
		if err != nil {
			return nil, outcome.Errorf(outcome.ConfigError, "--patchset: %w", err)
		}
		s.Set = ps
		s.Cell.PatchSets = append(append([]string(nil), c.PatchSets...), set)
	}
	if len(s.Set.Patches) == 0 {
		return nil, outcome.Errorf(outcome.ConfigError, "patch set %s has no patches", set)
	}
	return s, nil
}

// Len is the number of patches in the walked set.
func (s *Series) Len() int { return len(s.Set.Patches) }

// Walk is what patchcheck and bisect walk: a patch series stacked on a
// cell's stack, or the commits of a git range.
type Walk interface {
	Steps
	Label() string // the set or range walked
	Base() config.MatrixCell
	Pipeline() *run.Pipeline
	Subject(i int) (subject, file string) // of the change that position i adds
	// Kernel builds position i as cell c (dir is its directory).
	Kernel(ctx context.Context, i int, c config.MatrixCell, dir string) (*run.Kernel, error)
}

// Label names the walked set.
func (s *Series) Label() string { return s.Set.Name }

// Base is the cell the series is stacked in.
func (s *Series) Base() config.MatrixCell { return s.Cell }

// Pipeline runs the steps.
func (s *Series) Pipeline() *run.Pipeline { return s.p }

// Subject is patch i's.
func (s *Series) Subject(i int) (string, string) {
	pt := s.Set.Patches[i-1]
	return pt.Subject, pt.File
}

// Kernel builds the stack with the first i patches; a prefix may not yet
// have the Kconfig entries its set's fragment names (the whole set must).
func (s *Series) Kernel(ctx context.Context, i int, c config.MatrixCell, dir string) (*run.Kernel, error) {
	return s.p.KernelOf(ctx, c, s.Prefix(i), dir, run.KernelOpts{Jobs: s.p.Cfg.Jobs, AllowDropped: i < s.Len()})
}

// Prefix is the stack with the first n patches of the walked set.
func (s *Series) Prefix(n int) []*patch.Set {
	out := append([]*patch.Set(nil), s.Before...)
	if n > 0 {
		cut := *s.Set
		cut.Patches = s.Set.Patches[:n]
		out = append(out, &cut)
	}
	return append(out, s.Rest...)
}

// PatchResult is one patch's check.
type PatchResult struct {
	Index   int    `json:"index"` // 1-based
	Subject string `json:"subject"`
	File    string `json:"file"`
	// Bad and Reason say whether the patch fails the check, and why.
	Bad    bool   `json:"bad"`
	Reason string `json:"reason,omitempty"`
	// Outcome is the step's cell outcome (build, boot or the tests').
	Outcome outcome.Outcome `json:"outcome"`
	// LostSymbols are kconfig options the parent had that this patch's
	// .config lost or changed ("CONFIG_X=y -> n").
	LostSymbols []string `json:"lost_symbols,omitempty"`
	// NewWarnings are compiler warnings the parent's build did not have,
	// keyed by file and message (line numbers stripped).
	NewWarnings  []string `json:"new_warnings,omitempty"`
	FailedTests  []string `json:"failed_tests,omitempty"`
	BuildSeconds float64  `json:"build_seconds"`
	Seconds      float64  `json:"seconds"`
	Cell         string   `json:"cell"` // its cell in the run directory
}

// Report is a whole patchcheck.
type Report struct {
	Set      string        `json:"set"`
	Target   string        `json:"target"`
	Stage    Stage         `json:"stage"`
	Patches  []PatchResult `json:"patches"`
	FirstBad int           `json:"first_bad,omitempty"` // 1-based; 0 when none
	Seconds  float64       `json:"seconds"`
	RunDir   string        `json:"run_dir"`
}

// CheckRequest asks for a patchcheck.
type CheckRequest struct {
	Walk      Walk
	Stage     Stage
	KeepGoing bool
}

// warningKeyRe strips line and column from "file:line:col: warning: msg".
var warningKeyRe = regexp.MustCompile(`^([^:]+):\d+(?::\d+)?: (.*)$`)

// warningQuotes are gcc's quotes in a UTF-8 locale: a kernel cached from
// a build run in one says ‘x’ where today's C-locale build says 'x'.
var warningQuotes = strings.NewReplacer("\u2018", "'", "\u2019", "'")

func warningKey(w string) string {
	w = warningQuotes.Replace(w)
	if m := warningKeyRe.FindStringSubmatch(w); m != nil {
		return m[1] + ": " + m[2]
	}
	return w
}

// warningsByFile groups warning keys by file: an incremental build reports
// the warnings of the files it recompiled, and those replace what the
// parent's builds said of the same files.
func warningsByFile(ws []string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, w := range ws {
		k := warningKey(w)
		file, _, _ := strings.Cut(k, ": ")
		if out[file] == nil {
			out[file] = map[string]bool{}
		}
		out[file][k] = true
	}
	return out
}

// lostSymbols lists options set in the parent's .config that the child's
// drops or changes.
func lostSymbols(parent, child []byte) []string {
	pc, cc := kconfig.Parse(parent), kconfig.Parse(child)
	var out []string
	for name, pv := range pc {
		if pv == "n" {
			continue
		}
		cv, ok := cc[name]
		if !ok {
			cv = "n"
		}
		if cv != pv {
			out = append(out, fmt.Sprintf("%s=%s -> %s", name, pv, cv))
		}
	}
	sort.Strings(out)
	return out
}

// Check walks the series patch by patch: the parent (the stack without
// the walked set) first, then each prefix. For each patch: does it apply,
// which kconfig symbols does it lose, which new warnings does it add,
// does it boot, do the tests pass. It stops at the first bad patch unless
// KeepGoing. Results stream to a run directory as they come.
func Check(ctx context.Context, q CheckRequest, log io.Writer) (*Report, *results.Run, error) {
	start := time.Now()
	s := q.Walk
	p := s.Pipeline()
	c := s.Base()
	c.Expect = nil
	rep := &Report{Set: s.Label(), Target: c.Target, Stage: q.Stage}
	r := &results.Run{ID: results.NewID(time.Now()), Config: p.Cfg.Path, Source: p.Cfg.Source, Started: time.Now().UTC(),
		Reason: fmt.Sprintf("patchcheck of %s on %s", s.Label(), c.Target)}
	store, err := results.Create(p.Cfg.Abs(p.Cfg.Results), r)
	if err != nil {
		return nil, nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	rep.RunDir = store.Dir
	write := func() {
		rep.Seconds = time.Since(start).Seconds()
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := cache.WriteFile(store.Dir+"/patchcheck.json", append(b, '\n')); err != nil {
			fmt.Fprintf(log, "patchcheck: %v\n", err)
		}
	}
	// The parent: the stack without the walked set, built (or found) so
	// that the first patch is compared with something.
	fmt.Fprintf(log, "patchcheck: parent: %s\n", s.Name(0))
	parentCell := c
	parentCell.ID = "parent." + c.Target
	parent, err := s.Kernel(ctx, 0, parentCell, store.CellDir(parentCell.ID))
	if err != nil {
		store.Close()
		return nil, r, fmt.Errorf("the parent stack does not build, nothing to compare with: %w", err)
	}
	parent.Release()
	warn := warningsByFile(parent.Warnings)
	prevConfig := parent.Config
	for i := 1; i <= s.Len() && ctx.Err() == nil; i++ {
		subject, file := s.Subject(i)
		stepStart := time.Now()
		cell := c
		cell.ID = fmt.Sprintf("patch-%02d.%s", i, c.Target)
		cell.Name = fmt.Sprintf("patch-%02d", i)
		rc := &results.Cell{ID: cell.ID, Name: cell.Name, Target: c.Target, PatchSets: c.PatchSets, Suites: c.Suites,
			Dir: "cells/" + cell.ID, Tests: []*results.Test{}, Rerun: file}
		store.Update(func(r *results.Run) { r.Cells = append(r.Cells, rc) })
		res := PatchResult{Index: i, Subject: subject, File: file, Cell: cell.ID}
		fmt.Fprintf(log, "patchcheck: [%d/%d] %s\n", i, s.Len(), subject)
		k, err := s.Kernel(ctx, i, cell, store.CellDir(cell.ID))
		if err != nil {
			p.Fail(store, rc, err)
			res.Bad, res.Outcome, res.Reason = true, rc.Outcome, rc.Reason
		} else {
			res.BuildSeconds = k.Timings[run.StageBuild]
			res.LostSymbols = lostSymbols(prevConfig, k.Config)
			now := warningsByFile(k.Warnings)
			for file, ws := range now {
				for w := range ws {
					if !warn[file][w] {
						res.NewWarnings = append(res.NewWarnings, w)
					}
				}
				warn[file] = ws // this file was recompiled: its warnings now
			}
			sort.Strings(res.NewWarnings)
			prevConfig = k.Config
			var why []string
			if len(res.NewWarnings) > 0 {
				why = append(why, fmt.Sprintf("%d new warning(s): %s", len(res.NewWarnings), strings.Join(res.NewWarnings, "; ")))
			}
			if len(res.LostSymbols) > 0 {
				why = append(why, fmt.Sprintf("kconfig symbols lost: %s", strings.Join(res.LostSymbols, ", ")))
			}
			res.Outcome = outcome.Pass
			if q.Stage != StageBuild {
				bc := cell
				if q.Stage == StageBoot {
					bc.Suites = []string{"smoke"}
				}
				store.Update(func(*results.Run) { rc.Suites = bc.Suites })
				p.BootCell(ctx, store, bc, rc, k)
				res.Outcome = rc.Outcome
				for _, t := range rc.Tests {
					if t.Outcome.Failed() {
						res.FailedTests = append(res.FailedTests, fmt.Sprintf("%s/%s (%s)", t.Suite, t.Name, t.Outcome))
					}
				}
				if rc.Outcome.Failed() {
					why = append(why, fmt.Sprintf("%s: %s", rc.Outcome, rc.Reason))
				}
			} else {
				store.Update(func(*results.Run) { rc.SetOutcome(outcome.Pass, "", "") })
			}
			res.Bad, res.Reason = len(why) > 0, strings.Join(why, "; ")
			if res.Bad && !rc.Outcome.Failed() {
				// a warning or a lost symbol fails the patch, and its cell
				store.Update(func(*results.Run) { rc.SetOutcome(outcome.BuildFail, "build", res.Reason) })
			}
		}
		k.Release()
		res.Seconds = time.Since(stepStart).Seconds()
		rep.Patches = append(rep.Patches, res)
		if res.Bad && rep.FirstBad == 0 {
			rep.FirstBad = i
		}
		write()
		if res.Bad && !q.KeepGoing {
			break
		}
	}
	if ctx.Err() != nil {
		store.Update(func(r *results.Run) { r.Outcome = outcome.Interrupted })
	}
	write()
	if err := store.Close(); err != nil {
		return rep, r, outcome.Errorf(outcome.Infra, "write results: %w", err)
	}
	return rep, r, nil
}

// Table prints the per-patch table and names the first bad patch.
func (rep *Report) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tPATCH\tBUILD\tOUTCOME\tVERDICT")
	for _, r := range rep.Patches {
		v := "ok"
		if r.Bad {
			v = "BAD"
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0fs\t%s\t%s\n", r.Index, trunc(r.Subject, 60), r.BuildSeconds, r.Outcome, v)
	}
	tw.Flush()
	for _, r := range rep.Patches {
		if !r.Bad {
			continue
		}
		fmt.Fprintf(w, "\npatch %d (%s): %s\n", r.Index, r.Subject, r.Reason)
		for _, nw := range r.NewWarnings {
			fmt.Fprintf(w, "  new warning: %s\n", nw)
		}
		for _, ls := range r.LostSymbols {
			fmt.Fprintf(w, "  kconfig lost: %s\n", ls)
		}
		for _, ft := range r.FailedTests {
			fmt.Fprintf(w, "  failed: %s\n", ft)
		}
	}
	if rep.FirstBad > 0 {
		fmt.Fprintf(w, "\nfirst bad patch: %d (%s)\n", rep.FirstBad, rep.Patches[rep.FirstBad-1].Subject)
	} else {
		fmt.Fprintf(w, "\nevery patch checked is good (%d of %s)\n", len(rep.Patches), rep.Set)
	}
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
