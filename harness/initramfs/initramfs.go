// Package initramfs builds the guest's root file system with u-root's
// mkuimage: the kharness agent as /init, each suite as its own static
// binary in /bin, and a few u-root core commands plus a shell for
// interactive debugging. Images are cached by a hash over everything that
// goes into them, so an unchanged tree costs nothing on the next run.
package initramfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/internal/proc"
	"github.com/kharness/kharness/harness/outcome"
)

// Module is the Go module path holding the agent and the suites.
const Module = "github.com/kharness/kharness"

// AgentPkg is the guest init.
const AgentPkg = Module + "/initramfs/agent"

// coreCmds are the u-root commands in every image, for `kharness boot`.
var coreCmds = []string{"gosh", "ls", "cat", "dmesg", "ps", "mount", "echo", "cp", "mkdir", "rm", "free",
	"uname", "kill", "grep", "sleep", "sync", "hexdump", "tail", "head", "wc", "poweroff"}

// format is bumped whenever the image layout changes, invalidating caches.
const format = "kharness-initramfs-v2"

// Request describes one image.
type Request struct {
	ModuleDir string   // root of the Go module (holds go.mod)
	GOARCH    string   // 386 or amd64
	Suites    []string // suite names: packages suites/<name>
	CacheDir  string
	Log       io.Writer
	Lock      cache.LockWait // waiting for another run building the same image
	// Exec, when set, is the kharness binary to build in (see Build).
	Exec string
}

// Result is a built or cached image.
type Result struct {
	Path     string
	Key      string
	Cached   bool
	Duration time.Duration
	Notes    []string // what the cache repaired
}

// Key hashes every input of the image: the Go toolchain, the target arch,
// the command list, go.mod/go.sum (which pin every outside dependency) and
// the source of every package of this module that the agent and the
// suites import, as `go list -deps` reports it for the target arch. Host
// code that does not go into the image does not invalidate it.
func Key(ctx context.Context, r Request) (string, error) {
	parts := []string{format, runtime.Version(), r.GOARCH, strings.Join(sorted(r.Suites), ","), strings.Join(coreCmds, ",")}
	pkgs := []string{AgentPkg}
	for _, s := range sorted(r.Suites) {
		pkgs = append(pkgs, Module+"/suites/"+s)
	}
	src, err := cache.GoSources(ctx, r.ModuleDir, r.GOARCH, pkgs...)
	if err != nil {
		return "", fmt.Errorf("hash initramfs inputs: %w", err)
	}
	parts = append(parts, src...)
	return cache.Key(parts...), nil
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// Build returns the image for r, building it when it is not cached or
// its checksum no longer matches. With r.Exec set the build runs in that
// program (kharness itself, `kharness internal-initramfs`) as a child in
// its own process group, so that cancelling the run, or kharness dying,
// stops u-root's go build and its compilers too (uimage.Create takes no
// context).
func Build(ctx context.Context, r Request) (*Result, error) {
	start := time.Now()
	key, err := Key(ctx, r)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	dir := filepath.Join(r.CacheDir, "initramfs")
	out := filepath.Join(dir, key[:24]+"-"+r.GOARCH+".cpio")
	lock, err := cache.Acquire(ctx, out+".lock", r.Lock)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	defer lock.Release()
	var notes []string
	switch err := verify(out); {
	case err == nil:
		return &Result{Path: out, Key: key, Cached: true, Duration: time.Since(start)}, nil
	case !errors.Is(err, os.ErrNotExist):
		notes = append(notes, fmt.Sprintf("cached initramfs %s failed verification (%v): rebuilt", filepath.Base(out), err))
		os.Remove(out)
		os.Remove(out + ".sha256")
	}
	cache.SweepTemp(dir, "build-")
	if r.Exec != "" {
		err = buildOutside(ctx, r, out)
	} else {
		err = create(r, out)
	}
	if err != nil {
		os.Remove(out + ".part")
		if ctx.Err() != nil {
			return nil, outcome.Errorf(outcome.Interrupted, "initramfs: %w", ctx.Err())
		}
		return nil, outcome.Errorf(outcome.Infra, "build initramfs for %s: %w", r.GOARCH, err)
	}
	sum, err := cache.FileHash(out + ".part")
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	if err := cache.WriteFile(out+".sha256", []byte(sum+"\n")); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	if err := os.Rename(out+".part", out); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	return &Result{Path: out, Key: key, Duration: time.Since(start), Notes: notes}, nil
}

// verify checks a cached image against the checksum written beside it.
func verify(path string) error {
	want, err := os.ReadFile(path + ".sha256")
	if err != nil {
		if _, serr := os.Stat(path); serr == nil && errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no checksum beside it")
		}
		return err
	}
	got, err := cache.FileHash(path)
	if err != nil {
		return err
	}
	if got != strings.TrimSpace(string(want)) {
		return fmt.Errorf("sha256 %s, recorded %s", got[:12], strings.TrimSpace(string(want))[:min(12, len(want))])
	}
	return nil
}

