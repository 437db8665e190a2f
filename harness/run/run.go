// Package run drives the pipeline for a whole matrix: config → source →
// patch → kconfig → build → initramfs → boot → results. Each stage is its
// own package; this one decides what can be reused (every distinct kernel
// is built once per run and cached across runs), records every step as it
// happens and maps each failure to its outcome.
package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-multierror"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/build"
	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/catalog"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/initramfs"
	"github.com/kharness/kharness/harness/kconfig"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/patch"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/source"
	"github.com/kharness/kharness/harness/target"
)

// Pipeline holds what the stages share within one invocation.
type Pipeline struct {
	Cfg      *config.Config
	Catalog  config.Catalog
	Suites   map[string]catalog.Suite
	Progress io.Writer // one line per stage event, for people
	// Self is the kharness binary, for stages that run in a child process
	// of their own (the initramfs build); empty runs them in-process.
	Self string
	// Retry, when set, picks the failed tests Matrix boots once more,
	// alone, before the run is closed (retry.go).
	Retry func(*results.Cell, *results.Test) bool
	// Shard is recorded in the run when it is one part of a matrix.
	Shard *results.Shard

	cacheDir string
	store    *results.Store // the run being written, for Abort
	pristine *source.Pristine
	compiler string
	accels   map[string]accelChoice // per QEMU binary
	kernels  map[string]*Kernel     // per build key, built once per run
}

type accelChoice struct {
	accel boot.Accel
	why   string
}

// Kernel is a built (or cached) kernel image.
type Kernel struct {
	Key       string
	Dir       string // cache entry: bzImage, config, build.log
	Image     string
	Config    []byte
	Cached    bool
	Seconds   float64
	Warnings  []string
	Version   string
	ConfigSHA string
	Notes     []string // what the cache repaired
	// SourceID and PatchStack identify the source and the patches, for
	// the run's record.
	SourceID, PatchStack string
}

// New loads the catalog (suites, their declared tests, patch sets) and
// validates the config against it; every problem is reported at once, as
// a config error.
func New(ctx context.Context, cfg *config.Config, progress io.Writer) (*Pipeline, error) {
	cacheDir, err := cfg.CacheDir()
	if err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "%w", err)
	}
	p := &Pipeline{Cfg: cfg, Progress: progress, cacheDir: cacheDir,
		accels: map[string]accelChoice{}, kernels: map[string]*Kernel{}, Suites: map[string]catalog.Suite{}}
	ps, err := patch.Discover(cfg.Abs(cfg.Dirs.Patches))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, outcome.Errorf(outcome.ConfigError, "patch sets: %w", err)
	}
	ss, err := catalog.Suites(cfg.Abs(cfg.Dirs.Suites))
	if err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "%w", err)
	}
	for _, s := range ss {
		p.Suites[s.Name] = s
	}
	var top []string
	for _, n := range ps {
		if !strings.Contains(n, "/") {
			top = append(top, n)
		}
	}
	// The suites' declared tests check every test regexp; a suite that
	// does not list is reported with the config's own problems.
	tests, listErr := catalog.Tests(ctx, cfg.Abs(cfg.Dirs.Module), initramfs.Module, p.cacheDir, catalog.Names(ss, false))
	p.Catalog = config.Catalog{PatchSets: ps, DefaultPatchSets: top,
		Suites: catalog.Names(ss, false), DefaultSuites: catalog.Names(ss, true), Tests: tests}
	var errs *multierror.Error
	if listErr != nil {
		errs = multierror.Append(errs, fmt.Errorf("list the suites' tests (module %s): %w", cfg.Abs(cfg.Dirs.Module), listErr))
	}
	if err := cfg.Validate(p.Catalog); err != nil {
		errs = multierror.Append(errs, err)
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, &outcome.Error{Outcome: outcome.ConfigError, Err: err}
	}
	return p, nil
}

func (p *Pipeline) logf(cell, format string, args ...any) {
	if p.Progress == nil {
		return
	}
	prefix := "kharness"
	if cell != "" {
		prefix = cell
	}
	fmt.Fprintf(p.Progress, "[%s] %s\n", prefix, Printable(fmt.Sprintf(format, args...)))
}

