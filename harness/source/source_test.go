package source

import (
	"context"
	"errors"
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
	tr, err := p1.Tree(ctx, cache, lockWait, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".gitignore", "mm/highmem.c"} {
		if _, err := os.Stat(filepath.Join(tr.Dir, f)); err != nil {
			t.Errorf("work tree lacks %s: %v", f, err)
		}
	}
	tr.Release()
	testStacks(t, ctx, p1, cache)
}

// testStacks: a stack is a commit made in a sparse scratch checkout;
// checking stacks out rewrites only the files that differ (their mtimes
// alone change), the pristine commit is never touched, and a stack whose
// apply fails leaves nothing.
func testStacks(t *testing.T, ctx context.Context, p *Pristine, cache string) {
	tr, err := p.Tree(ctx, cache, lockWait, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Release()
	edit := func(file, content string) func(dir string) error {
		return func(dir string) error {
			entries, _ := os.ReadDir(dir)
			if len(entries) > 3 {
				t.Errorf("scratch checkout is not sparse: %d entries at its top", len(entries))
			}
			if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
				return err
			}
			for _, a := range [][]string{{"add", "-f", file}, {"commit", "-q", "-m", "edit " + file}} {
				if _, err := Git(ctx, dir, nil, a...); err != nil {
					return err
				}
			}
			return nil
		}
	}
	a, err := tr.Stack(ctx, "stack-a", []string{"mm/highmem.c"}, edit("mm/highmem.c", "int a;\n"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := tr.Stack(ctx, "stack-a", nil, func(string) error { t.Error("an existing stack was applied again"); return nil })
	if err != nil || again != a {
		t.Fatalf("stack-a again: %s %v, want %s", again, err, a)
	}
	if err := tr.Checkout(ctx, a); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tr.Dir, "mm", "highmem.c")); string(b) != "int a;\n" {
		t.Errorf("highmem.c after checkout of stack-a: %q", b)
	}
	makefile := filepath.Join(tr.Dir, "Makefile")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(makefile, old, old)
	if err := tr.Checkout(ctx, p.Commit); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tr.Dir, "mm", "highmem.c")); string(b) != "int x;\n" {
		t.Errorf("highmem.c back at the pristine commit: %q", b)
	}
	if fi, _ := os.Stat(makefile); !fi.ModTime().Equal(old) {
		t.Errorf("a file the stacks share was rewritten (mtime %s): make would rebuild what it feeds", fi.ModTime())
	}
	if _, err := tr.Stack(ctx, "stack-bad", []string{"mm/highmem.c"}, func(string) error { return errors.New("does not apply") }); err == nil {
		t.Errorf("a failing stack succeeded")
	}
	if out, _ := Git(ctx, tr.Dir, nil, "for-each-ref", "refs/kharness/stacks/"); strings.Contains(out, "stack-bad") {
		t.Errorf("a failed stack left a ref: %s", out)
	}
	if out, err := Git(ctx, p.Repo, nil, "show", p.Commit+":mm/highmem.c"); err != nil || out != "int x;" {
		t.Errorf("pristine changed: %q %v", out, err)
	}
}

var lockWait = cache.LockWait{}
