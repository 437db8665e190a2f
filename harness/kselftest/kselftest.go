// Package kselftest builds the kernel's own selftest programs from the
// cell's work tree (so a patch that changes a selftest is tested with its
// kernel): the tree's UAPI headers installed into a scratch directory,
// each program static, -m32 for i386, cached by what goes into it (the
// tree's commit, the arch, the programs, the compiler). The guest agent
// runs them (timeouts from the tree's settings files) and the host parses
// their KTAP.
package kselftest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/internal/proc"
	"github.com/kharness/kharness/harness/outcome"
)

// format is bumped when the build changes, invalidating the cache.
const format = "kharness-kselftest-v1"

// DefaultTimeout is kselftest's own per-program default (runner.sh).
const DefaultTimeout = 45 * time.Second

// Request is one build.
type Request struct {
	Tree     string   // the kernel work tree, checked out at Commit
	Commit   string   // the tree's commit (the cache key's part)
	Arch     string   // make ARCH of the target: i386 or x86_64
	Paths    []string // programs, e.g. tools/testing/selftests/mm/cow
	Compiler string   // the compiler's identity, for the key
	CacheDir string
	Log      io.Writer
	Lock     cache.LockWait
}

// Result is a built (or cached) set of programs.
type Result struct {
	Dir string // holds the programs and manifest.json
	Key string
	// Programs maps a program's name to its file in Dir.
	Programs map[string]string
	// Timeouts are the tree's settings (timeout=N) per program.
	Timeouts map[string]time.Duration
	Cached   bool
	Duration time.Duration
}

type manifest struct {
	Programs map[string]string        `json:"programs"`
	Timeouts map[string]time.Duration `json:"timeouts"`
	SHA256   map[string]string        `json:"sha256"`
}

// Key hashes what goes into the programs.
func Key(r Request) string {
	paths := append([]string(nil), r.Paths...)
	sort.Strings(paths)
	return cache.Key(format, r.Commit, r.Arch, strings.Join(paths, ","), r.Compiler)
}

// Build returns the programs, building them when they are not cached.
func Build(ctx context.Context, r Request) (*Result, error) {
	start := time.Now()
	key := Key(r)
	dir := filepath.Join(r.CacheDir, "kselftests", key[:24])
	lock, err := cache.Acquire(ctx, dir+".lock", r.Lock)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
	}
	defer lock.Release()
	if m, err := verify(dir); err == nil {
		cache.Touch(dir)
		return &Result{Dir: dir, Key: key, Programs: m.Programs, Timeouts: m.Timeouts, Cached: true, Duration: time.Since(start)}, nil
	}
	os.RemoveAll(dir)
	tmp, err := cache.TempDir(filepath.Join(r.CacheDir, "kselftests"), "build-")
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
	}
	defer os.RemoveAll(tmp)
	// The tree's UAPI headers, as the selftests want them (KHDR_INCLUDES).
	hdr := filepath.Join(tmp, "hdr")
	if _, err := proc.Run(ctx, proc.Cmd{Name: "make", Args: []string{"-C", r.Tree, "O=" + hdr, "ARCH=" + r.Arch, "-s",
		"headers_install", "INSTALL_HDR_PATH=" + filepath.Join(hdr, "usr")}, Log: r.Log}); err != nil {
		return nil, buildErr("install the tree's UAPI headers", err)
	}
	m := manifest{Programs: map[string]string{}, Timeouts: map[string]time.Duration{}, SHA256: map[string]string{}}
	byDir := map[string][]string{}
	for _, p := range r.Paths {
		byDir[filepath.Dir(p)] = append(byDir[filepath.Dir(p)], filepath.Base(p))
	}
	var dirs []string
	for d := range byDir {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	out := filepath.Join(tmp, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
	}
	for _, d := range dirs {
		src := filepath.Join(r.Tree, d)
		if err := prepare(src, r.Arch); err != nil {
			return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
		}
		cc, arch := "gcc", r.Arch
		if r.Arch == "i386" {
			cc, arch = "gcc -m32", "x86"
		}
		args := []string{"-C", src, "OUTPUT=" + out, "ARCH=" + arch, "CC=" + cc, "LDFLAGS=-static",
			"KHDR_INCLUDES=-isystem " + filepath.Join(hdr, "usr", "include")}
		for _, name := range byDir[d] {
			args = append(args, filepath.Join(out, name))
		}
		fmt.Fprintf(r.Log, "kselftest: make %s\n", strings.Join(args, " "))
		if _, err := proc.Run(ctx, proc.Cmd{Name: "make", Args: args, Log: r.Log}); err != nil {
			return nil, buildErr("build "+d, err)
		}
		timeout := settingsTimeout(src)
		for _, name := range byDir[d] {
			m.Programs[name] = name
			m.Timeouts[name] = timeout
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
	}
	for name := range m.Programs {
		if err := cache.CopyFile(filepath.Join(out, name), filepath.Join(dir, name)); err != nil {
			return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
		}
		os.Chmod(filepath.Join(dir, name), 0o755)
		if m.SHA256[name], err = cache.FileHash(filepath.Join(dir, name)); err != nil {
			return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
		}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := cache.WriteFile(filepath.Join(dir, "manifest.json"), b); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "kselftests: %w", err)
	}
	return &Result{Dir: dir, Key: key, Programs: m.Programs, Timeouts: m.Timeouts, Duration: time.Since(start)}, nil
}