// Printable drops what a terminal would interpret (escape sequences,
// control characters other than newline and tab) from text that may come
// from the guest.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || (r >= 0x20 && r != 0x7f && !(r >= 0x80 && r < 0xa0) && r != utf8.RuneError) {
			return r
		}
		if r == 0x1b {
			return '^'
		}
		return -1
	}, s)
}

// Source resolves and imports the kernel source once per pipeline.
func (p *Pipeline) Source(ctx context.Context, log io.Writer) (*source.Pristine, error) {
	if p.pristine != nil {
		return p.pristine, nil
	}
	spec, err := source.Parse(p.Cfg.Source)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, p.Cfg.Timeouts.Command)
	defer cancel()
	pr, err := source.Prepare(sctx, p.cacheDir, spec, p.lockWait(""), log)
	if err != nil && sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = outcome.Errorf(outcome.Infra, "importing the source took longer than timeouts.command (%s): %w", p.Cfg.Timeouts.Command, err)
	}
	if err != nil {
		return nil, err
	}
	p.pristine = pr
	p.compiler = build.CompilerID(ctx)
	return pr, nil
}

// Stage names, as recorded in results.
const (
	StageSource    = "source"
	StagePatch     = "patch"
	StageKconfig   = "kconfig"
	StageBuild     = "build"
	StageInitramfs = "initramfs"
	StageBoot      = "boot"
	StageTests     = "tests"
)

// StageError is a failure with the stage it happened in.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

func stageErr(stage string, err error) error {
	if err == nil {
		return nil
	}
	return &StageError{Stage: stage, Err: err}
}

// fragments returns the kconfig fragments for a cell, in merge order:
// common, target, each patch set, every suite. Missing optional files are
// skipped; a malformed one is a config error naming file and line.
func (p *Pipeline) fragments(c config.MatrixCell) ([]kconfig.Fragment, error) {
	dir := p.Cfg.Abs(p.Cfg.Dirs.Kconfigs)
	paths := []string{filepath.Join(dir, "common.config"), filepath.Join(dir, "target", c.Target+".config")}
	for _, ps := range c.PatchSets {
		paths = append(paths, filepath.Join(dir, "patchset", ps+".config"))
	}
	// Every suite's fragment, not only the selected ones: a kernel is
	// defined by (source, target, patch stack), so running one suite alone
	// boots the very kernel the full matrix tested.
	var suites []string
	for name := range p.Suites {
		suites = append(suites, name)
	}
	sort.Strings(suites)
	for _, name := range suites {
		paths = append(paths, filepath.Join(dir, "suite", name+".config"))
	}
	var out []kconfig.Fragment
	var errs *multierror.Error
	for _, path := range paths {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			continue
		}
		f, err := kconfig.ParseFragment(path)
		if err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		if rel, err := filepath.Rel(p.Cfg.Root, path); err == nil {
			f.Path = rel
			for i := range f.Options {
				f.Options[i].File = rel
			}
		}
		out = append(out, f)
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "kconfig fragments: %w", err)
	}
	return out, nil
}

func fragmentsText(fs []kconfig.Fragment) string {
	var b strings.Builder
	for _, f := range fs {
		for _, o := range f.Options {
			fmt.Fprintf(&b, "%s=%s\n", o.Name, o.Value)
		}
	}
	return b.String()
}

