// Package source turns a kernel source spec (Debian's source package, a
// tarball or a git tree) into a pristine git commit in the cache, and hands
// out one work tree per patch combination. The pristine copy is never
// modified: work trees are shared clones of it.
package source

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kharness/kharness/harness/cache"
	gitrun "github.com/kharness/kharness/harness/internal/git"
	"github.com/kharness/kharness/harness/internal/proc"
	"github.com/kharness/kharness/harness/outcome"
)

// Kind of a source spec.
type Kind string

// Source kinds.
const (
	Tarball Kind = "tarball"
	GitTree Kind = "git"
)

// Spec is a resolved source argument.
type Spec struct {
	Raw  string // as written
	Kind Kind
	Path string // tarball file or git directory
	Rev  string // git revision (default HEAD)
}

// debianTarball maps "debian:linux-source-6.12" to the file the package installs.
func debianTarball(pkg string) string {
	return filepath.Join("/usr/src", pkg+".tar.xz")
}

// Parse resolves a spec string. Forms: "debian:linux-source-X.Y",
// "/path/to/linux.tar.xz" (or .tar.gz/.tgz/.tar), "/path/to/git/tree[@rev]".
func Parse(raw string) (Spec, error) {
	if pkg, ok := strings.CutPrefix(raw, "debian:"); ok {
		if !strings.HasPrefix(pkg, "linux-source-") {
			pkg = "linux-source-" + pkg
		}
		p := debianTarball(pkg)
		if _, err := os.Stat(p); err != nil {
			return Spec{}, outcome.Errorf(outcome.Infra, "source %q: %s not found: install it with `apt-get install %s` (or run `kharness doctor --install`)", raw, p, pkg)
		}
		return Spec{Raw: raw, Kind: Tarball, Path: p}, nil
	}
	path, rev := raw, ""
	if i := strings.LastIndex(raw, "@"); i > 0 {
		if _, err := os.Stat(raw); err != nil {
			path, rev = raw[:i], raw[i+1:]
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		return Spec{}, outcome.Errorf(outcome.ConfigError, "source %q: %v", raw, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Spec{}, err
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(abs, "Makefile")); err != nil {
			return Spec{}, outcome.Errorf(outcome.ConfigError, "source %q: directory has no top-level Makefile, not a kernel tree", raw)
		}
		if rev == "" {
			rev = "HEAD"
		}
		return Spec{Raw: raw, Kind: GitTree, Path: abs, Rev: rev}, nil
	}
	for _, ext := range []string{".tar.xz", ".tar.gz", ".tgz", ".tar", ".tar.bz2"} {
		if strings.HasSuffix(path, ext) {
			return Spec{Raw: raw, Kind: Tarball, Path: abs}, nil
		}
	}
	return Spec{}, outcome.Errorf(outcome.ConfigError, "source %q: want debian:linux-source-X.Y, a kernel git tree or a .tar.xz/.tar.gz", raw)
}

// Pristine is the unmodified source as a commit in a cache repository.
type Pristine struct {
	ID string // stable identity: content hash of the tarball or the commit id
	// TreeID names the work tree: the tarball's content, or the git
	// repository (every commit of one repository shares one tree, so
	// moving between them rebuilds only what differs).
	TreeID  string
	Repo    string // git repository holding Commit
	Commit  string
	Version string // kernel version from the Makefile, e.g. 6.12.57
	Spec    Spec
}

// git runs git the one way kharness does (package internal/git: scrubbed
// environment, fixed identity and dates so the same tarball always yields
// the same pristine commit id).
func git(ctx context.Context, dir string, log io.Writer, args ...string) (string, error) {
	out, err := gitrun.Run(ctx, dir, gitrun.Opts{Log: log}, args...)
	return strings.TrimSpace(out), err
}

// Prepare makes the pristine commit for s under cacheDir, reusing the
// cached one when the tarball content or commit has been seen before.
func Prepare(ctx context.Context, cacheDir string, s Spec, wait cache.LockWait, log io.Writer) (*Pristine, error) {
	switch s.Kind {
	case Tarball:
		return prepareTarball(ctx, cacheDir, s, wait, log)
	case GitTree:
		commit, err := git(ctx, s.Path, nil, "rev-parse", "--verify", s.Rev+"^{commit}")
		if err != nil {
			return nil, outcome.Errorf(outcome.ConfigError, "source %q: revision %q: %v", s.Raw, s.Rev, err)
		}
		v, _ := kernelVersion(ctx, s.Path, commit)
		return &Pristine{ID: "git-" + commit, TreeID: "gitrepo-" + cache.Key("repo", s.Path)[:20], Repo: s.Path, Commit: commit, Version: v, Spec: s}, nil
	}
	return nil, fmt.Errorf("unknown source kind %q", s.Kind)
}

func prepareTarball(ctx context.Context, cacheDir string, s Spec, wait cache.LockWait, log io.Writer) (*Pristine, error) {
	sum, err := cache.FileHash(s.Path)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "source %s: %v", s.Path, err)
	}
	id := "tar-" + sum[:20]
	dir := filepath.Join(cacheDir, "sources", id)
	lock, err := cache.Acquire(ctx, dir+".lock", wait)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	marker := filepath.Join(dir, "commit")
	if b, err := os.ReadFile(marker); err == nil {
		commit := strings.TrimSpace(string(b))
		v, _ := kernelVersion(ctx, filepath.Join(dir, "repo"), commit)
		return &Pristine{ID: id, TreeID: id, Repo: filepath.Join(dir, "repo"), Commit: commit, Version: v, Spec: s}, nil
	}
	fmt.Fprintf(log, "source: extracting %s into %s (once per tarball content)\n", s.Path, dir)
	os.RemoveAll(dir)
	repo := filepath.Join(dir, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return nil, err
	}
	if _, err := proc.Run(ctx, proc.Cmd{Name: "tar", Args: []string{"-xf", s.Path, "-C", repo, "--strip-components=1", "--no-same-owner"}, Log: log}); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "extract %s: %w", s.Path, err)
	}
	if _, err := os.Stat(filepath.Join(repo, "Makefile")); err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "source %s: the tarball has no top-level Makefile after stripping one directory: not a kernel source tarball", s.Path)
	}
	// The tree is committed whole: a .gitignore in the tarball must not hide files.
	steps := [][]string{
		{"init", "-q"},
		{"add", "-A", "-f", "."},
		{"commit", "-q", "--no-verify", "-m", "pristine " + filepath.Base(s.Path) + " sha256:" + sum},
	}
	for _, a := range steps {
		if _, err := git(ctx, repo, log, a...); err != nil {
			return nil, outcome.Errorf(outcome.Infra, "import %s into git: %w", s.Path, err)
		}
	}
	commit, err := git(ctx, repo, nil, "rev-parse", "HEAD")
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "import %s: %w", s.Path, err)
	}
	if err := cache.WriteFile(marker, []byte(commit+"\n")); err != nil {
		return nil, err
	}
	v, _ := kernelVersion(ctx, repo, commit)
	return &Pristine{ID: id, TreeID: id, Repo: repo, Commit: commit, Version: v, Spec: s}, nil
}

