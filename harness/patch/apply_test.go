package patch

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/outcome"
)

// git runs git in dir for test setup, with a fixed identity and no user
// configuration so the base commit id is the same everywhere.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C",
		"GIT_AUTHOR_NAME=Base", "GIT_AUTHOR_EMAIL=base@example.org", "GIT_AUTHOR_DATE=1700000000 +0000",
		"GIT_COMMITTER_NAME=Base", "GIT_COMMITTER_EMAIL=base@example.org", "GIT_COMMITTER_DATE=1700000000 +0000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newTree makes a git work tree holding the real kernel files from
// testdata/kernel, committed as the pristine base.
func newTree(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	err := filepath.WalkDir("testdata/kernel", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel("testdata/kernel", p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q", "-b", "base")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "base")
	return dir
}

func load(t *testing.T, root string, names ...string) []*Set {
	t.Helper()
	var sets []*Set
	for _, n := range names {
		s, err := Load(root, n)
		if err != nil {
			t.Fatalf("Load(%s): %v", n, err)
		}
		sets = append(sets, s)
	}
	return sets
}

// assertClean fails unless the tree has no changes and HEAD is head.
func assertClean(t *testing.T, dir, head string) {
	t.Helper()
	if st := git(t, dir, "status", "--porcelain", "--untracked-files=all"); st != "" {
		t.Errorf("tree is not clean after the failure:\n%s", st)
	}
	if got := git(t, dir, "rev-parse", "HEAD"); got != head {
		t.Errorf("HEAD = %s, want %s", got, head)
	}
}

func applyErr(t *testing.T, err error) *ApplyError {
	t.Helper()
	if err == nil {
		t.Fatal("Apply succeeded, want an error")
	}
	if o := outcome.Of(err); o != outcome.PatchFail {
		t.Fatalf("outcome = %s, want %s (err: %v)", o, outcome.PatchFail, err)
	}
	var ae *ApplyError
	if !errors.As(err, &ae) {
		t.Fatalf("error is not an *ApplyError: %v", err)
	}
	return ae
}

func TestApplyGood(t *testing.T) {
	dir := newTree(t)
	base := git(t, dir, "rev-parse", "HEAD")
	sets := load(t, testRoot, "good", "mbox", "plain")
	var log bytes.Buffer
	if err := Apply(context.Background(), dir, sets, &log); err != nil {
		t.Fatalf("Apply: %v\nlog:\n%s", err, &log)
	}
	got := git(t, dir, "log", "--reverse", "--format=%an <%ae>|%ad|%cn|%s", "--date=unix", base+"..HEAD")
	want := strings.Join([]string{
		"Jane Hacker <jane@example.org>|946684800|kharness|mm/highmem: document the kmap_local unmap order",
		"kharness <kharness@localhost>|946684800|kharness|good: apply 0002-kmap-local-migrate.patch",
		"Ada Lovelace <ada@example.org>|1699996400|kharness|lib/string: note strncasecmp zero length",
		"Charles Babbage <cb@example.org>|1700038800|kharness|lib/string: note strlcat count",
		"kharness <kharness@localhost>|946684800|kharness|plain: apply memchr-inv.diff",
	}, "\n")
	if got != want {
		t.Errorf("git log:\n%s\nwant:\n%s", got, want)
	}
	if body := git(t, dir, "log", "-1", "--format=%B", "HEAD~2"); !strings.Contains(body, "Signed-off-by: Ada Lovelace <ada@example.org>\nKharness-Patch: mbox/string-notes.mbox #0") {
		t.Errorf("commit message lost its body or trailer:\n%s", body)
	}
	for file, line := range map[string]string{
		"mm/highmem.c":            "/* kharness test: migration is allowed again from here on. */",
		"include/linux/highmem.h": "struct page *page); /* kharness */",
		"lib/string.c":            "/* kharness test: returns NULL when every byte equals c. */",
	} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(line)) {
			t.Errorf("%s lacks %q", file, line)
		}
	}
	if st := git(t, dir, "status", "--porcelain"); st != "" {
		t.Errorf("tree not clean after Apply:\n%s", st)
	}
	if !strings.Contains(log.String(), "(3-way)") || !strings.Contains(log.String(), "(plain)") {
		t.Errorf("log does not say how patches were applied:\n%s", &log)
	}

	// Same patches on the same base: same commit ids.
	dir2 := newTree(t)
	if err := Apply(context.Background(), dir2, load(t, testRoot, "good", "mbox", "plain"), nil); err != nil {
		t.Fatal(err)
	}
	if a, b := git(t, dir, "rev-parse", "HEAD"), git(t, dir2, "rev-parse", "HEAD"); a != b {
		t.Errorf("commit ids differ between identical runs: %s vs %s", a, b)
	}
}