// Kernel produces the kernel for a cell, from cache when nothing that goes
// into it changed: in that case no make (not even olddefconfig) runs.
// Artefacts (patch/kconfig/build logs, .config) are copied to cellDir.
func (p *Pipeline) Kernel(ctx context.Context, c config.MatrixCell, cellDir string) (*Kernel, error) {
	t, err := target.Lookup(c.Target)
	if err != nil {
		return nil, stageErr(StageSource, outcome.Errorf(outcome.ConfigError, "%w", err))
	}
	if err := os.MkdirAll(cellDir, 0o755); err != nil {
		return nil, stageErr(StageSource, err)
	}
	srcLog, err := os.Create(filepath.Join(cellDir, "source.log"))
	if err != nil {
		return nil, stageErr(StageSource, err)
	}
	defer srcLog.Close()
	pr, err := p.Source(ctx, srcLog)
	if err != nil {
		return nil, stageErr(StageSource, err)
	}
	var sets []*patch.Set
	var loadErrs *multierror.Error
	for _, name := range c.PatchSets {
		s, err := patch.Load(p.Cfg.Abs(p.Cfg.Dirs.Patches), name)
		if err != nil {
			loadErrs = multierror.Append(loadErrs, err)
			continue
		}
		sets = append(sets, s)
	}
	if err := loadErrs.ErrorOrNil(); err != nil {
		return nil, stageErr(StagePatch, outcome.Errorf(outcome.PatchFail, "%w", err))
	}
	frags, err := p.fragments(c)
	if err != nil {
		return nil, stageErr(StageKconfig, err)
	}
	treeKey := cache.Key("tree", pr.ID, patch.Digest(sets))
	cfgKey := cache.Key("kconfig", treeKey, t.Name, t.Arch, t.BaseConfig, fragmentsText(frags))
	cfgPath := filepath.Join(p.cacheDir, "configs", cfgKey[:24]+".config")
	// The O= directory lives inside the work tree so that the relative
	// path from it to the sources is the same for every tree, which keeps
	// ccache hits across patch combinations.
	buildDir := filepath.Join(source.TreeDir(p.cacheDir, treeKey), ".kharness-build", t.Name)

	// tree checks out (or finds) the patched work tree and holds its lock
	// until the caller releases it. Locks are taken in one order only,
	// kernel entry before tree (GetImage), and the tree's lock is never
	// held while waiting for a kernel entry's, so two runs cannot deadlock.
	tree := func() (*source.Worktree, error) {
		w, err := pr.Worktree(ctx, p.cacheDir, treeKey, p.Cfg.KeepTrees, p.lockWait(c.ID), srcLog)
		if err != nil {
			return nil, stageErr(StageSource, err)
		}
		if !w.Ready && len(sets) > 0 {
			plog, err := os.Create(filepath.Join(cellDir, "patch.log"))
			if err != nil {
				w.Release()
				return nil, stageErr(StagePatch, outcome.Errorf(outcome.Infra, "%w", err))
			}
			p.logf(c.ID, "patch: applying %d set(s) %v", len(sets), c.PatchSets)
			actx, cancel := context.WithTimeout(ctx, p.Cfg.Timeouts.Command)
			err = patch.Apply(actx, w.Dir, sets, plog)
			cancel()
			plog.Close()
			if err != nil {
				w.Release()
				// The tree is left unmarked: the next run starts it afresh.
				return nil, stageErr(StagePatch, err)
			}
		}
		if !w.Ready {
			if err := w.MarkReady(); err != nil {
				w.Release()
				return nil, stageErr(StagePatch, outcome.Errorf(outcome.Infra, "%w", err))
			}
		}
		return w, nil
	}
	if len(sets) > 0 {
		// Patch application is checked every run, even when everything is
		// cached, only by building the tree when it is missing.
		p.logf(c.ID, "patch: %d set(s), digest %s", len(sets), patch.Digest(sets)[:12])
	}

	cfgData, err := os.ReadFile(cfgPath)
	if err != nil {
		w, err := tree()
		if err != nil {
			return nil, err
		}
		klog, err := os.Create(filepath.Join(cellDir, "kconfig.log"))
		if err != nil {
			w.Release()
			return nil, stageErr(StageKconfig, err)
		}
		p.logf(c.ID, "kconfig: %s + %d fragment(s) → olddefconfig", t.BaseConfig, len(frags))
		kctx, cancel := context.WithTimeout(ctx, p.Cfg.Timeouts.Command)
		cfgData, err = kconfig.Configure(kctx, kconfig.Request{Src: w.Dir, BuildDir: buildDir, Arch: t.Arch,
			Base: t.BaseConfig, Fragments: frags, Log: klog})
		cancel()
		klog.Close()
		w.Release()
		if cfgData != nil {
			os.WriteFile(filepath.Join(cellDir, "config"), cfgData, 0o644)
		}
		if err != nil {
			return nil, stageErr(StageKconfig, err)
		}
		if err := cache.WriteFile(cfgPath, cfgData); err != nil {
			return nil, stageErr(StageKconfig, err)
		}
	} else {
		p.logf(c.ID, "kconfig: cached %s", cfgKey[:12])
	}
	os.WriteFile(filepath.Join(cellDir, "config"), cfgData, 0o644)
	sum := sha256.Sum256(cfgData)
	k := &Kernel{Config: cfgData, ConfigSHA: hex.EncodeToString(sum[:]), Version: pr.Version,
		SourceID: pr.ID, PatchStack: patch.Digest(sets)}
	req := build.ImageRequest{CacheDir: p.cacheDir, SourceID: pr.ID, PatchDigest: patch.Digest(sets), Arch: t.Arch,
		Compiler: p.compiler, Config: cfgData, Source: pr.Spec.Raw, Version: pr.Version, Target: t.Name,
		PatchSets: c.PatchSets, MakeTarget: "bzImage", ImagePath: t.Image, Jobs: p.Cfg.Jobs,
		CCache: filepath.Join(p.cacheDir, "ccache"), LogPath: filepath.Join(cellDir, "build.log"), Lock: p.lockWait(c.ID)}
	k.Key = build.ImageKey(req)
	if prev, ok := p.kernels[k.Key]; ok {
		return prev, nil
	}
	blog, err := os.Create(req.LogPath)
	if err != nil {
		return nil, stageErr(StageBuild, outcome.Errorf(outcome.Infra, "%w", err))
	}
	defer blog.Close()
	req.Log = blog
	req.Tree = func(ctx context.Context) (string, string, func(), error) {
		w, err := tree()
		if err != nil {
			return "", "", nil, err
		}
		p.logf(c.ID, "build: make -j%d %s (log %s)", pJobs(p.Cfg.Jobs), req.MakeTarget, req.LogPath)
		return w.Dir, buildDir, w.Release, nil
	}
	bctx, cancel := context.WithTimeout(ctx, p.Cfg.Timeouts.Build)
	defer cancel()
	img, err := build.GetImage(bctx, req)
	if err != nil {
		if bctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = outcome.Errorf(outcome.Infra, "kernel build still running after timeouts.build (%s): %w", p.Cfg.Timeouts.Build, err)
		}
		return nil, stageErr(StageBuild, err)
	}
	k.Dir, k.Image, k.Cached = img.Dir, img.Path, img.Cached
	k.Warnings, k.Seconds, k.Notes = img.Meta.Warnings, img.Meta.Seconds, img.Notes
	for _, n := range img.Notes {
		p.logf(c.ID, "build: %s", n)
	}
	if k.Cached {
		p.logf(c.ID, "build: cached kernel %s", k.Key[:12])
		if err := cache.CopyFile(filepath.Join(k.Dir, "build.log"), req.LogPath); err != nil {
			return nil, stageErr(StageBuild, outcome.Errorf(outcome.Infra, "%w", err))
		}
	} else {
		p.logf(c.ID, "build: done in %.0fs, %d warning(s)", k.Seconds, len(k.Warnings))
	}
	p.kernels[k.Key] = k
	return k, nil
}

