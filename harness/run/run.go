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
	"runtime"
	"sort"
	"strings"
	"sync"
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
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/patch"
	"github.com/kharness/kharness/harness/progress"
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
	// Track shows the long stages as they go (nil: nobody watches).
	Track *progress.Tracker
	// Retry, when set, picks the failed tests Matrix boots once more,
	// alone, before the run is closed (retry.go).
	Retry func(*results.Cell, *results.Test) bool
	// Shard is recorded in the run when it is one part of a matrix.
	Shard *results.Shard
	// Known are the known issues (dirs.known): a failure one describes
	// is recorded with its id and does not fail the cell.
	Known *known.Set

	cacheDir string
	store    *results.Store // the run being written, for Abort
	// mu guards what the next cell's kernel build (overlapping a boot,
	// see Matrix) shares with the cell being booted.
	mu       sync.Mutex
	pristine *source.Pristine
	compiler string
	accels   map[string]accelChoice // per QEMU binary
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
	ImageSHA  string   // sha256 of the bootable image (two stacks, one image: a no-op patch)
	Notes     []string // what the cache repaired
	// Timings are the seconds each stage took for this kernel: source,
	// patch, kconfig, build (0 or absent when cached).
	Timings map[string]float64
	// SourceID and PatchStack identify the source and the patches, for
	// the run's record.
	SourceID, PatchStack string
	// release lets the kernel's cache entry go (a shared hold keeps a
	// prune by another run from deleting it while this one boots it).
	release func()
	// tree locks the source's work tree at this kernel's stack and says
	// its commit (the kselftests are built from it).
	tree func() (*source.Tree, string, error)
}