func TestApplyFails(t *testing.T) {
	tests := []struct {
		name   string
		before []string // applied and committed first
		sets   []string
		want   ApplyError
		msg    string // must be in Error()
	}{{
		name: "wrong context",
		sets: []string{"good", "badctx"},
		want: ApplyError{
			Set: "badctx", PatchFile: "testdata/patches/badctx/0001-wrong-context.patch", Subject: "mm/highmem: patch written for another kernel",
			File: "mm/highmem.c", Hunk: 2, HunkHeader: "@@ -629,6 +630,7 @@ void kunmap_local_indexed(const void *vaddr)", Line: 18,
		},
		msg: `patch badctx/0001-wrong-context.patch (#0 "mm/highmem: patch written for another kernel") does not apply: mm/highmem.c hunk #2 at testdata/patches/badctx/0001-wrong-context.patch:18
@@ -629,6 +630,7 @@ void kunmap_local_indexed(const void *vaddr)
 	current->kmap_ctrl.pteval[kmap_local_idx()] = __pte(0);
 	kmap_local_idx_pop_old();`,
	}, {
		name:   "quilt series already applied",
		before: []string{"good"},
		sets:   []string{"good"},
		want: ApplyError{Set: "good", PatchFile: "testdata/patches/good/0001-kmap-local-doc.patch",
			Subject: "mm/highmem: document the kmap_local unmap order", AlreadyApplied: true},
		msg: `patch good/0001-kmap-local-doc.patch (#0 "mm/highmem: document the kmap_local unmap order") is already applied to the tree`,
	}, {
		name:   "mbox already applied (3-way merges to nothing)",
		before: []string{"mbox"},
		sets:   []string{"mbox"},
		want: ApplyError{Set: "mbox", PatchFile: "testdata/patches/mbox/string-notes.mbox",
			Subject: "lib/string: note strncasecmp zero length", AlreadyApplied: true},
		msg: "is already applied to the tree",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newTree(t)
			if tt.before != nil {
				if err := Apply(context.Background(), dir, load(t, testRoot, tt.before...), nil); err != nil {
					t.Fatal(err)
				}
			}
			var log bytes.Buffer
			err := Apply(context.Background(), dir, load(t, testRoot, tt.sets...), &log)
			ae := applyErr(t, err)
			got := *ae
			got.HunkText, got.Output = "", ""
			if got != tt.want {
				t.Errorf("ApplyError = %+v\nwant %+v", got, tt.want)
			}
			if ae.Hunk > 0 && !strings.HasPrefix(ae.HunkText, " \tcurrent->kmap_ctrl.pteval") {
				t.Errorf("HunkText = %q", ae.HunkText)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Error() =\n%s\nwant it to contain\n%s", err, tt.msg)
			}
			// Everything before the failing patch stays committed.
			n := 0
			for _, s := range load(t, testRoot, tt.before...) {
				n += len(s.Patches)
			}
			for _, s := range load(t, testRoot, tt.sets...) {
				if s.Name == tt.want.Set {
					break
				}
				n += len(s.Patches)
			}
			assertClean(t, dir, git(t, dir, "rev-parse", "HEAD"))
			if got := git(t, dir, "rev-list", "--count", "HEAD"); got != strconv.Itoa(n+1) {
				t.Errorf("%s commits, want %d (base + patches before the failure)", got, n+1)
			}
		})
	}
}

// kunmapTail is the end of kunmap_local_indexed in the fixture.
const kunmapTail = "\tkmap_local_idx_pop();\n\tpreempt_enable();\n\tmigrate_enable();\n}\nEXPORT_SYMBOL(kunmap_local_indexed);\n"