func pJobs(j int) int {
	if j > 0 {
		return j
	}
	return build.Jobs()
}

// Initramfs builds (or finds) the guest image for a target. Every suite
// that exists goes in, so one image per arch serves every cell.
func (p *Pipeline) Initramfs(ctx context.Context, t target.Target, log io.Writer) (*initramfs.Result, error) {
	var names []string
	for n := range p.Suites {
		names = append(names, n)
	}
	sort.Strings(names)
	r, err := initramfs.Build(ctx, initramfs.Request{ModuleDir: p.Cfg.Abs(p.Cfg.Dirs.Module), GOARCH: t.GOARCH,
		Suites: names, CacheDir: p.cacheDir, Log: log, Lock: p.lockWait(""), Exec: p.Self})
	if err != nil {
		return nil, stageErr(StageInitramfs, err)
	}
	return r, nil
}

// Accel chooses (once per QEMU binary) between KVM and TCG.
func (p *Pipeline) Accel(ctx context.Context, t target.Target) (boot.Accel, string, error) {
	if a, ok := p.accels[t.QEMU]; ok {
		return a.accel, a.why, nil
	}
	a, why, err := boot.Choose(ctx, p.Cfg.Accel, t)
	if err != nil {
		return "", "", outcome.Errorf(outcome.Infra, "%w", err)
	}
	p.accels[t.QEMU] = accelChoice{a, why}
	return a, why, nil
}