// buildOutside runs create in `r.Exec internal-initramfs REQUEST`, the
// request as JSON in its argument (the child's stdin is /dev/null: it runs
// in the background of proc's reaper shell).
func buildOutside(ctx context.Context, r Request, out string) error {
	req, err := json.Marshal(outsideRequest{ModuleDir: r.ModuleDir, GOARCH: r.GOARCH, Suites: r.Suites,
		CacheDir: r.CacheDir, Out: out})
	if err != nil {
		return err
	}
	cmd := proc.Command(ctx, r.Exec, InternalCommand, string(req))
	cmd.Stdout, cmd.Stderr = r.Log, r.Log
	return cmd.Run()
}

// InternalCommand is the hidden kharness command that builds an image in
// a child process (see Build).
const InternalCommand = "internal-initramfs"

type outsideRequest struct {
	ModuleDir, GOARCH string
	Suites            []string
	CacheDir, Out     string
}

// Outside is the body of InternalCommand: it decodes the request and
// builds the image at its .part path.
func Outside(request string, log io.Writer) error {
	var q outsideRequest
	if err := json.Unmarshal([]byte(request), &q); err != nil {
		return fmt.Errorf("%s: request: %w", InternalCommand, err)
	}
	return create(Request{ModuleDir: q.ModuleDir, GOARCH: q.GOARCH, Suites: q.Suites, CacheDir: q.CacheDir, Log: log}, q.Out)
}

// create builds the image into out.part with u-root.
func create(r Request, out string) error {
	tmp, err := cache.TempDir(filepath.Dir(out), "build-")
	if err != nil {
		return fmt.Errorf("initramfs temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	env := golang.Default(golang.DisableCGO(), golang.WithGOARCH(r.GOARCH), golang.WithWorkingDir(r.ModuleDir))
	cmds := []string{AgentPkg}
	for _, s := range r.Suites {
		cmds = append(cmds, Module+"/suites/"+s)
	}
	var core []string
	for _, c := range coreCmds {
		core = append(core, "github.com/u-root/u-root/cmds/core/"+c)
	}
	logger := llog.New(slog.LevelInfo, func(format string, v ...any) { fmt.Fprintf(r.Log, "initramfs: "+format+"\n", v...) })
	return uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		// Inlining on: u-root builds with -gcflags=all=-l by default, and
		// the suites are Go as a kernel developer would ship it (the UMCG
		// server loop must not reach a preemptible call via a sync/atomic
		// method left out of line; its throughput is measured too).
		uimage.WithBinaryCommandsOpts(&golang.BuildOpts{EnableInlining: true}, cmds...),
		uimage.WithBusyboxCommands(core...),
		uimage.WithInit("agent"),
		uimage.WithShell("gosh"),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(out+".part"),
	)
}