// hostToolMissing matches what a build prints when the host, not the
// tree, is short of something: a tool the shell cannot find, a library or
// header of a missing package, a full disk.
var hostToolMissing = regexp.MustCompile(`(?m)(^/bin/sh: \d+: \S+: not found|: command not found|executable file not found|No such file or directory: '[^']+'$|cannot find -l\S+|gnu/stubs-32\.h|No space left on device)`)

// buildErr classifies a failed selftest build: the tree's code (a patch
// that breaks a selftest) is build-failed, a missing host tool infra.
func buildErr(what string, err error) error {
	msg := err.Error()
	if hostToolMissing.MatchString(msg) {
		return outcome.Errorf(outcome.Infra, "kselftests: %s: the host lacks what the build needs (kharness doctor --install adds rsync, gcc-multilib, libc6-dev-i386, liburing-dev): %w", what, err)
	}
	return outcome.Errorf(outcome.BuildFail, "kselftests: %s: %w", what, err)
}

// prepare makes a selftest directory build for this arch: the mm tests'
// check_config.sh probes liburing by compiling only, which says yes to a
// 32-bit build when the host has 64-bit liburing; i386 gets "no liburing"
// written up front, x86_64 a fresh probe.
func prepare(src, arch string) error {
	for _, f := range []string{"local_config.h", "local_config.mk"} {
		os.Remove(filepath.Join(src, f))
	}
	if _, err := os.Stat(filepath.Join(src, "check_config.sh")); err != nil || arch != "i386" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(src, "local_config.h"), []byte("// No liburing support found (kharness: i386 build)\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(src, "local_config.mk"), []byte("# kharness: i386 build, no 32-bit liburing\nIOURING_EXTRA_LIBS =\n"), 0o644)
}

// settingsTimeout reads a selftest directory's settings file.
func settingsTimeout(dir string) time.Duration {
	f, err := os.Open(filepath.Join(dir, "settings"))
	if err != nil {
		return DefaultTimeout
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "timeout="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return DefaultTimeout
}

// verify checks a cached build against its manifest.
func verify(dir string) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for name, want := range m.SHA256 {
		got, err := cache.FileHash(filepath.Join(dir, name))
		if err != nil || got != want {
			return nil, fmt.Errorf("%s does not match its checksum", name)
		}
	}
	return &m, nil
}
