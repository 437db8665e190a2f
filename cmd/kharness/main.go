// Command kharness builds patched kernels for i386 HIGHMEM and x86_64,
// boots them in QEMU with a u-root initramfs of Go stress suites, and
// reports a results matrix. Run `kharness help` for the commands and the
// exit codes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"gopkg.in/yaml.v3"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/doctor"
	"github.com/kharness/kharness/harness/initramfs"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/progress"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/run"
	"github.com/kharness/kharness/harness/target"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: kharness COMMAND [flags]

commands:
  run      build, boot and test the matrix in kharness.yaml (or -c FILE)
  build    only patch, configure and build the kernels of the matrix
  boot     build one target and boot it with a u-root shell on this terminal
           (--gdb[=PORT]: paused, with QEMU's gdb stub and a .gdbinit;
            --run RUN --cell C: the kernel and initramfs a past run booted)
  rerun    RUN [--cell C] [--test PATTERN] [--count N | --until-fail]: rerun
           tests of a past run on its very kernel and initramfs (no build)
  patchcheck --series SET | --range A..B [--stage build|boot|test] [--keep-going]:
           every patch (commit) on its own: applies, kconfig symbols lost,
           new warnings, boots, tests pass; the first bad one named
  bisect   --series SET [--good N --bad N] | --range A..B, --bad-test S:RE
           [--bad-outcome O,..] [--bad-crash RE] [--confidence C]: the first
           bad patch, with the runs per step its reproduction rate needs
  list     targets, patch sets and their series, suites and their tests,
           mutants and the tests that catch them
  cache    du | prune [--max SIZE]: what the cache holds; shrink it
  doctor   check host tools; --install installs the missing Debian packages
  history  import runs into the history index; show, compare, gate (kharness history help)
  plan     split the matrix into build jobs and test shards (GitHub Actions matrices)
  merge    merge the run directories of a sharded matrix into one run
  report   write the nightly report: index.html (self-contained) and summary.md
  help     this text

common flags (override kharness.yaml):
  -c FILE            config file (default kharness.yaml in the current directory)
  --source S         debian:linux-source-6.12 | /path/linux.tar.xz | /path/to/git/tree[@rev]
  --target T,...     %s
  --patchset P,...   patch sets to stack, in order ("all" for every set; "" for none)
  --suite S,...      suites to run (suite or suite:test-regexp)
  --accel A          kvm | tcg | auto (probe KVM for real, fall back to TCG)
  --results DIR      where results/<run-id>/ goes
  --duration D       stress duration per test (e.g. 10s in CI, 10m nightly)
  --cell PAT,...     only the config's cells whose names match (shell patterns)

nightly flags (run, build):
  --only ID,...      only these matrix cells, by id (name.target)
  --shard i/N        shard i of N (kharness plan), packed by durations in --db; --plan FILE uses a saved plan
  --retry            (run) boot every suspect failed test once more, alone, in the same run
  --db FILE          history index (default results/history.db)