// BootSpec assembles the boot of a cell: what the agent is told (package
// guest) and the deadlines, planned for the accelerator.
func (p *Pipeline) BootSpec(c config.MatrixCell, t target.Target, k *Kernel, initrd string, accel boot.Accel, dir string) boot.Spec {
	tcg := accel == boot.TCG
	var plans []config.SuitePlan
	var suites []guest.Suite
	for _, spec := range c.Suites {
		g := guest.ParseSuiteSpec(spec)
		sp := config.SuitePlan{Tests: p.selected(g)}
		if m, ok := p.Suites[g.Name]; ok {
			sp.Setup = m.Timeout
		}
		plans = append(plans, sp)
		suites = append(suites, g)
	}
	d := p.Cfg.Timeouts.Plan(tcg, p.Cfg.Duration, plans)
	for i := range suites {
		suites[i].Deadline = d.Suites[i]
	}
	scale := 1.0
	if tcg {
		scale = p.Cfg.Timeouts.TCGScale
	}
	args := guest.BootArgs{Mode: guest.ModeRun, Suites: suites, Duration: p.Cfg.Duration, Intensity: p.Cfg.Intensity,
		CPUs: t.CPUs, Preempt: guest.PreemptModel(kconfig.Parse(k.Config)), ConfigSHA: k.ConfigSHA[:16],
		PatchSets: c.PatchSets, EventPort: t.EventPort, Heartbeat: guest.DefaultHeartbeat, TestDeadline: d.Test, Scale: scale}
	return boot.Spec{Target: t, Kernel: k.Image, Initrd: initrd, Accel: accel, Guest: args, Cmdline: p.Cfg.Cmdline, Dir: dir,
		Boot: d.Boot, NoOutput: d.NoOutput, Overall: d.Overall}
}

// selected counts the declared tests a suite spec selects.
func (p *Pipeline) selected(g guest.Suite) int {
	tests := p.Catalog.Tests[g.Name]
	if g.Tests == "" {
		return len(tests)
	}
	re, err := guest.CompileTests(g.Tests)
	if err != nil {
		return len(tests)
	}
	n := 0
	for _, t := range tests {
		if re.MatchString(t) {
			n++
		}
	}
	return n
}

// bootVerdict is what the cell's verdict needs of its boot.
func bootVerdict(br *boot.Result) results.Boot {
	reason := br.Reason
	if br.Outcome != outcome.Pass && br.BlameTest != "" {
		reason += fmt.Sprintf(" (while running %s/%s)", br.BlameSuite, br.BlameTest)
	}
	return results.Boot{Outcome: br.Outcome, Reason: reason, Watchdog: br.Watchdog, Crashes: br.Crashes,
		Crash: br.Crash, BlameSuite: br.BlameSuite, BlameTest: br.BlameTest, Notes: br.Notes}
}

// TCGAccel is re-exported for readability in this package.
const TCGAccel = boot.TCG