// editFile replaces old by new in dir/file, failing if old is not there.
func editFile(t *testing.T, dir, file, old, new string) {
	t.Helper()
	p := filepath.Join(dir, file)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	if err := os.WriteFile(p, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestApplyThreeWay makes a patch against the base with real blob ids, then
// moves HEAD on so the patch's context no longer matches. Whether git can
// still merge depends on how close the drift is to the change.
func TestApplyThreeWay(t *testing.T) {
	change := "\tkmap_local_idx_pop();\n\tpreempt_enable();\n\t/* kharness 3-way: added after preempt_enable */\n\tmigrate_enable();\n}\nEXPORT_SYMBOL(kunmap_local_indexed);\n"
	tests := []struct {
		name     string
		driftOld string
		driftNew string
		merges   bool
	}{
		// The first context line changes; an unchanged line separates it
		// from the insertion, so the merge is clean but plain apply fails.
		{"context drift merges", "\tcurrent->kmap_ctrl.pteval[kmap_local_idx()] = __pte(0);\n", "\tcurrent->kmap_ctrl.pteval[kmap_local_idx()] = __pte(0); /* drift */\n", true},
		// The line right before the insertion changes: a real conflict.
		{"adjacent drift conflicts", "\tpreempt_enable();\n\tmigrate_enable();\n}\nEXPORT_SYMBOL(kunmap_local_indexed);", "\tpreempt_enable(); /* drift */\n\tmigrate_enable();\n}\nEXPORT_SYMBOL(kunmap_local_indexed);", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newTree(t)
			editFile(t, dir, "mm/highmem.c", kunmapTail, change)
			// A new file too, so a failed 3-way apply has something to clean up.
			if err := os.WriteFile(filepath.Join(dir, "mm/kharness_new.c"), []byte("// SPDX-License-Identifier: GPL-2.0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			git(t, dir, "add", "-A")
			diff := git(t, dir, "diff", "--cached", "--full-index") + "\n"
			git(t, dir, "reset", "-q", "--hard")
			if !strings.Contains(diff, "\nindex ") {
				t.Fatalf("diff has no blob ids:\n%s", diff)
			}
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "tw"), 0o755); err != nil {
				t.Fatal(err)
			}
			pf := filepath.Join(root, "tw", "0001-three-way.patch")
			if err := os.WriteFile(pf, []byte("From: Tess Three <tess@example.org>\nSubject: [PATCH] mm/highmem: three-way test\n\n---\n"+diff), 0o644); err != nil {
				t.Fatal(err)
			}

			editFile(t, dir, "mm/highmem.c", tt.driftOld, tt.driftNew)
			git(t, dir, "commit", "-q", "-am", "drift")
			drift := git(t, dir, "rev-parse", "HEAD")
			// Plain apply must fail, or this would not test the 3-way path.
			cmd := exec.Command("git", "-C", dir, "apply", "--check", pf)
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Fatalf("plain git apply --check succeeds; test setup is wrong\n%s", out)
			}

			var log bytes.Buffer
			err := Apply(context.Background(), dir, load(t, root, "tw"), &log)
			if tt.merges {
				if err != nil {
					t.Fatalf("Apply: %v\nlog:\n%s", err, &log)
				}
				data, _ := os.ReadFile(filepath.Join(dir, "mm/highmem.c"))
				if _, err := os.Stat(filepath.Join(dir, "mm/kharness_new.c")); err != nil {
					t.Errorf("new file missing after the merge: %v", err)
				}
				for _, want := range []string{"/* kharness 3-way: added after preempt_enable */", "/* drift */"} {
					if !bytes.Contains(data, []byte(want)) {
						t.Errorf("merged file lacks %q", want)
					}
				}
				if s := git(t, dir, "log", "-1", "--format=%an|%s"); s != "Tess Three|mm/highmem: three-way test" {
					t.Errorf("HEAD commit = %q", s)
				}
				return
			}
			ae := applyErr(t, err)
			if ae.File != "mm/highmem.c" || ae.Hunk != 1 || ae.Line != 9 || ae.AlreadyApplied ||
				!strings.HasPrefix(ae.HunkHeader, "@@ -629,") {
				t.Errorf("ApplyError = %+v", *ae)
			}
			if !strings.Contains(ae.Output, "with conflicts") {
				t.Errorf("Output does not carry git's conflict message:\n%s", ae.Output)
			}
			assertClean(t, dir, drift)
		})
	}
}

