package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

// RerunRequest reruns tests of a past run on the very kernels and
// initramfs images it booted (boot.json in each cell): no source, patch,
// kconfig, build or initramfs stage runs.
type RerunRequest struct {
	Run       string // run id under the config's results directory, or "latest"
	Cells     []string
	Tests     string // "suite:regexp", "regexp" (every suite), or "" (the cell's own selection)
	Count     int    // rounds (default 1)
	UntilFail bool   // stop at the first round that does not pass (Count caps it)
}

// pastRun finds a run directory and its results.
func (p *Pipeline) pastRun(id string) (string, *results.Run, error) {
	dir := filepath.Join(p.Cfg.Abs(p.Cfg.Results), id)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	r, err := results.Load(filepath.Join(dir, "results.json"))
	if err != nil {
		return "", nil, outcome.Errorf(outcome.ConfigError, "run %s: %w", id, err)
	}
	return dir, r, nil
}

// PastBoot is a cell's recorded boot, checked to be bootable again.
func (p *Pipeline) PastBoot(runID, cellID, dir string) (boot.Spec, boot.Record, error) {
	rd, r, err := p.pastRun(runID)
	if err != nil {
		return boot.Spec{}, boot.Record{}, err
	}
	for _, c := range r.Cells {
		if c.ID != cellID {
			continue
		}
		rec, err := boot.LoadRecord(filepath.Join(rd, c.Dir, "boot.json"))
		if err != nil {
			return boot.Spec{}, rec, outcome.Errorf(outcome.ConfigError, "cell %s of run %s has no recorded boot (it never booted, or predates boot.json): %w", cellID, r.ID, err)
		}
		spec, err := rec.Spec(dir)
		if err != nil {
			return spec, rec, outcome.Errorf(outcome.Infra, "cell %s of run %s: %w; rerun the cell from scratch: %s", cellID, r.ID, err, c.Rerun)
		}
		return spec, rec, nil
	}
	return boot.Spec{}, boot.Record{}, outcome.Errorf(outcome.ConfigError, "run %s has no cell %s (cells: %s)", r.ID, cellID, cellIDs(r))
}

func cellIDs(r *results.Run) string {
	var ids []string
	for _, c := range r.Cells {
		ids = append(ids, c.ID)
	}
	return strings.Join(ids, ", ")
}

// narrow selects tests of the recorded suites: "suite:regexp" keeps that
// suite with the regexp, a bare regexp applies to every suite.
func narrow(suites []guest.Suite, pattern string) ([]guest.Suite, error) {
	if pattern == "" {
		return suites, nil
	}
	want := guest.ParseSuiteSpec(pattern)
	bare := !strings.Contains(pattern, ":")
	if bare {
		want = guest.Suite{Tests: pattern}
	}
	if _, err := guest.CompileTests(want.Tests); err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "--test: %w", err)
	}
	var out []guest.Suite
	for _, s := range suites {
		if !bare && s.Name != want.Name {
			continue
		}
		s.Tests = want.Tests
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, outcome.Errorf(outcome.ConfigError, "--test %q: the run's cell has no suite %q", pattern, want.Name)
	}
	return out, nil
}

