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
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

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
	ID      string // stable identity: content hash of the tarball or the commit id
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
		return &Pristine{ID: "git-" + commit, Repo: s.Path, Commit: commit, Version: v, Spec: s}, nil
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
		return &Pristine{ID: id, Repo: filepath.Join(dir, "repo"), Commit: commit, Version: v, Spec: s}, nil
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
	return &Pristine{ID: id, Repo: repo, Commit: commit, Version: v, Spec: s}, nil
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

// Worktree is a checkout of the pristine commit for one patch combination.
type Worktree struct {
	Dir string
	// Ready is true when the tree was found complete in the cache (patches
	// already applied by an earlier run).
	Ready bool
	lock  *cache.Lock
}

// Release drops the work tree's lock.
func (w *Worktree) Release() { w.lock.Release() }

// MarkReady records that the patches were applied, so later runs reuse the tree.
func (w *Worktree) MarkReady() error {
	return cache.WriteFile(filepath.Join(w.Dir, ".kharness-ready"), []byte("ok\n"))
}

// TreeDir is where the work tree for key lives.
func TreeDir(cacheDir, key string) string { return filepath.Join(cacheDir, "trees", key[:24]) }

// Worktree returns the work tree for key (a hash over the pristine id and
// the patches), creating a fresh checkout when it is missing or was left
// half-made. Before it makes one it prunes the cache to keep trees (see
// PruneTrees; 0 keeps all). The caller holds its lock until Release.
func (p *Pristine) Worktree(ctx context.Context, cacheDir, key string, keep int, wait cache.LockWait, log io.Writer) (*Worktree, error) {
	dir := TreeDir(cacheDir, key)
	lock, err := cache.Acquire(ctx, dir+".lock", wait)
	if err != nil {
		return nil, err
	}
	w := &Worktree{Dir: dir, lock: lock}
	now := time.Now()
	if cache.Exists(filepath.Join(dir, ".kharness-ready")) {
		w.Ready = true
		os.Chtimes(dir, now, now) // most recently used
		return w, nil
	}
	os.RemoveAll(dir)
	if keep > 0 {
		if _, err := PruneTrees(cacheDir, keep-1, log); err != nil {
			fmt.Fprintf(log, "source: pruning work trees: %v\n", err)
		}
	}
	fmt.Fprintf(log, "source: checking out %s %s into %s\n", p.Spec.Raw, p.Commit[:12], dir)
	if _, err := git(ctx, "", log, "clone", "-q", "--shared", "--no-checkout", p.Repo, dir); err != nil {
		lock.Release()
		return nil, outcome.Errorf(outcome.Infra, "clone pristine source: %w", err)
	}
	if _, err := git(ctx, dir, log, "checkout", "-q", "--detach", p.Commit); err != nil {
		lock.Release()
		return nil, outcome.Errorf(outcome.Infra, "checkout pristine source: %w", err)
	}
	return w, nil
}

// PruneTrees deletes the least recently used work trees beyond keep. Each
// tree with its build directories takes 2-3 GB, and every patch
// combination (each mutant) makes one: without a bound a nightly matrix
// fills the disk. A tree in use (its lock held) is never touched; a
// deleted one is checked out again when needed, and its kernels stay
// cached. It returns the directories it removed.
func PruneTrees(cacheDir string, keep int, log io.Writer) ([]string, error) {
	root := filepath.Join(cacheDir, "trees")
	ents, err := os.ReadDir(root)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list work trees: %w", err)
	}
	type tree struct {
		dir  string
		used time.Time
	}
	var trees []tree
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		trees = append(trees, tree{filepath.Join(root, e.Name()), fi.ModTime()})
	}
	if len(trees) <= keep {
		return nil, nil
	}
	sort.Slice(trees, func(i, j int) bool { return trees[i].used.After(trees[j].used) })
	var removed []string
	var errs *multierror.Error
	for _, t := range trees[max(keep, 0):] {
		l, ok, err := cache.TryAcquire(t.dir + ".lock")
		if err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		if !ok {
			continue // in use by another run
		}
		fmt.Fprintf(log, "source: removing least recently used work tree %s (last used %s)\n", t.dir, t.used.Format(time.RFC3339))
		if err := os.RemoveAll(t.dir); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("remove work tree %s: %w", t.dir, err))
		} else {
			removed = append(removed, t.dir)
		}
		l.Release()
	}
	return removed, errs.ErrorOrNil()
}

// Git runs git in dir the way this package does (fixed identity and dates).
func Git(ctx context.Context, dir string, log io.Writer, args ...string) (string, error) {
	return git(ctx, dir, log, args...)
}