// kernelVersion reads VERSION/PATCHLEVEL/SUBLEVEL from the top Makefile at commit.
func kernelVersion(ctx context.Context, repo, commit string) (string, error) {
	out, err := git(ctx, repo, nil, "show", commit+":Makefile")
	if err != nil {
		return "", err
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() && len(vals) < 4 {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		switch k {
		case "VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION":
			vals[k] = strings.TrimSpace(v)
		}
	}
	return fmt.Sprintf("%s.%s.%s%s", vals["VERSION"], vals["PATCHLEVEL"], vals["SUBLEVEL"], vals["EXTRAVERSION"]), nil
}

// Tree is the one work tree of a source. Every patch stack is a commit
// (refs/kharness/stacks/<key>) made in a scratch checkout of just the files
// its patches touch; building a stack checks its commit out here, which
// rewrites only the files that differ from the stack built before, so make
// rebuilds only what those files feed (a mutant is one file, seconds), and
// the cache holds one tree per source instead of one per stack. The
// caller holds the tree's lock until Release: one build at a time uses it.
type Tree struct {
	Dir  string
	pr   *Pristine
	lock *cache.Lock
	log  io.Writer
}

// TreeDir is where the work tree of a source lives.
func TreeDir(cacheDir, sourceID string) string { return filepath.Join(cacheDir, "trees", sourceID) }

// Release drops the tree's lock.
func (t *Tree) Release() { t.lock.Release() }

// Tree returns the source's work tree, locked, cloning it from the
// pristine repository the first time (or when a killed run left it
// half-made).
func (p *Pristine) Tree(ctx context.Context, cacheDir string, wait cache.LockWait, log io.Writer) (*Tree, error) {
	dir := TreeDir(cacheDir, p.TreeID)
	lock, err := cache.Acquire(ctx, dir+".lock", wait)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "work tree: %w", err)
	}
	t := &Tree{Dir: dir, pr: p, lock: lock, log: log}
	cache.Touch(dir)
	if cache.Exists(filepath.Join(dir, ".kharness-ready")) {
		// A commit the tree's clone has not seen (a newer revision of
		// the same repository): fetch it.
		if _, err := git(ctx, dir, nil, "cat-file", "-e", p.Commit+"^{commit}"); err != nil {
			if _, err := git(ctx, dir, log, "fetch", "-q", p.Repo, p.Commit); err != nil {
				// Servers that refuse a want by id: every ref, then.
				if _, err := git(ctx, dir, log, "fetch", "-q", p.Repo, "+refs/*:refs/kharness/source/*"); err != nil {
					lock.Release()
					return nil, outcome.Errorf(outcome.Infra, "fetch %s into the work tree: %w", p.Commit[:12], err)
				}
			}
		}
		return t, nil
	}
	os.RemoveAll(dir)
	fmt.Fprintf(log, "source: checking out %s %s into %s\n", p.Spec.Raw, p.Commit[:12], dir)
	steps := [][]string{
		{"clone", "-q", "--shared", "--no-checkout", p.Repo, dir},
		{"-C", dir, "checkout", "-q", "--detach", p.Commit},
	}
	for _, a := range steps {
		if _, err := git(ctx, "", log, a...); err != nil {
			lock.Release()
			return nil, outcome.Errorf(outcome.Infra, "check out the source: %w", err)
		}
	}
	// Build directories live in the tree (same relative path to the
	// sources for every stack: ccache hits); git must not see them.
	if err := os.WriteFile(filepath.Join(dir, ".git", "info", "exclude"), []byte("/.kharness-build/\n/.kharness-ready\n"), 0o644); err != nil {
		lock.Release()
		return nil, outcome.Errorf(outcome.Infra, "work tree: %w", err)
	}
	if err := cache.WriteFile(filepath.Join(dir, ".kharness-ready"), []byte("ok\n")); err != nil {
		lock.Release()
		return nil, outcome.Errorf(outcome.Infra, "work tree: %w", err)
	}
	return t, nil
}