// Matrix runs every cell and returns the finished run. The run directory
// is written as it goes; on cancellation the cells not yet done are
// recorded as interrupted.
func (p *Pipeline) Matrix(ctx context.Context) (*results.Run, *results.Store, error) {
	cells := p.Cfg.Matrix(p.Catalog)
	run := &results.Run{ID: results.NewID(time.Now()), Config: p.Cfg.Path, Source: p.Cfg.Source, Started: time.Now().UTC(),
		Shard: p.Shard}
	for _, c := range cells {
		run.Cells = append(run.Cells, &results.Cell{ID: c.ID, Name: c.Name, Target: c.Target, PatchSets: c.PatchSets,
			Suites: c.Suites, Expect: c.Expect, Dir: filepath.Join("cells", c.ID), Tests: []*results.Test{},
			Rerun: p.rerun(c)})
	}
	root := p.Cfg.Abs(p.Cfg.Results)
	if ids, err := results.Recover(root, run.ID); err != nil {
		p.logf("", "warning: checking earlier runs: %v", err)
	} else {
		for _, id := range ids {
			p.logf("", "run %s never finished (its kharness was killed): marked interrupted", id)
		}
	}
	store, err := results.Create(root, run)
	if err != nil {
		return nil, nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	p.store = store
	p.logf("", "run %s: %d cell(s), results in %s", run.ID, len(cells), store.Dir)
	store.Append(results.Record{Kind: "run", Status: "start", Message: fmt.Sprintf("%d cells", len(cells))})
	for i, c := range cells {
		rc := run.Cells[i]
		if ctx.Err() != nil {
			store.Update(func(*results.Run) { rc.SetOutcome(outcome.Interrupted, "", "not started: run interrupted") })
			continue
		}
		p.cell(ctx, store, c, rc)
		if err := store.Err(); err != nil {
			p.logf(rc.ID, "warning: the run's record is incomplete: %v", err)
		}
	}
	p.retryFailed(ctx, store, run, cells)
	if ctx.Err() != nil {
		store.Update(func(r *results.Run) { r.Outcome = outcome.Interrupted })
	}
	store.Append(results.Record{Kind: "run", Status: "end"})
	if err := store.Close(); err != nil {
		return run, store, outcome.Errorf(outcome.Infra, "write results: %w", err)
	}
	return run, store, nil
}

// lockWait is how a stage waits for a lock another run holds: bounded by
// timeouts.lock, saying every 30 s on the progress output whom it waits for.
func (p *Pipeline) lockWait(cell string) cache.LockWait {
	return cache.LockWait{Max: p.Cfg.Timeouts.Lock, Every: 30 * time.Second, Log: prefixWriter{p, cell}}
}

// prefixWriter sends a stage's remarks to the progress output, tagged.
type prefixWriter struct {
	p    *Pipeline
	cell string
}

func (w prefixWriter) Write(b []byte) (int, error) {
	w.p.logf(w.cell, "%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Abort marks the run being written as interrupted, at once: kharness is
// about to exit without unwinding (a second Ctrl-C).
func (p *Pipeline) Abort(why string) {
	if p.store == nil {
		return
	}
	p.store.Update(func(r *results.Run) {
		r.Outcome, r.ExitCode, r.Reason = outcome.Interrupted, outcome.Interrupted.ExitCode(), "interrupted: "+why
		for _, c := range r.Cells {
			if c.Outcome == outcome.Incomplete {
				c.Outcome, c.Raw, c.Reason = outcome.Interrupted, outcome.Interrupted, "interrupted: "+why
			}
		}
	})
}

// rerun is the kharness command that runs one cell alone.
func (p *Pipeline) rerun(c config.MatrixCell) string {
	q := func(s string) string {
		if s == "" || strings.ContainsAny(s, " '\"|*?$;&()<>") {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		return s
	}
	args := []string{"kharness", "run", "-c", q(p.Cfg.Path), "--source", q(p.Cfg.Source), "--target", c.Target,
		"--patchset", q(strings.Join(c.PatchSets, ",")), "--suite", q(strings.Join(c.Suites, ",")),
		"--duration", p.Cfg.Duration.String()}
	return strings.Join(args, " ")
}

func (p *Pipeline) fail(store *results.Store, rc *results.Cell, err error) {
	stage := ""
	var se *StageError
	if errors.As(err, &se) {
		stage = se.Stage
	}
	o := outcome.Of(err)
	if errors.Is(err, context.Canceled) {
		o = outcome.Interrupted
	}
	store.Append(results.Record{Cell: rc.ID, Kind: "stage", Stage: stage, Status: "fail", Message: err.Error()})
	store.Update(func(*results.Run) { rc.SetOutcome(o, stage, err.Error()) })
	p.logf(rc.ID, "%s failed (%s):\n%s", stage, o, indent(err.Error()))
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

func (p *Pipeline) cell(ctx context.Context, store *results.Store, c config.MatrixCell, rc *results.Cell) {
	dir := store.CellDir(c.ID)
	t, _ := target.Lookup(c.Target)
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBuild, Status: "start"})
	k, err := p.Kernel(ctx, c, dir)
	if err != nil {
		p.fail(store, rc, err)
		return
	}
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBuild, Status: "ok", Message: k.Key})
	store.Update(func(*results.Run) {
		rc.KernelKey, rc.KernelCached, rc.BuildWarnings, rc.KernelVersion = k.Key, k.Cached, k.Warnings, k.Version
		rc.SourceID, rc.PatchStack, rc.KconfigSHA = k.SourceID, k.PatchStack, k.ConfigSHA
		if !k.Cached {
			rc.BuildSeconds = k.Seconds
		}
	})
	ilog, err := os.Create(filepath.Join(dir, "initramfs.log"))
	if err != nil {
		p.fail(store, rc, stageErr(StageInitramfs, outcome.Errorf(outcome.Infra, "%w", err)))
		return
	}
	ir, err := p.Initramfs(ctx, t, ilog)
	ilog.Close()
	if err != nil {
		p.fail(store, rc, err)
		return
	}
	p.logf(c.ID, "initramfs: %s (%s, cached=%v)", filepath.Base(ir.Path), ir.Duration.Round(time.Millisecond), ir.Cached)
	for _, n := range append(k.Notes, ir.Notes...) {
		p.logf(c.ID, "cache: %s", n)
	}
	store.Update(func(*results.Run) { rc.Notes = append(rc.Notes, append(k.Notes, ir.Notes...)...) })
	accel, why, err := p.Accel(ctx, t)
	if err != nil {
		p.fail(store, rc, stageErr(StageBoot, err))
		return
	}
	spec := p.BootSpec(c, t, k, ir.Path, accel, dir)
	store.Update(func(*results.Run) {
		rc.Initramfs, rc.InitrdCached, rc.Accel, rc.AccelReason = ir.Path, ir.Cached, string(accel), why
		rc.Reproducer = boot.Reproducer(spec)
	})
	p.logf(c.ID, "boot: %s under %s (%s), suites %v", t.QEMU, accel, why, c.Suites)
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBoot, Status: "start", Message: string(accel)})
	br, err := boot.Run(ctx, spec, func(e event.Event) {
		ev := e
		store.Append(results.Record{Cell: c.ID, Kind: "guest", Event: &ev})
		if e.Type == event.Progress {
			return // heartbeats are on disk; results.json is not rewritten for each
		}
		var done *results.Test
		store.Update(func(*results.Run) { done = rc.Apply(e) })
		switch {
		case done != nil:
			p.logf(c.ID, "%s/%s: %s", done.Suite, done.Name, done.Outcome)
		case e.Type == event.SuiteEnd && e.Result != event.Pass:
			p.logf(c.ID, "suite %s: %s %s", e.Suite, e.Result, e.Message)
		case e.Type == event.Log:
			p.logf(c.ID, "guest: %s", e.Message)
		}
	})
	if err != nil {
		p.fail(store, rc, stageErr(StageBoot, err))
		return
	}
	store.Update(func(*results.Run) {
		rc.BootSeconds = br.Duration.Seconds()
		rc.FirstEventSeconds = br.FirstEvent.Seconds()
		rc.Finish(bootVerdict(br))
	})
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBoot, Status: string(rc.Outcome), Message: rc.Reason})
	p.logf(c.ID, "done: %s in %.1fs (first result after %.1fs)", rc.Outcome, br.Duration.Seconds(), br.FirstEvent.Seconds())
}
