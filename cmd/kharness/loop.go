package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/progress"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/run"
	"github.com/kharness/kharness/harness/target"
)

// bootCmd boots one cell's kernel with the agent in shell mode and the
// console on this terminal (Ctrl-A X quits QEMU): the first cell of the
// matrix, built as `run` would, or with --run a past run's very kernel
// and initramfs. --gdb starts it paused with QEMU's gdb stub and writes a
// .gdbinit that loads the vmlinux of that image.
func bootCmd(ctx context.Context, p *run.Pipeline, c common, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "kharness-boot-")
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	var spec boot.Spec
	var vmlinux string
	if c.pastRun != "" {
		if len(c.o.Cells) != 1 {
			return fail(stderr, outcome.Errorf(outcome.ConfigError, "--run %s needs one --cell (a cell id of that run)", c.pastRun))
		}
		var rec boot.Record
		if spec, rec, err = p.PastBoot(c.pastRun, c.o.Cells[0], dir); err != nil {
			return fail(stderr, err)
		}
		vmlinux = rec.Vmlinux
	} else {
		cells := p.Cfg.Matrix(p.Catalog)
		if len(cells) == 0 {
			return fail(stderr, outcome.Errorf(outcome.ConfigError, "the matrix is empty"))
		}
		cell := cells[0]
		if len(cells) > 1 {
			fmt.Fprintf(stderr, "kharness boot: %d cells match, booting %s (narrow with --target/--patchset)\n", len(cells), cell.ID)
		}
		t, _ := target.Lookup(cell.Target)
		k, err := p.Kernel(ctx, cell, dir)
		if err != nil {
			return fail(stderr, err)
		}
		ir, err := p.Initramfs(ctx, t, stderr, nil)
		if err != nil {
			return fail(stderr, err)
		}
		accel, why, err := p.Accel(ctx, t)
		if err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintf(stderr, "kharness boot: %s under %s (%s)\n", cell.ID, accel, why)
		spec = p.BootSpec(cell, t, k, ir.Path, accel, dir)
		vmlinux = filepath.Join(k.Dir, "vmlinux")
	}
	spec.Guest.Mode = guest.ModeShell
	qargs := boot.Args(spec, "stdio,mux=on,signal=off", "null")
	qargs = append(qargs, "-mon", "chardev=con,mode=readline")
	if c.gdb.set {
		gdbinit, err := writeGDBInit(dir, spec, vmlinux, c.gdb.port)
		if err != nil {
			return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
		}
		qargs = append(qargs, "-gdb", "tcp::"+c.gdb.port, "-S")
		fmt.Fprintf(stderr, "kharness boot: paused; attach with: %s -x %s\n", gdbBinary(spec.Target.Name), gdbinit)
	}
	fmt.Fprintln(stderr, "kharness boot: Ctrl-A X quits")
	q := exec.CommandContext(ctx, spec.Target.QEMU, qargs...)
	q.Stdin, q.Stdout, q.Stderr = os.Stdin, stdout, stderr
	q.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := q.Run(); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fail(stderr, outcome.Errorf(outcome.Infra, "%s: %w", spec.Target.QEMU, err))
		}
	}
	return 0
}

// gdbBinary is the debugger for a target: gdb-multiarch when installed
// (it knows i386 and x86_64 alike), else the host's gdb.
func gdbBinary(string) string { // target name: one debugger serves both today
	if _, err := exec.LookPath("gdb-multiarch"); err == nil {
		return "gdb-multiarch"
	}
	return "gdb"
}

// writeGDBInit writes a .gdbinit beside the boot: the architecture of the
// target, the vmlinux of the very image that boots (inside the kernel's
// cache entry, not a guess at an O= directory), and the stub's port. The
// kernel boots with nokaslr (every target's command line), so symbols
// are where vmlinux says.
func writeGDBInit(dir string, spec boot.Spec, vmlinux, port string) (string, error) {
	if vmlinux == "" {
		return "", fmt.Errorf("this kernel has no vmlinux in its cache entry: gdb would have no symbols")
	}
	if _, err := os.Stat(vmlinux); err != nil {
		return "", fmt.Errorf("vmlinux: %w", err)
	}
	arch := "i386:x86-64"
	if spec.Target.Arch == "i386" {
		arch = "i386"
	}
	if !strings.Contains(strings.Join(spec.Target.Cmdline, " "), "nokaslr") {
		return "", fmt.Errorf("target %s boots with KASLR: breakpoints would not match vmlinux", spec.Target.Name)
	}
	init := fmt.Sprintf(`# kharness boot --gdb: the kernel %s, paused at its first instruction.
# It is not decompressed yet: use hardware breakpoints until it runs
# (hbreak start_kernel, continue); vmlinux has symbols, not debug info.
set pagination off
set architecture %s
file %s
target remote :%s
`, spec.Kernel, arch, vmlinux, port)
	path := filepath.Join(dir, ".gdbinit")
	return path, os.WriteFile(path, []byte(init), 0o644)
}

// rerunCmd is `kharness rerun RUN [--cell C] [--test PATTERN] [--count N |
// --until-fail]`: the past run's tests again on its very kernels and
// initramfs images, recorded as a new run.
func rerunCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rerun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	fs.StringVar(&c.cfgPath, "c", "kharness.yaml", "config file (its results directory holds the run)")
	fs.StringVar(&c.o.Results, "results", "", "results directory")
	fs.Var(&listFlag{vals: &c.o.Cells}, "cell", "only these cells of the run (shell patterns over cell ids and names)")
	test := fs.String("test", "", "only the tests matching suite:regexp (or regexp, in every suite)")
	count := fs.Int("count", 0, "rounds (default 1; with --until-fail, at most this many, default 100)")
	untilFail := fs.Bool("until-fail", false, "repeat until a round does not pass")
	// Flags may follow the run id.
	var runID string
	rest := args
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return outcome.ConfigError.ExitCode()
		}
		if fs.NArg() == 0 {
			break
		}
		if runID != "" {
			return fail(stderr, outcome.Errorf(outcome.ConfigError, "rerun takes one run id, got %q and %q", runID, fs.Arg(0)))
		}
		runID, rest = fs.Arg(0), fs.Args()[1:]
	}
	if runID == "" {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "usage: kharness rerun RUN-ID [--cell C] [--test PATTERN] [--count N | --until-fail]"))
	}
	if *count < 0 {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "--count %d: want a positive number", *count))
	}
	cells := c.o.Cells
	c.o.Cells = nil // they name the past run's cells, not the config's
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
	track := progress.New(stderr, progress.Options{Live: isTerminal(stderr), Every: 30 * time.Second})
	defer track.Close()
	if p, err = run.New(ctx, cfg, track); err != nil {
		return fail(stderr, err)
	}
	p.Track = track
	start := time.Now()
	r, store, err := p.Rerun(ctx, run.RerunRequest{Run: runID, Cells: cells, Tests: *test, Count: *count, UntilFail: *untilFail})
	track.Close()
	if err != nil && r == nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout)
	results.Summary(stdout, r)
	fmt.Fprintf(stdout, "results: %s (%.0fs, %d round(s))\n", store.Dir, time.Since(start).Seconds(), len(r.Cells))
	if err != nil {
		return fail(stderr, err)
	}
	return r.Outcome.ExitCode()
}
