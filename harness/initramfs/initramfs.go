// Package initramfs builds the guest's root file system: the kharness
// agent as /init, each suite as its own static binary in /bin, and a few
// u-root core commands plus a shell for interactive debugging.
//
// It is built in two layers so that an edit costs seconds: the u-root
// core (a busybox of coreCmds made by mkuimage, which always rebuilds
// with -a) is cached by what goes into it alone (Go, go.sum, the command
// list), and the agent and suites are built with a plain `go build`, whose
// cache recompiles only the packages that changed. The final image is the
// core plus those binaries, cached by a hash over all of it, so an
// unchanged tree costs nothing.
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
const format = "kharness-initramfs-v3"

// ldflags make the binaries small and reproducible (as u-root's were).
const ldflags = "-s -w -buildid="

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
	// OnPhase, when set, is told what the build is doing now.
	OnPhase func(phase string)
}

func (r Request) phase(p string) {
	if r.OnPhase != nil {
		r.OnPhase(p)
	}
}

// Result is a built or cached image.
type Result struct {
	Path     string
	Key      string
	Cached   bool
	Duration time.Duration
	// Core and Binaries are the time of the two layers (0 when cached).
	Core, Binaries time.Duration
	Notes          []string // what the cache repaired
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
// its checksum no longer matches. The core layer is built, when it is
// missing, in r.Exec (kharness itself, `kharness internal-initramfs`) as a
// child in its own process group, so that cancelling the run, or
// kharness dying, stops u-root's go build too (uimage.Create takes no
// context); the suites' go build is a child of its own anyway.
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
	res := &Result{Path: out, Key: key}
	switch err := verify(out); {
	case err == nil:
		res.Cached, res.Duration = true, time.Since(start)
		cache.Touch(out) // most recently used, for the cache budget
		return res, nil
	case !errors.Is(err, os.ErrNotExist):
		res.Notes = append(res.Notes, fmt.Sprintf("cached initramfs %s failed verification (%v): rebuilt", filepath.Base(out), err))
		os.Remove(out)
		os.Remove(out + ".sha256")
	}
	cache.SweepTemp(dir, "build-")
	fail := func(what string, err error) (*Result, error) {
		os.Remove(out + ".part")
		if ctx.Err() != nil {
			return nil, outcome.Errorf(outcome.Interrupted, "initramfs: %w", ctx.Err())
		}
		return nil, outcome.Errorf(outcome.Infra, "initramfs for %s: %s: %w", r.GOARCH, what, err)
	}
	corePath, coreNotes, err := r.core(ctx, dir)
	res.Notes = append(res.Notes, coreNotes...)
	if err != nil {
		return fail("u-root core", err)
	}
	res.Core = time.Since(start)
	tmp, err := cache.TempDir(dir, "build-")
	if err != nil {
		return fail("temp dir", err)
	}
	defer os.RemoveAll(tmp)
	bstart := time.Now()
	r.phase("go build: agent and suites")
	if err := r.binaries(ctx, tmp); err != nil {
		return fail("go build", err)
	}
	res.Binaries = time.Since(bstart)
	files := []string{filepath.Join(tmp, "agent") + ":bin/agent"}
	for _, s := range sorted(r.Suites) {
		files = append(files, filepath.Join(tmp, s)+":bin/"+s)
	}
	logger := llog.New(slog.LevelInfo, func(format string, v ...any) { fmt.Fprintf(r.Log, "initramfs: "+format+"\n", v...) })
	r.phase("cpio")
	err = uimage.Create(logger,
		uimage.WithBaseFile(corePath),
		uimage.WithFiles(files...),
		uimage.WithInit("/bin/agent"),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(out+".part"),
	)
	if err != nil {
		return fail("compose the image", err)
	}
	if err := publishImage(out); err != nil {
		return fail("publish", err)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// publishImage records out.part's checksum and gives it its name.
func publishImage(out string) error {
	sum, err := cache.FileHash(out + ".part")
	if err != nil {
		return err
	}
	if err := cache.WriteFile(out+".sha256", []byte(sum+"\n")); err != nil {
		return err
	}
	return os.Rename(out+".part", out)
}

// binaries builds the agent and the suites into dir with the go command:
// its build cache makes an edit of one suite cost that suite.
func (r Request) binaries(ctx context.Context, dir string) error {
	pkgs := []string{AgentPkg}
	for _, s := range sorted(r.Suites) {
		pkgs = append(pkgs, Module+"/suites/"+s)
	}
	args := append([]string{"build", "-trimpath", "-ldflags=" + ldflags, "-o", dir + "/"}, pkgs...)
	_, err := proc.Run(ctx, proc.Cmd{Dir: r.ModuleDir, Name: "go", Args: args, Log: r.Log,
		Env: []string{"GOOS=linux", "GOARCH=" + r.GOARCH, "CGO_ENABLED=0", "GOFLAGS="}})
	return err
}

// coreKey hashes what goes into the u-root layer.
func (r Request) coreKey() (string, error) {
	parts := []string{format, "core", runtime.Version(), r.GOARCH, strings.Join(coreCmds, ",")}
	for _, f := range []string{"go.mod", "go.sum"} {
		h, err := cache.FileHash(filepath.Join(r.ModuleDir, f))
		if err != nil {
			return "", err
		}
		parts = append(parts, f, h)
	}
	return cache.Key(parts...), nil
}

// core returns the u-root layer, building it when it is missing.
func (r Request) core(ctx context.Context, dir string) (string, []string, error) {
	key, err := r.coreKey()
	if err != nil {
		return "", nil, err
	}
	out := filepath.Join(dir, "core-"+key[:24]+"-"+r.GOARCH+".cpio")
	lock, err := cache.Acquire(ctx, out+".lock", r.Lock)
	if err != nil {
		return "", nil, err
	}
	defer lock.Release()
	var notes []string
	switch err := verify(out); {
	case err == nil:
		cache.Touch(out)
		return out, nil, nil
	case !errors.Is(err, os.ErrNotExist):
		notes = append(notes, fmt.Sprintf("cached u-root core %s failed verification (%v): rebuilt", filepath.Base(out), err))
	}
	fmt.Fprintf(r.Log, "initramfs: building the u-root core for %s (once per Go and go.sum)\n", r.GOARCH)
	r.phase("u-root core (once per Go and go.sum)")
	if r.Exec != "" {
		err = buildOutside(ctx, r, out)
	} else {
		err = createCore(r, out)
	}
	if err != nil {
		os.Remove(out + ".part")
		return "", notes, err
	}
	return out, notes, publishImage(out)
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
	if w := strings.TrimSpace(string(want)); got != w {
		return fmt.Errorf("sha256 %s, recorded %s", got[:12], w[:min(12, len(w))])
	}
	return nil
}

// buildOutside runs createCore in `r.Exec internal-initramfs REQUEST`, the
// request as JSON in its argument (the child's stdin is /dev/null: it runs
// in the background of proc's reaper shell).
func buildOutside(ctx context.Context, r Request, out string) error {
	req, err := json.Marshal(outsideRequest{ModuleDir: r.ModuleDir, GOARCH: r.GOARCH, Out: out})
	if err != nil {
		return err
	}
	cmd := proc.Command(ctx, r.Exec, InternalCommand, string(req))
	cmd.Stdout, cmd.Stderr = r.Log, r.Log
	return cmd.Run()
}

// InternalCommand is the hidden kharness command that builds the u-root
// core in a child process (see Build).
const InternalCommand = "internal-initramfs"

type outsideRequest struct {
	ModuleDir, GOARCH, Out string
}

// Outside is the body of InternalCommand: it decodes the request and
// builds the core at its .part path.
func Outside(request string, log io.Writer) error {
	var q outsideRequest
	if err := json.Unmarshal([]byte(request), &q); err != nil {
		return fmt.Errorf("%s: request: %w", InternalCommand, err)
	}
	return createCore(Request{ModuleDir: q.ModuleDir, GOARCH: q.GOARCH, Log: log}, q.Out)
}

// createCore builds the u-root layer into out.part: the busybox of the
// core commands, gosh as /bin/sh, and u-root's base directories.
func createCore(r Request, out string) error {
	tmp, err := cache.TempDir(filepath.Dir(out), "build-")
	if err != nil {
		return fmt.Errorf("initramfs temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	env := golang.Default(golang.DisableCGO(), golang.WithGOARCH(r.GOARCH), golang.WithWorkingDir(r.ModuleDir))
	var core []string
	for _, c := range coreCmds {
		core = append(core, "github.com/u-root/u-root/cmds/core/"+c)
	}
	logger := llog.New(slog.LevelInfo, func(format string, v ...any) { fmt.Fprintf(r.Log, "initramfs: "+format+"\n", v...) })
	return uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithBusyboxCommands(core...),
		uimage.WithInit(""),
		uimage.WithShell("gosh"),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(out+".part"),
	)
}

// Extend returns base with more files in it (guest path → host file or,
// for content made on the fly, data), cached by the content of both: a
// cell's kselftest programs, built from its own tree, ride on the image
// every cell shares.
func Extend(ctx context.Context, base string, files map[string]string, data map[string][]byte, cacheDir string, log io.Writer, wait cache.LockWait) (string, error) {
	baseSum, err := os.ReadFile(base + ".sha256")
	if err != nil {
		return "", outcome.Errorf(outcome.Infra, "initramfs %s has no checksum: %w", base, err)
	}
	parts := []string{format, "extend", strings.TrimSpace(string(baseSum))}
	var guests []string
	for g := range files {
		guests = append(guests, g)
	}
	sort.Strings(guests)
	for _, g := range guests {
		h, err := cache.FileHash(files[g])
		if err != nil {
			return "", outcome.Errorf(outcome.Infra, "initramfs: %w", err)
		}
		parts = append(parts, g, h)
	}
	var dnames []string
	for g := range data {
		dnames = append(dnames, g)
	}
	sort.Strings(dnames)
	for _, g := range dnames {
		parts = append(parts, g, cache.Key(string(data[g])))
	}
	key := cache.Key(parts...)
	dir := filepath.Join(cacheDir, "initramfs")
	out := filepath.Join(dir, "ext-"+key[:24]+".cpio")
	lock, err := cache.Acquire(ctx, out+".lock", wait)
	if err != nil {
		return "", outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	defer lock.Release()
	if verify(out) == nil {
		cache.Touch(out)
		return out, nil
	}
	tmp, err := cache.TempDir(dir, "build-")
	if err != nil {
		return "", outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)
	var specs []string
	for _, g := range guests {
		specs = append(specs, files[g]+":"+strings.TrimPrefix(g, "/"))
	}
	for i, g := range dnames {
		p := filepath.Join(tmp, fmt.Sprintf("data-%d", i))
		if err := os.WriteFile(p, data[g], 0o644); err != nil {
			return "", outcome.Errorf(outcome.Infra, "initramfs: %w", err)
		}
		specs = append(specs, p+":"+strings.TrimPrefix(g, "/"))
	}
	logger := llog.New(slog.LevelInfo, func(format string, v ...any) { fmt.Fprintf(log, "initramfs: "+format+"\n", v...) })
	if err := uimage.Create(logger, uimage.WithBaseFile(base), uimage.WithFiles(specs...), uimage.WithSkipLDD(),
		uimage.WithExistingInit(true), uimage.WithTempDir(tmp), uimage.WithCPIOOutput(out+".part")); err != nil {
		os.Remove(out + ".part")
		return "", outcome.Errorf(outcome.Infra, "extend the initramfs: %w", err)
	}
	if err := publishImage(out); err != nil {
		return "", outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	return out, nil
}
