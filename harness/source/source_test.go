package source

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/outcome"
)

// miniKernel writes a directory that looks like a kernel tree.
func miniKernel(t *testing.T, dir string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "mm"), 0o755)
	os.WriteFile(filepath.Join(dir, "Makefile"), []byte("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "mm", "highmem.c"), []byte("int x;\n"), 0o644)
	// Debian's tarball ignores everything at the top: the import must not.
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("*\n"), 0o644)
}

func TestParse(t *testing.T) {
	tmp := t.TempDir()
	tree := filepath.Join(tmp, "linux")
	miniKernel(t, tree)
	notKernel := filepath.Join(tmp, "empty")
	os.MkdirAll(notKernel, 0o755)
	tarball := filepath.Join(tmp, "linux-6.12.tar.gz")
	os.WriteFile(tarball, nil, 0o644)
	os.WriteFile(filepath.Join(tmp, "x.zip"), nil, 0o644)
	tests := []struct {
		spec    string
		kind    Kind
		rev     string
		errWant string
		o       outcome.Outcome
	}{
		{spec: tree, kind: GitTree, rev: "HEAD"},
		{spec: tree + "@v6.12", kind: GitTree, rev: "v6.12"},
		{spec: tarball, kind: Tarball},
		{spec: notKernel, errWant: "no top-level Makefile", o: outcome.ConfigError},
		{spec: filepath.Join(tmp, "nope.tar.xz"), errWant: "no such file", o: outcome.ConfigError},
		{spec: filepath.Join(tmp, "x.zip"), errWant: "want debian:linux-source-X.Y", o: outcome.ConfigError},
		{spec: "debian:linux-source-0.1", errWant: "apt-get install linux-source-0.1", o: outcome.Infra},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := Parse(tc.spec)
			if tc.errWant != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errWant) || outcome.Of(err) != tc.o {
					t.Fatalf("err = %v (%s), want %q (%s)", err, outcome.Of(err), tc.errWant, tc.o)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Kind != tc.kind || s.Rev != tc.rev {
				t.Errorf("got %+v", s)
			}
		})
	}
}

func TestPrepareTarballIsCachedAndPristine(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "linux-source-6.12")
	miniKernel(t, src)
	tarball := filepath.Join(tmp, "linux-source-6.12.tar.xz")
	if out, err := exec.Command("tar", "-cJf", tarball, "-C", tmp, "linux-source-6.12").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	s, err := Parse(tarball)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cache := filepath.Join(tmp, "cache")
	p1, err := Prepare(ctx, cache, s, lockWait, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Version != "6.12.117" || !strings.HasPrefix(p1.ID, "tar-") {
		t.Errorf("pristine %+v", p1)
	}
	p2, err := Prepare(ctx, cache, s, lockWait, io.Discard)
	if err != nil || p2.Commit != p1.Commit {
		t.Fatalf("second prepare: %v, commit %s vs %s", err, p2.Commit, p1.Commit)
	}
	w, err := p1.Worktree(ctx, cache, strings.Repeat("ab", 32), 2, lockWait, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if w.Ready {
		t.Error("a fresh tree is not ready")
	}
	for _, f := range []string{".gitignore", "mm/highmem.c"} {
		if _, err := os.Stat(filepath.Join(w.Dir, f)); err != nil {
			t.Errorf("work tree lacks %s: %v", f, err)
		}
	}
	// Changing the work tree must not touch the pristine commit.
	os.WriteFile(filepath.Join(w.Dir, "mm", "highmem.c"), []byte("changed\n"), 0o644)
	if out, err := Git(ctx, p1.Repo, nil, "show", p1.Commit+":mm/highmem.c"); err != nil || out != "int x;" {
		t.Errorf("pristine changed: %q %v", out, err)
	}
	if err := w.MarkReady(); err != nil {
		t.Fatal(err)
	}
	w.Release()
	w2, err := p1.Worktree(ctx, cache, strings.Repeat("ab", 32), 2, lockWait, io.Discard)
	if err != nil || !w2.Ready {
		t.Errorf("ready tree not reused: %v", err)
	}
	w2.Release()
}

func TestPruneTrees(t *testing.T) {
	// Trees t0..t4, t0 the most recently used; "locked" names those held
	// by another run.
	cases := []struct {
		name   string
		keep   int
		locked []int
		want   []int // trees left
	}{
		{"under the bound", 5, nil, []int{0, 1, 2, 3, 4}},
		{"oldest go first", 2, nil, []int{0, 1}},
		{"keep none", 0, nil, nil},
		{"a tree in use stays", 2, []int{4}, []int{0, 1, 4}},
		{"in use among the newest", 1, []int{0, 3}, []int{0, 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cacheDir := t.TempDir()
			now := time.Now()
			dir := func(i int) string { return filepath.Join(cacheDir, "trees", fmt.Sprintf("t%d", i)) }
			for i := 0; i < 5; i++ {
				if err := os.MkdirAll(filepath.Join(dir(i), ".kharness-build"), 0o755); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(dir(i), ".kharness-build", "vmlinux"), []byte("x"), 0o644)
				at := now.Add(-time.Duration(i) * time.Hour)
				if err := os.Chtimes(dir(i), at, at); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range tc.locked {
				l, err := cache.Acquire(context.Background(), dir(i)+".lock", lockWait)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Release()
			}
			removed, err := PruneTrees(cacheDir, tc.keep, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var left []int
			for i := 0; i < 5; i++ {
				if _, err := os.Stat(dir(i)); err == nil {
					left = append(left, i)
				}
			}
			if fmt.Sprint(left) != fmt.Sprint(tc.want) {
				t.Errorf("trees left %v, want %v", left, tc.want)
			}
			if len(removed) != 5-len(tc.want) {
				t.Errorf("removed %v, want %d trees", removed, 5-len(tc.want))
			}
		})
	}
}

var lockWait = cache.LockWait{}