// Release lets the kernel's cache entry go; a cell calls it once booted.
func (k *Kernel) Release() {
	if k != nil && k.release != nil {
		k.release()
	}
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
		accels: map[string]accelChoice{}, Suites: map[string]catalog.Suite{}}
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
	tests, listErr := catalog.Tests(ctx, cfg.Abs(cfg.Dirs.Module), initramfs.Module, p.cacheDir, catalog.GoNames(ss))
	if tests == nil {
		tests = map[string][]string{}
	}
	for _, s := range ss {
		if !s.IsGo() {
			tests[s.Name] = s.Declared() // programs or KUnit suites
		}
	}
	p.Catalog = config.Catalog{PatchSets: ps, DefaultPatchSets: top,
		Suites: catalog.Names(ss, false), DefaultSuites: catalog.Names(ss, true), Tests: tests}
	var errs *multierror.Error
	if listErr != nil {
		errs = multierror.Append(errs, fmt.Errorf("list the suites' tests (module %s): %w", cfg.Abs(cfg.Dirs.Module), listErr))
	}
	if err := cfg.Validate(p.Catalog); err != nil {
		errs = multierror.Append(errs, err)
	}
	if ks, err := known.Load(cfg.Abs(cfg.Dirs.Known)); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("known issues: %w", err))
	} else {
		p.Known = ks
		for _, is := range ks.Expired(time.Now()) {
			p.logf("", "known issue %s (%s:%d) expired on %s: it excuses nothing now; renew it or remove it",
				is.ID, ks.Path, is.Line, is.Expires.Format(known.DateLayout))
		}
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

// WithSource is a pipeline like p for another source (a revision of a git
// tree): same config otherwise, same catalog, same progress.
func (p *Pipeline) WithSource(src string) *Pipeline {
	cfg := *p.Cfg
	cfg.Source = src
	return &Pipeline{Cfg: &cfg, Catalog: p.Catalog, Suites: p.Suites, Progress: p.Progress, Self: p.Self, Track: p.Track,
		cacheDir: p.cacheDir, store: p.store, accels: map[string]accelChoice{}}
}

// Source resolves and imports the kernel source once per pipeline.
func (p *Pipeline) Source(ctx context.Context, log io.Writer) (*source.Pristine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
	StageKselftest = "kselftests"
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
	type frag struct{ path, level string }
	t, err := target.Lookup(c.Target)
	if err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "%w", err)
	}
	paths := []frag{{filepath.Join(dir, "common.config"), "common"}}
	for _, f := range t.Fragments {
		paths = append(paths, frag{filepath.Join(dir, f), "target"})
	}
	// Patch sets are stacked in order, so a later one may override an
	// earlier one: each is a level of its own.
	for _, ps := range c.PatchSets {
		paths = append(paths, frag{filepath.Join(dir, "patchset", ps+".config"), "patch set " + ps})
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
		paths = append(paths, frag{filepath.Join(dir, "suite", name+".config"), "suite"})
	}
	var out []kconfig.Fragment
	var errs *multierror.Error
	for _, fr := range paths {
		path := fr.path
		if _, err := os.Stat(path); os.IsNotExist(err) {
			continue
		}
		f, err := kconfig.ParseFragment(path)
		if err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		f.Level = fr.level
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
	if _, _, err := kconfig.Merge(out); err != nil {
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
	return p.kernel(ctx, c, cellDir, p.Cfg.Jobs)
}

// kernel is Kernel with make's parallelism (0: one more than the CPUs).
func (p *Pipeline) kernel(ctx context.Context, c config.MatrixCell, cellDir string, jobs int) (*Kernel, error) {
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
	return p.KernelOf(ctx, c, sets, cellDir, KernelOpts{Jobs: jobs})
}

// KernelOpts tune KernelOf.
type KernelOpts struct {
	Jobs int // make -j; 0: one more than the CPUs
	// AllowDropped builds a .config whose requested options did not all
	// survive (kept out of the config cache, the dropped ones noted): a
	// prefix of a series has not yet added the Kconfig entries its set's
	// fragment asks for.
	AllowDropped bool
}

// KernelOf produces the kernel of a cell whose patch sets are given as
// loaded (possibly cut short: a prefix of a series, for patchcheck and
// bisect); c.PatchSets still names the sets, for their kconfig fragments.
func (p *Pipeline) KernelOf(ctx context.Context, c config.MatrixCell, sets []*patch.Set, cellDir string, o KernelOpts) (*Kernel, error) {
	jobs := o.Jobs
	var dropNotes []string
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
	timings := map[string]float64{}
	mark := func(stage string, since time.Time) { timings[stage] += time.Since(since).Seconds() }
	t0 := time.Now()
	pr, err := p.Source(ctx, srcLog)
	mark(StageSource, t0)
	if err != nil {
		return nil, stageErr(StageSource, err)
	}
	frags, err := p.fragments(c)
	if err != nil {
		return nil, stageErr(StageKconfig, err)
	}
	stackKey := ""
	var paths []string
	if len(sets) > 0 {
		stackKey = cache.Key("stack", patch.Digest(sets))[:24]
		for _, st := range sets {
			for _, pt := range st.Patches {
				paths = append(paths, pt.Paths...)
			}
		}
	}
	cfgKey := cache.Key("kconfig", pr.ID, stackKey, t.Name, t.Arch, t.BaseConfig, fragmentsText(frags))
	cfgPath := filepath.Join(p.cacheDir, "configs", cfgKey[:24]+".config")
	// One work tree per source; the O= directory of each target lives
	// inside it, so the relative path from it to the sources is the same
	// for every stack (ccache hits), and moving the tree from one stack to
	// the next rebuilds only what the differing files feed.
	buildDir := filepath.Join(source.TreeDir(p.cacheDir, pr.TreeID), ".kharness-build", t.Name)

	// tree locks the source's work tree and moves it to this cell's patch
	// stack (made the first time it is needed); the caller releases it.
	// Locks are taken in one order only, kernel entry before tree
	// (GetImage), and the tree's lock is never held while waiting for a
	// kernel entry's, so two runs cannot deadlock.
	var stackCommit string
	tree := func() (*source.Tree, error) {
		w, err := pr.Tree(ctx, p.cacheDir, p.lockWait(c.ID), srcLog)
		if err != nil {
			return nil, stageErr(StageSource, err)
		}
		commit, err := w.Stack(ctx, stackKey, paths, func(dir string) error {
			plog, err := os.Create(filepath.Join(cellDir, "patch.log"))
			if err != nil {
				return outcome.Errorf(outcome.Infra, "%w", err)
			}
			defer plog.Close()
			p.logf(c.ID, "patch: applying %d set(s) %v", len(sets), c.PatchSets)
			actx, cancel := context.WithTimeout(ctx, p.Cfg.Timeouts.Command)
			defer cancel()
			t0 := time.Now()
			defer mark(StagePatch, t0)
			return patch.Apply(actx, dir, sets, plog)
		})
		if err != nil {
			w.Release()
			return nil, stageErr(StagePatch, err)
		}
		if err := w.Checkout(ctx, commit); err != nil {
			w.Release()
			return nil, stageErr(StageSource, err)
		}
		stackCommit = commit
		return w, nil
	}
	if len(sets) > 0 {
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
		t0 := time.Now()
		cfgData, err = kconfig.Configure(kctx, kconfig.Request{Src: w.Dir, BuildDir: buildDir, Arch: t.Arch,
			Base: t.BaseConfig, Fragments: frags, Log: klog})
		mark(StageKconfig, t0) // not deferred: that would count the build too
		cancel()
		klog.Close()
		w.Release()
		if cfgData != nil {
			os.WriteFile(filepath.Join(cellDir, "config"), cfgData, 0o644)
		}
		var dropped *kconfig.DroppedError
		switch {
		case err != nil && o.AllowDropped && errors.As(err, &dropped) && cfgData != nil:
			for _, d := range dropped.Dropped {
				dropNotes = append(dropNotes, fmt.Sprintf("kconfig: %s:%d: %s=%s requested, not in this stack's Kconfig yet (got %s)", d.File, d.Line, d.Name, d.Value, d.Got))
			}
		case err != nil:
			return nil, stageErr(StageKconfig, err)
		default:
			if err := cache.WriteFile(cfgPath, cfgData); err != nil {
				return nil, stageErr(StageKconfig, err)
			}
		}
	} else {
		p.logf(c.ID, "kconfig: cached %s", cfgKey[:12])
	}
	os.WriteFile(filepath.Join(cellDir, "config"), cfgData, 0o644)
	sum := sha256.Sum256(cfgData)
	k := &Kernel{Config: cfgData, ConfigSHA: hex.EncodeToString(sum[:]), Version: pr.Version, Timings: timings, Notes: dropNotes,
		SourceID: pr.ID, PatchStack: patch.Digest(sets)}
	req := build.ImageRequest{CacheDir: p.cacheDir, SourceID: pr.ID, PatchDigest: patch.Digest(sets), Arch: t.Arch,
		Compiler: p.compiler, Config: cfgData, Source: pr.Spec.Raw, Version: pr.Version, Target: t.Name,
		PatchSets: c.PatchSets, MakeTarget: t.MakeTarget, ImagePath: t.Image, Jobs: jobs,
		CCache: filepath.Join(p.cacheDir, "ccache"), CCacheMax: int64(p.Cfg.CCacheMax), LogPath: filepath.Join(cellDir, "build.log"), Lock: p.lockWait(c.ID)}
	k.Key = build.ImageKey(req)
	blog, err := os.Create(req.LogPath)
	if err != nil {
		return nil, stageErr(StageBuild, outcome.Errorf(outcome.Infra, "%w", err))
	}
	defer blog.Close()
	req.Log = blog
	var buildTask *progress.Task
	req.Tree = func(ctx context.Context) (string, string, func(), error) {
		w, err := tree()
		if err != nil {
			return "", "", nil, err
		}
		p.logf(c.ID, "build: make -j%d %s (log %s)", pJobs(jobs), req.MakeTarget, req.LogPath)
		buildTask = p.Track.Start("["+c.ID+"] build", 0, "objects")
		if _, err := os.Stat(filepath.Join(buildDir, "vmlinux")); err != nil {
			// A cold build: the last cold build of this target says how
			// many objects there are and how long it took.
			if n, took, ok := build.Previous(p.cacheDir, t.Name); ok {
				buildTask.SetTotal(int64(n))
				buildTask.Expect(took)
			}
		}
		return w.Dir, buildDir, func() { buildTask.Done(""); w.Release() }, nil
	}
	req.OnObject = func(n int) { buildTask.Set(int64(n), "") }
	bctx, cancel := context.WithTimeout(ctx, p.Cfg.Timeouts.Build)
	defer cancel()
	t0 = time.Now()
	img, err := build.GetImage(bctx, req)
	mark(StageBuild, t0)
	if err != nil {
		if bctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = outcome.Errorf(outcome.Infra, "kernel build still running after timeouts.build (%s): %w", p.Cfg.Timeouts.Build, err)
		}
		return nil, stageErr(StageBuild, err)
	}
	k.Dir, k.Image, k.Cached, k.ImageSHA = img.Dir, img.Path, img.Cached, img.Meta.SHA256["bzImage"]
	k.release = img.Release
	k.tree = func() (*source.Tree, string, error) {
		w, err := tree()
		return w, stackCommit, err
	}
	k.Warnings, k.Seconds, k.Notes = img.Meta.Warnings, img.Meta.Seconds, append(k.Notes, img.Notes...)
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
func (p *Pipeline) Initramfs(ctx context.Context, t target.Target, log io.Writer, onPhase func(string)) (*initramfs.Result, error) {
	var names []string
	for n, s := range p.Suites {
		if s.IsGo() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	r, err := initramfs.Build(ctx, initramfs.Request{ModuleDir: p.Cfg.Abs(p.Cfg.Dirs.Module), GOARCH: t.GOARCH,
		Suites: names, CacheDir: p.cacheDir, Log: log, Lock: p.lockWait(""), Exec: p.Self, OnPhase: onPhase})
	if err != nil {
		return nil, stageErr(StageInitramfs, err)
	}
	return r, nil
}

// Accel chooses (once per QEMU binary) between KVM and TCG.
func (p *Pipeline) Accel(ctx context.Context, t target.Target) (boot.Accel, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
	var kunit *boot.KUnit
	var kunitTime time.Duration
	for _, spec := range c.Suites {
		g := guest.ParseSuiteSpec(spec)
		if m, ok := p.Suites[g.Name]; ok && m.Type == catalog.TypeKUnit {
			// KUnit runs in the kernel before init: the host reads it
			// from the console, the agent never hears of it.
			kunit = &boot.KUnit{Suite: g.Name, Declared: p.selectedNames(g)}
			kunitTime += m.Timeout
			continue
		}
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
	cmdline := append([]string{}, p.Cfg.Cmdline...)
	if kunit != nil {
		// Built in (kconfigs/suite/kunit.config) but off by default, so
		// only the cells that select the suite run it.
		cmdline = append(cmdline, "kunit.enable=1")
		if len(kunit.Declared) == 1 {
			cmdline = append(cmdline, "kunit.filter_glob="+kunit.Declared[0])
		}
	}
	// The KUnit tests run inside the boot: its deadline, and the whole
	// boot's, grow by the suite's.
	kt := time.Duration(float64(kunitTime) * scale)
	return boot.Spec{Target: t, Kernel: k.Image, Initrd: initrd, Accel: accel, Guest: args, Cmdline: cmdline, KUnit: kunit, Dir: dir,
		Boot: d.Boot + kt, NoOutput: d.NoOutput, Overall: d.Overall + kt}
}

// selectedNames are the declared tests a suite spec selects.
func (p *Pipeline) selectedNames(g guest.Suite) []string {
	tests := p.Catalog.Tests[g.Name]
	if g.Tests == "" {
		return tests
	}
	re, err := guest.CompileTests(g.Tests)
	if err != nil {
		return tests
	}
	var out []string
	for _, t := range tests {
		if re.MatchString(t) {
			out = append(out, t)
		}
	}
	return out
}

// selected counts the declared tests a suite spec selects.
func (p *Pipeline) selected(g guest.Suite) int { return len(p.selectedNames(g)) }

// writeReproducer writes boot.json (the boot, for kharness rerun and boot
// --run) and reproduce.sh (the QEMU command, or `./reproduce.sh rerun`)
// into the cell's directory.
func (p *Pipeline) writeReproducer(runID string, c config.MatrixCell, spec boot.Spec, k *Kernel) error {
	vmlinux := filepath.Join(k.Dir, "vmlinux")
	if !cache.Exists(vmlinux) {
		vmlinux = ""
	}
	if err := boot.RecordOf(spec, vmlinux).Save(filepath.Join(spec.Dir, "boot.json")); err != nil {
		return fmt.Errorf("boot.json: %w", err)
	}
	sh := fmt.Sprintf(`#!/bin/sh
# Reproduce cell %s of kharness run %s.
#   ./reproduce.sh        boots the same kernel and initramfs the same way:
#                         console on this terminal, events in events.jsonl
#                         (Ctrl-A X quits QEMU)
#   ./reproduce.sh rerun  reruns the cell's tests through kharness, no build
#                         (more flags: --test PATTERN, --count N, --until-fail)
set -e
cd "$(dirname "$0")"
if [ "${1:-}" = rerun ]; then
	shift
	exec kharness rerun -c %s --results %s %s --cell %s "$@"
fi
exec %s
`, c.ID, runID, boot.ShellQuote(p.Cfg.Path), boot.ShellQuote(p.Cfg.Abs(p.Cfg.Results)), runID, c.ID, boot.Reproducer(spec))
	return os.WriteFile(filepath.Join(spec.Dir, "reproduce.sh"), []byte(sh), 0o755)
}

// bootVerdict is what the cell's verdict needs of its boot.
func (p *Pipeline) bootVerdict(br *boot.Result, c *results.Cell) results.Boot {
	reason := br.Reason
	if br.Outcome != outcome.Pass && br.BlameTest != "" {
		reason += fmt.Sprintf(" (while running %s/%s)", br.BlameSuite, br.BlameTest)
	}
	b := results.Boot{Outcome: br.Outcome, Reason: reason, Watchdog: br.Watchdog, Crashes: br.Crashes,
		Crash: br.Crash, BlameSuite: br.BlameSuite, BlameTest: br.BlameTest, Notes: br.Notes}
	if p.Known != nil {
		now := time.Now()
		b.Known = func(t *results.Test) string {
			if is := p.Known.Match(known.Subject{Suite: t.Suite, Test: t.Name, Target: c.Target, Cell: c.Name, Crash: t.Crash}, now); is != nil {
				return is.ID
			}
			return ""
		}
	}
	return b
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
	// With more cores than a build and a boot need together, the next
	// cell's kernel builds while this cell boots; otherwise one stage at a
	// time (two kernel builds never run at once either way).
	overlap, buildJobs := p.overlap()
	var next *prefetch
	for i, c := range cells {
		rc := run.Cells[i]
		if ctx.Err() != nil {
			store.Update(func(*results.Run) { rc.SetOutcome(outcome.Interrupted, "", "not started: run interrupted") })
			continue
		}
		pre := next
		next = nil
		var booting func()
		if overlap && i+1 < len(cells) {
			nc := cells[i+1]
			booting = func() {
				next = &prefetch{done: make(chan struct{})}
				go func(f *prefetch) {
					defer close(f.done)
					f.k, f.err = p.kernel(ctx, nc, store.CellDir(nc.ID), buildJobs)
				}(next)
			}
		}
		p.cell(ctx, store, c, rc, pre, booting)
		if err := store.Err(); err != nil {
			p.logf(rc.ID, "warning: the run's record is incomplete: %v", err)
		}
	}
	if next != nil {
		<-next.done // a build started for a cell the run will not reach
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

// Fail records a stage's failure as the cell's outcome.
func (p *Pipeline) Fail(store *results.Store, rc *results.Cell, err error) { p.fail(store, rc, err) }

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

// prefetch is a kernel built ahead, while the previous cell booted.
type prefetch struct {
	done chan struct{}
	k    *Kernel
	err  error
}

// overlap says whether builds may overlap boots: when the host has at
// least a build's worth of cores beyond what a guest's vCPUs take (CI
// runners have 4; this project's dev machine 2 keeps today's order). The
// build then gets the cores the guest leaves.
func (p *Pipeline) overlap() (bool, int) {
	n := runtime.NumCPU()
	guest := 0
	for _, name := range p.Cfg.Targets {
		if t, err := target.Lookup(name); err == nil && t.CPUs > guest {
			guest = t.CPUs
		}
	}
	if p.Cfg.Overlap == "off" || (p.Cfg.Overlap != "on" && n < guest+2) {
		return false, 0
	}
	return true, max(n-guest, 1)
}

func (p *Pipeline) cell(ctx context.Context, store *results.Store, c config.MatrixCell, rc *results.Cell, pre *prefetch, booting func()) {
	dir := store.CellDir(c.ID)
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBuild, Status: "start"})
	// The cache stays within its budget: least recently used entries go
	// before this cell adds its own (an entry in use is never touched).
	if _, err := cache.Prune(p.cacheDir, int64(p.Cfg.CacheMax), nil, prefixWriter{p, c.ID}); err != nil {
		p.logf(c.ID, "warning: %v", err)
	}
	var err error
	var k *Kernel
	if pre != nil {
		<-pre.done
		k, err = pre.k, pre.err
	} else {
		k, err = p.Kernel(ctx, c, dir)
	}
	if err != nil {
		p.fail(store, rc, err)
		return
	}
	if booting != nil {
		booting() // this cell's build is done: the next one may start
	}
	p.BootCell(ctx, store, c, rc, k)
	k.Release()
}

// timing adds a stage's seconds to a cell's timings.
func timing(store *results.Store, rc *results.Cell, stage string, seconds float64) {
	store.Update(func(*results.Run) {
		if rc.Timings == nil {
			rc.Timings = map[string]float64{}
		}
		rc.Timings[stage] += seconds
	})
}

// BootCell takes a cell whose kernel is ready through the rest of the
// pipeline: initramfs, boot, the guest's tests, the verdict.
func (p *Pipeline) BootCell(ctx context.Context, store *results.Store, c config.MatrixCell, rc *results.Cell, k *Kernel) {
	dir := store.CellDir(c.ID)
	t, err := target.Lookup(c.Target)
	if err != nil {
		p.fail(store, rc, stageErr(StageBoot, outcome.Errorf(outcome.ConfigError, "%w", err)))
		return
	}
	timing := func(stage string, seconds float64) { timing(store, rc, stage, seconds) }
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBuild, Status: "ok", Message: k.Key})
	store.Update(func(*results.Run) {
		rc.KernelKey, rc.KernelCached, rc.BuildWarnings, rc.KernelVersion = k.Key, k.Cached, k.Warnings, k.Version
		rc.SourceID, rc.PatchStack, rc.KconfigSHA = k.SourceID, k.PatchStack, k.ConfigSHA
		if !k.Cached {
			rc.BuildSeconds = k.Seconds
		}
	})
	for stage, sec := range k.Timings {
		timing(stage, sec)
	}
	ilog, err := os.Create(filepath.Join(dir, "initramfs.log"))
	if err != nil {
		p.fail(store, rc, stageErr(StageInitramfs, outcome.Errorf(outcome.Infra, "%w", err)))
		return
	}
	itask := p.Track.Start("["+c.ID+"] initramfs", 0, "")
	ir, err := p.Initramfs(ctx, t, ilog, func(phase string) { itask.Set(0, phase) })
	itask.Done("")
	ilog.Close()
	if err != nil {
		p.fail(store, rc, err)
		return
	}
	timing(StageInitramfs, ir.Duration.Seconds())
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
	initrd, err := p.Kselftests(ctx, store, c, rc, k, t, ir.Path, accel)
	if err != nil {
		p.fail(store, rc, err)
		return
	}
	spec := p.BootSpec(c, t, k, initrd, accel, dir)
	store.Update(func(*results.Run) {
		rc.Initramfs, rc.InitrdCached, rc.Accel, rc.AccelReason = initrd, ir.Cached, string(accel), why
		rc.Reproducer = boot.Reproducer(spec)
	})
	// Before the boot: whatever happens to it, the cell can be reproduced.
	if err := p.writeReproducer(store.Run().ID, c, spec, k); err != nil {
		p.fail(store, rc, stageErr(StageBoot, outcome.Errorf(outcome.Infra, "%w", err)))
		return
	}
	p.logf(c.ID, "boot: %s under %s (%s), suites %v", t.QEMU, accel, why, c.Suites)
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBoot, Status: "start", Message: string(accel)})
	// The boot's progress: tests done of those the cell selects, and the
	// running one with its time and loop count.
	total := 0
	for _, s := range spec.Guest.Suites {
		total += p.selected(s)
	}
	btask := p.Track.Start("["+c.ID+"] tests", int64(total), "tests")
	finished := 0
	var running string
	var runningSince time.Time
	br, err := boot.Run(ctx, spec, func(e event.Event) {
		ev := e
		store.Append(results.Record{Cell: c.ID, Kind: "guest", Event: &ev})
		switch e.Type {
		case event.TestStart:
			running, runningSince = Printable(e.Suite+"/"+e.Test), time.Now()
			btask.Set(int64(finished), running)
		case event.Progress:
			detail := fmt.Sprintf("%s %s", running, time.Since(runningSince).Round(time.Second))
			if e.Iterations > 0 {
				detail += fmt.Sprintf(", %d iterations", e.Iterations)
			}
			btask.Set(int64(finished), detail)
			return // heartbeats are on disk; results.json is not rewritten for each
		case event.SuiteEnd:
			timing("suite "+e.Suite, float64(e.DurationMS)/1000)
		}
		var done *results.Test
		store.Update(func(*results.Run) { done = rc.Apply(e) })
		switch {
		case done != nil:
			// The total counts declared tests: a kselftest program's or a
			// KUnit suite's cases ("cow/<case>") are reported, not counted.
			if !strings.Contains(done.Name, "/") {
				finished++
			}
			btask.Set(int64(finished), "")
			p.logf(c.ID, "%s/%s: %s", done.Suite, done.Name, done.Outcome)
		case e.Type == event.SuiteEnd && e.Result != event.Pass:
			p.logf(c.ID, "suite %s: %s %s", e.Suite, e.Result, e.Message)
		case e.Type == event.Log:
			p.logf(c.ID, "guest: %s", e.Message)
		}
	})
	btask.Done("")
	if err != nil {
		p.fail(store, rc, stageErr(StageBoot, err))
		return
	}
	timing(StageBoot, br.Duration.Seconds())
	store.Update(func(*results.Run) {
		rc.BootSeconds = br.Duration.Seconds()
		rc.FirstEventSeconds = br.FirstEvent.Seconds()
		rc.Finish(p.bootVerdict(br, rc))
	})
	store.Append(results.Record{Cell: c.ID, Kind: "stage", Stage: StageBoot, Status: string(rc.Outcome), Message: rc.Reason})
	p.logf(c.ID, "done: %s in %.1fs (first result after %.1fs)", rc.Outcome, br.Duration.Seconds(), br.FirstEvent.Seconds())
}