func TestApplyMissingFile(t *testing.T) {
	dir := newTree(t)
	root := writeSet(t, map[string]string{"a.patch": "--- a/mm/nothere.c\n+++ b/mm/nothere.c\n" + okHunk})
	ae := applyErr(t, Apply(context.Background(), dir, load(t, root, "s"), nil))
	if ae.File != "mm/nothere.c" || ae.Hunk != 0 || ae.AlreadyApplied {
		t.Errorf("ApplyError = %+v", *ae)
	}
}

func TestApplyRefuses(t *testing.T) {
	dir := newTree(t)
	sets := load(t, testRoot, "good")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Apply(ctx, dir, sets, nil); outcome.Of(err) != outcome.Interrupted {
		t.Errorf("cancelled ctx: err %v, outcome %s, want %s", err, outcome.Of(err), outcome.Interrupted)
	}

	// reset --hard there would reset the enclosing tree: refused.
	if err := Apply(context.Background(), filepath.Join(dir, "mm"), sets, nil); err == nil || outcome.Of(err) != outcome.Infra ||
		!strings.Contains(err.Error(), "not a git work tree") && !strings.Contains(err.Error(), "not its top") {
		t.Errorf("subdirectory: err = %v, want a refusal", err)
	}

	editFile(t, dir, "lib/string.c", "int strncasecmp(", "int  strncasecmp(")
	if err := Apply(context.Background(), dir, sets, nil); err == nil || !strings.Contains(err.Error(), "local changes") {
		t.Errorf("dirty tree: err = %v, want a refusal", err)
	} else if outcome.Of(err) != outcome.Infra {
		t.Errorf("dirty tree: outcome %s, want %s", outcome.Of(err), outcome.Infra)
	}
	if git(t, dir, "rev-list", "--count", "HEAD") != "1" {
		t.Errorf("a refused Apply committed something")
	}
}

func TestFirstBadHunk(t *testing.T) {
	file := "a\nb\nc\nd\ne\nf\ng\nh\n"
	tests := []struct {
		name  string
		patch string
		want  int
	}{
		{"fits", "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -6,3 +6,3 @@\n f\n-g\n+G\n h\n", -1},
		{"fits at an offset", "--- a/x\n+++ b/x\n@@ -3,3 +3,4 @@\n e\n+E\n f\n g\n", -1},
		{"second hunk wrong", "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -6,3 +6,3 @@\n f\n-x\n+G\n h\n", 1},
		{"first hunk wrong", "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-z\n+Z\n b\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp, err := parse([]byte(tt.patch))
			if err != nil || len(pp.files) != 1 {
				t.Fatalf("parse: %v, %d files", err, len(pp.files))
			}
			if got := firstBadHunk(file, pp.files[0].TextFragments); got != tt.want {
				t.Errorf("firstBadHunk = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestGitFailedHunk(t *testing.T) {
	data, err := os.ReadFile("testdata/patches/good/0001-kmap-local-doc.patch")
	if err != nil {
		t.Fatal(err)
	}
	pp, err := parse(data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		output string
		fi, hi int
		ok     bool
	}{
		{"error: patch failed: mm/highmem.c:618\nerror: mm/highmem.c: patch does not apply\n", 1, 0, true},
		{"error: patch failed: include/linux/highmem.h:93\n", 0, 0, true},
		{"error: patch failed: mm/highmem.c:93\n", 0, 0, false}, // no such hunk in that file
		{"error: patch failed: mm/other.c:618\n", 0, 0, false},
		{"Applied patch to 'mm/highmem.c' with conflicts.\nU mm/highmem.c\n", 0, 0, false},
	}
	for _, tt := range tests {
		fi, hi, _, ok := gitFailedHunk(pp, tt.output)
		if fi != tt.fi || hi != tt.hi || ok != tt.ok {
			t.Errorf("gitFailedHunk(%q) = %d, %d, %v; want %d, %d, %v", tt.output, fi, hi, ok, tt.fi, tt.hi, tt.ok)
		}
	}
}