exit codes:
`, strings.Join(target.Names(), ", "))
	for _, o := range outcome.All() {
		fmt.Fprintf(w, "  %3d  %-16s %s\n", o.ExitCode(), o, o.Description())
	}
}

type listFlag struct {
	vals *[]string
	set  bool
}

func (l *listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l *listFlag) Set(s string) error {
	if !l.set {
		*l.vals = []string{}
		l.set = true
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.vals = append(*l.vals, v)
		}
	}
	return nil
}

type common struct {
	cfgPath string
	o       config.Overrides
	// boot only
	gdb     gdbFlag
	pastRun string
	run     runFlags // run and build only (runflags.go)
}

// gdbFlag is --gdb (port 1234) or --gdb=PORT.
type gdbFlag struct {
	set  bool
	port string
}

func (g *gdbFlag) String() string   { return g.port }
func (g *gdbFlag) IsBoolFlag() bool { return true }
func (g *gdbFlag) Set(v string) error {
	g.set = true
	switch v {
	case "true", "":
		g.port = "1234"
	case "false":
		g.set = false
	default:
		if _, err := strconv.Atoi(v); err != nil {
			return fmt.Errorf("--gdb=%q: want a TCP port", v)
		}
		g.port = v
	}
	return nil
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cfgPath, "c", "kharness.yaml", "config file")
	fs.StringVar(&c.o.Source, "source", "", "kernel source")
	fs.Var(&listFlag{vals: &c.o.Targets}, "target", "targets")
	fs.Var(&listFlag{vals: &c.o.PatchSets}, "patchset", "patch sets, stacked in order")
	fs.Var(&listFlag{vals: &c.o.Suites}, "suite", "suites")
	fs.StringVar(&c.o.Accel, "accel", "", "kvm|tcg|auto")
	fs.StringVar(&c.o.Results, "results", "", "results directory")
	fs.StringVar(&c.o.Cache, "cache", "", "cache directory (default $KHARNESS_CACHE or ~/.cache/kharness)")
	fs.DurationVar(&c.o.Duration, "duration", 0, "stress duration per test")
	fs.Var(&listFlag{vals: &c.o.Cells}, "cell", "only the cells whose names match these patterns")
}

func (c *common) load() (*config.Config, error) {
	cfg, err := config.Load(c.cfgPath, c.o)
	if err != nil {
		return nil, &outcome.Error{Outcome: outcome.ConfigError, Err: err}
	}
	return cfg, nil
}

// signalContext cancels on the first SIGINT, SIGTERM or SIGHUP so QEMU
// and make are stopped and the results written as interrupted. A second
// signal does not wait for that: abort (if set) marks the results
// interrupted at once, and kharness exits; its children die with it
// (package proc, boot's Pdeathsig).
func signalContext(stderr io.Writer, abort func()) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-ch
		fmt.Fprintf(stderr, "\nkharness: %v: stopping, writing partial results (again to force)\n", s)
		cancel(fmt.Errorf("received %v", s))
		s = <-ch
		fmt.Fprintf(stderr, "kharness: %v again: exiting now\n", s)
		if abort != nil {
			abort()
		}
		os.Exit(outcome.Interrupted.ExitCode())
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

// isTerminal says whether w is a terminal (live progress lines) or a
// file or pipe (plain periodic lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

func fail(stderr io.Writer, err error) int {
	o := outcome.Of(err)
	fmt.Fprintf(stderr, "kharness: %v\n", err)
	fmt.Fprintf(stderr, "kharness: %s (exit %d)\n", o, o.ExitCode())
	return o.ExitCode()
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return outcome.ConfigError.ExitCode()
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	case "run", "build", "boot":
		return matrixCmd(cmd, rest, stdout, stderr)
	case "rerun":
		return rerunCmd(rest, stdout, stderr)
	case "patchcheck":
		return patchcheckCmd(rest, stdout, stderr)
	case "bisect":
		return bisectCmd(rest, stdout, stderr)
	case "list":
		return listCmd(rest, stdout, stderr)
	case "doctor":
		return doctorCmd(rest, stdout, stderr)
	case "cache":
		return cacheCmd(rest, stdout, stderr)
	case "history":
		return historyCmd(rest, stdout, stderr)
	case "plan":
		return planCmd(rest, stdout, stderr)
	case "merge":
		return mergeCmd(rest, stdout, stderr)
	case "report":
		return reportCmd(rest, stdout, stderr)
	case initramfs.InternalCommand:
		// A child of kharness building an initramfs (see initramfs.Build).
		if len(rest) != 1 {
			fmt.Fprintf(stderr, "kharness %s: want one argument, the request\n", initramfs.InternalCommand)
			return outcome.ConfigError.ExitCode()
		}
		if err := initramfs.Outside(rest[0], stderr); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return outcome.Infra.ExitCode()
		}
		return 0
	}
	fmt.Fprintf(stderr, "kharness: unknown command %q\n\n", cmd)
	usage(stderr)
	return outcome.ConfigError.ExitCode()
}

// cacheCmd is `kharness cache du` (what the cache holds, by kind and
// entry) and `kharness cache prune [--max SIZE]` (least recently used
// entries out until it fits).
func cacheCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "du" && args[0] != "prune") {
		fmt.Fprintln(stderr, "usage: kharness cache du|prune [-c FILE] [--cache DIR] [--max SIZE]")
		return outcome.ConfigError.ExitCode()
	}
	fs := flag.NewFlagSet("cache "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "kharness.yaml", "config file")
	dir := fs.String("cache", "", "cache directory (default from the config, $KHARNESS_CACHE or ~/.cache/kharness)")
	maxFlag := fs.String("max", "", "prune down to this size (default: the config's cache_max)")
	if err := fs.Parse(args[1:]); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	cfg, err := config.Load(*cfgPath, config.Overrides{Cache: *dir})
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "%w", err))
	}
	root, err := cfg.CacheDir()
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "%w", err))
	}
	if args[0] == "prune" {
		max := int64(cfg.CacheMax)
		if *maxFlag != "" {
			var s config.Size
			if err := yaml.Unmarshal([]byte(*maxFlag), &s); err != nil {
				return fail(stderr, outcome.Errorf(outcome.ConfigError, "--max %q: %w", *maxFlag, err))
			}
			max = int64(s)
		}
		removed, err := cache.Prune(root, max, nil, stdout)
		fmt.Fprintf(stdout, "removed %d entries\n", len(removed))
		if err != nil {
			return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
		}
	}
	entries, err := cache.Usage(root)
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	byKind := map[string]int64{}
	var total int64
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSIZE\tLAST USED\tENTRY")
	for _, e := range entries {
		byKind[e.Kind] += e.Bytes
		total += e.Bytes
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Kind, cache.HumanBytes(e.Bytes), e.LastUsed.Format("2006-01-02 15:04"), filepath.Base(e.Path))
	}
	tw.Flush()
	var kinds []string
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(stdout, "\n%s: %s in all (budget %s):", root, cache.HumanBytes(total), cache.HumanBytes(int64(cfg.CacheMax)))
	for _, k := range kinds {
		fmt.Fprintf(stdout, " %s %s;", k, cache.HumanBytes(byKind[k]))
	}
	fmt.Fprintln(stdout)
	return 0
}

func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	install := fs.Bool("install", false, "install missing packages with apt-get")
	src := fs.String("source-package", "linux-source-6.12", "kernel source package to check for")
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	checks := doctor.Checks(*src)
	missing := doctor.Report(stdout, checks)
	if len(missing) == 0 {
		fmt.Fprintln(stdout, "\nall good")
		return 0
	}
	if !*install {
		return outcome.Infra.ExitCode()
	}
	ctx, stop := signalContext(stderr, nil)
	defer stop()
	if err := doctor.Install(ctx, stdout, doctor.Packages(missing), doctor.SourcesDir); err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	if still := doctor.Missing(checks); len(still) > 0 {
		doctor.Report(stdout, still)
		return outcome.Infra.ExitCode()
	}
	fmt.Fprintln(stdout, "\nall good")
	return 0
}

func matrixCmd(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	if cmd == "boot" {
		fs.Var(&c.gdb, "gdb", "start paused with QEMU's gdb stub on this port (default 1234) and write a .gdbinit")
		fs.StringVar(&c.pastRun, "run", "", "boot the kernel and initramfs this past run booted (with --cell)")
	}
	c.run.register(fs, cmd)
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	if fs.NArg() > 0 {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "unexpected arguments: %v", fs.Args()))
	}
	cfg, err := c.load()
	if err != nil {
		return fail(stderr, err)
	}
	var p *run.Pipeline
	ctx, stop := signalContext(stderr, func() {
		if p != nil {
			p.Abort("a second signal")
		}
	})
	defer stop()
	// Long stages show live: one updating line each on a terminal, a
	// plain line every 30 s otherwise (CI logs).
	track := progress.New(stderr, progress.Options{Live: isTerminal(stderr), Every: 30 * time.Second})
	defer track.Close()
	p, err = run.New(ctx, cfg, track)
	if err != nil {
		return fail(stderr, err)
	}
	p.Track = track
	if self, err := os.Executable(); err == nil {
		p.Self = self
	}
	if err := c.run.apply(ctx, p, stderr); err != nil {
		return fail(stderr, err)
	}
	switch cmd {
	case "build":
		return buildCmd(ctx, p, stdout, stderr)
	case "boot":
		return bootCmd(ctx, p, c, stdout, stderr)
	}
	start := time.Now()
	r, store, err := p.Matrix(ctx)
	track.Close()
	if err != nil && r == nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout)
	results.Summary(stdout, r)
	fmt.Fprintf(stdout, "results: %s (%.0fs)\n", store.Dir, time.Since(start).Seconds())
	if err != nil {
		return fail(stderr, err)
	}
	return r.Outcome.ExitCode()
}

func buildCmd(ctx context.Context, p *run.Pipeline, stdout, stderr io.Writer) int {
	var worst []outcome.Outcome
	tmp, err := os.MkdirTemp("", "kharness-build-")
	if err != nil {
		return fail(stderr, err)
	}
	defer os.RemoveAll(tmp)
	for _, c := range p.Cfg.Matrix(p.Catalog) {
		k, err := p.Kernel(ctx, c, filepath.Join(tmp, c.ID))
		if err != nil {
			fmt.Fprintf(stderr, "[%s] %v\n", c.ID, err)
			worst = append(worst, outcome.Of(err))
			continue
		}
		// Columns: cell, image, config, then each stage's seconds (none
		// when cached), for scripts and make bench.
		var st []string
		for _, s := range []string{run.StageSource, run.StagePatch, run.StageKconfig, run.StageBuild} {
			if v, ok := k.Timings[s]; ok {
				st = append(st, fmt.Sprintf("%s=%.1f", s, v))
			}
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", c.ID, k.Image, filepath.Join(k.Dir, "config"), strings.Join(st, ","))
	}
	return outcome.Worst(worst...).ExitCode()
}