// stackRef names the commit of a patch stack.
func stackRef(key string) string { return "refs/kharness/stacks/" + key }

// Stack returns the commit of the patch stack key, making it the first
// time: apply runs in a scratch checkout of the pristine commit that
// holds only paths (the files the patches touch; sparse, so a new stack
// costs its patches, not a checkout of the whole kernel) and commits
// there. A stack whose patches do not apply leaves nothing behind.
func (t *Tree) Stack(ctx context.Context, key string, paths []string, apply func(dir string) error) (string, error) {
	if key == "" {
		return t.pr.Commit, nil
	}
	if c, err := git(ctx, t.Dir, nil, "rev-parse", "-q", "--verify", stackRef(key)+"^{commit}"); err == nil && c != "" {
		return c, nil
	}
	scratch := filepath.Join(t.Dir, ".git", "kharness-scratch")
	git(ctx, t.Dir, nil, "worktree", "remove", "--force", scratch) // left by a killed run
	os.RemoveAll(scratch)
	git(ctx, t.Dir, nil, "worktree", "prune")
	if _, err := git(ctx, t.Dir, t.log, "worktree", "add", "-q", "--detach", "--no-checkout", scratch, t.pr.Commit); err != nil {
		return "", outcome.Errorf(outcome.Infra, "scratch checkout: %w", err)
	}
	defer func() {
		git(context.WithoutCancel(ctx), t.Dir, nil, "worktree", "remove", "--force", scratch)
		os.RemoveAll(scratch)
	}()
	patterns := []string{"/Makefile"} // a non-empty checkout even for a stack of new files
	for _, p := range paths {
		patterns = append(patterns, "/"+p)
	}
	if _, err := git(ctx, scratch, t.log, append([]string{"sparse-checkout", "set", "--no-cone"}, patterns...)...); err != nil {
		return "", outcome.Errorf(outcome.Infra, "scratch checkout: %w", err)
	}
	if _, err := git(ctx, scratch, t.log, "reset", "-q", "--hard", t.pr.Commit); err != nil {
		return "", outcome.Errorf(outcome.Infra, "scratch checkout: %w", err)
	}
	if err := apply(scratch); err != nil {
		return "", err
	}
	commit, err := git(ctx, scratch, nil, "rev-parse", "HEAD")
	if err != nil {
		return "", outcome.Errorf(outcome.Infra, "stack commit: %w", err)
	}
	if _, err := git(ctx, t.Dir, nil, "update-ref", stackRef(key), commit); err != nil {
		return "", outcome.Errorf(outcome.Infra, "stack ref: %w", err)
	}
	return commit, nil
}

// Checkout moves the tree to commit. git rewrites only the files that
// differ from what is checked out, so their mtimes alone change and make
// rebuilds only what depends on them.
func (t *Tree) Checkout(ctx context.Context, commit string) error {
	if head, err := git(ctx, t.Dir, nil, "rev-parse", "HEAD"); err == nil && head == commit {
		return nil
	}
	// A file whose stat changed but whose content did not (a copy, a
	// touch) would look modified and be rewritten by checkout -f: refresh
	// the index first, so only real differences are written.
	git(ctx, t.Dir, nil, "update-index", "-q", "--refresh")
	if _, err := git(ctx, t.Dir, t.log, "checkout", "-q", "-f", "--detach", commit); err != nil {
		return outcome.Errorf(outcome.Infra, "check out %s: %w", commit[:12], err)
	}
	return nil
}

// Git runs git in dir the way this package does (fixed identity and dates).
func Git(ctx context.Context, dir string, log io.Writer, args ...string) (string, error) {
	return git(ctx, dir, log, args...)
}