// Rerun boots a past run's cells again, rounds times, and records them as
// a new run: each round is a cell "<cell>#<n>" judged like any other.
func (p *Pipeline) Rerun(ctx context.Context, q RerunRequest) (*results.Run, *results.Store, error) {
	_, past, err := p.pastRun(q.Run)
	if err != nil {
		return nil, nil, err
	}
	rounds := max(q.Count, 1)
	if q.UntilFail && q.Count == 0 {
		rounds = 100
	}
	var cells []*results.Cell
	for _, c := range past.Cells {
		if len(q.Cells) > 0 && !matchAny(q.Cells, c.ID, c.Name) {
			continue
		}
		cells = append(cells, c)
	}
	if len(cells) == 0 {
		return nil, nil, outcome.Errorf(outcome.ConfigError, "--cell %s matches no cell of run %s (cells: %s)", strings.Join(q.Cells, ","), past.ID, cellIDs(past))
	}
	run := &results.Run{ID: results.NewID(time.Now()), Config: p.Cfg.Path, Source: past.Source, Started: time.Now().UTC(),
		Reason: fmt.Sprintf("rerun of %s", past.ID)}
	store, err := results.Create(p.Cfg.Abs(p.Cfg.Results), run)
	if err != nil {
		return nil, nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	p.store = store
	p.logf("", "rerun of %s: %d cell(s) × up to %d round(s), results in %s", past.ID, len(cells), rounds, store.Dir)
	failed := false
	for round := 1; round <= rounds && !failed && ctx.Err() == nil; round++ {
		for _, pc := range cells {
			id := fmt.Sprintf("%s#%d", pc.ID, round)
			rc := &results.Cell{ID: id, Name: pc.Name, Target: pc.Target, PatchSets: pc.PatchSets, Expect: pc.Expect,
				Dir: filepath.Join("cells", id), Tests: []*results.Test{}, KernelKey: pc.KernelKey, KernelCached: true,
				KernelVersion: pc.KernelVersion, KconfigSHA: pc.KconfigSHA, PatchStack: pc.PatchStack, InitrdCached: true,
				Rerun: fmt.Sprintf("kharness rerun %s --cell %s", past.ID, pc.ID)}
			store.Update(func(r *results.Run) { r.Cells = append(r.Cells, rc) })
			p.rerunCell(ctx, store, past.ID, pc, rc, q.Tests)
			if rc.Outcome.Failed() {
				failed = q.UntilFail
			}
		}
	}
	if ctx.Err() != nil {
		store.Update(func(r *results.Run) { r.Outcome = outcome.Interrupted })
	}
	if err := store.Close(); err != nil {
		return run, store, outcome.Errorf(outcome.Infra, "write results: %w", err)
	}
	return run, store, nil
}

func (p *Pipeline) rerunCell(ctx context.Context, store *results.Store, pastID string, pc, rc *results.Cell, tests string) {
	dir := store.CellDir(rc.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.fail(store, rc, stageErr(StageBoot, outcome.Errorf(outcome.Infra, "%w", err)))
		return
	}
	spec, _, err := p.PastBoot(pastID, pc.ID, dir)
	if err != nil {
		p.fail(store, rc, stageErr(StageBoot, err))
		return
	}
	if spec.Guest.Suites, err = narrow(spec.Guest.Suites, tests); err != nil {
		p.fail(store, rc, stageErr(StageBoot, err))
		return
	}
	var specs []string
	for _, s := range spec.Guest.Suites {
		specs = append(specs, s.Spec())
	}
	store.Update(func(*results.Run) {
		rc.Suites, rc.Accel, rc.Reproducer, rc.Initramfs = specs, string(spec.Accel), boot.Reproducer(spec), spec.Initrd
	})
	p.logf(rc.ID, "boot: the kernel and initramfs of %s (%s), suites %v", pastID, spec.Accel, specs)
	br, err := boot.Run(ctx, spec, func(e event.Event) {
		ev := e
		store.Append(results.Record{Cell: rc.ID, Kind: "guest", Event: &ev})
		if e.Type == event.Progress {
			return
		}
		var done *results.Test
		store.Update(func(*results.Run) { done = rc.Apply(e) })
		if done != nil {
			p.logf(rc.ID, "%s/%s: %s", done.Suite, done.Name, done.Outcome)
		}
	})
	if err != nil {
		p.fail(store, rc, stageErr(StageBoot, err))
		return
	}
	store.Update(func(*results.Run) {
		rc.BootSeconds, rc.FirstEventSeconds = br.Duration.Seconds(), br.FirstEvent.Seconds()
		rc.Finish(p.bootVerdict(br, rc))
	})
	p.logf(rc.ID, "done: %s in %.1fs", rc.Outcome, br.Duration.Seconds())
}

func matchAny(patterns []string, names ...string) bool {
	for _, p := range patterns {
		for _, n := range names {
			if ok, err := filepath.Match(p, n); ok || (err != nil && p == n) {
				return true
			}
		}
	}
	return false
}
