// Package initramfs builds the guest's root file system with u-root's
// mkuimage: the kharness agent as /init, each suite as its own static
// binary in /bin, and a few u-root core commands plus a shell for
// interactive debugging. Images are cached by a hash over everything that
// goes into them, so an unchanged tree costs nothing on the next run.
package initramfs

import (
	"context"
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
}

// Result is a built or cached image.
type Result struct {
	Path     string
	Key      string
	Cached   bool
	Duration time.Duration
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

// Build returns the image for r, building it when it is not cached.
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
		return nil, err
	}
	defer lock.Release()
	if cache.Exists(out) {
		return &Result{Path: out, Key: key, Cached: true, Duration: time.Since(start)}, nil
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "initramfs temp dir: %w", err)
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
	part := out + ".part"
	logger := llog.New(slog.LevelInfo, func(format string, v ...any) { fmt.Fprintf(r.Log, "initramfs: "+format+"\n", v...) })
	err = uimage.Create(logger,
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
		uimage.WithCPIOOutput(part),
	)
	if err != nil {
		os.Remove(part)
		if ctx.Err() != nil {
			return nil, outcome.Errorf(outcome.Interrupted, "initramfs: %w", ctx.Err())
		}
		return nil, outcome.Errorf(outcome.Infra, "build initramfs for %s: %w", r.GOARCH, err)
	}
	if err := os.Rename(part, out); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "initramfs: %w", err)
	}
	return &Result{Path: out, Key: key, Duration: time.Since(start)}, nil
}
