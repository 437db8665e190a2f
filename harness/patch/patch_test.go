package patch

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"

	"github.com/kharness/kharness/harness/outcome"
)

const testRoot = "testdata/patches"

func TestDiscover(t *testing.T) {
	got, err := Discover(testRoot)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"badctx", "good", "invalid", "mbox", "mutants/escape", "mutants/missing", "plain"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Discover = %q, want %q", got, want)
	}
}

// TestDiscoverSymlinkedSet: a set linked in from elsewhere is found (and
// loads); a link to a file or a dangling link is not a set.
func TestDiscoverSymlinkedSet(t *testing.T) {
	dir := t.TempDir()
	good, err := filepath.Abs(filepath.Join(testRoot, "good"))
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"linked":   good,
		"file":     filepath.Join(good, "0001-kmap-local-doc.patch"),
		"dangling": filepath.Join(dir, "nowhere"),
		"loop":     dir,
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"linked"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Discover = %q, want %q", got, want)
	}
	s, err := Load(dir, "linked")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Patches) != 2 {
		t.Errorf("linked set: %d patches, want 2", len(s.Patches))
	}
}

func TestLoad(t *testing.T) {
	type wantPatch struct {
		file    string
		index   int
		subject string
		author  string
		paths   []string
		line    int
	}
	tests := []struct {
		set  string
		want []wantPatch
	}{
		{"good", []wantPatch{
			{"good/0001-kmap-local-doc.patch", 0, "mm/highmem: document the kmap_local unmap order", "Jane Hacker <jane@example.org>", []string{"include/linux/highmem.h", "mm/highmem.c"}, 1},
			{"good/0002-kmap-local-migrate.patch", 0, "0002-kmap-local-migrate.patch", "", []string{"mm/highmem.c"}, 1},
		}},
		{"mbox", []wantPatch{ // the cover letter is skipped
			{"mbox/string-notes.mbox", 0, "lib/string: note strncasecmp zero length", "Ada Lovelace <ada@example.org>", []string{"lib/string.c"}, 20},
			{"mbox/string-notes.mbox", 1, "lib/string: note strlcat count", "Charles Babbage <cb@example.org>", []string{"lib/string.c"}, 48},
		}},
		{"plain", []wantPatch{
			{"plain/memchr-inv.diff", 0, "memchr-inv.diff", "", []string{"lib/string.c"}, 1},
		}},
		{"badctx", []wantPatch{
			{"badctx/0001-wrong-context.patch", 0, "mm/highmem: patch written for another kernel", "Mallory Mutant <mallory@example.org>", []string{"mm/highmem.c"}, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			s, err := Load(testRoot, tt.set)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name != tt.set || s.Dir != filepath.Join(testRoot, tt.set) {
				t.Errorf("Name, Dir = %q, %q", s.Name, s.Dir)
			}
			if len(s.Patches) != len(tt.want) {
				t.Fatalf("got %d patches, want %d", len(s.Patches), len(tt.want))
			}
			for i, w := range tt.want {
				p := s.Patches[i]
				if p.Set != tt.set || p.File != filepath.Join(testRoot, w.file) || p.Index != w.index ||
					p.Subject != w.subject || p.Author != w.author || !reflect.DeepEqual(p.Paths, w.paths) || p.line != w.line {
					t.Errorf("patch %d = {%q %q %d %q %q %q line %d}, want {%q %q %d %q %q %q line %d}", i,
						p.Set, p.File, p.Index, p.Subject, p.Author, p.Paths, p.line,
						tt.set, filepath.Join(testRoot, w.file), w.index, w.subject, w.author, w.paths, w.line)
				}
				whole, err := os.ReadFile(p.File)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.SplitAfter(string(whole), "\n")
				if !strings.HasPrefix(strings.Join(lines[p.line-1:], ""), string(p.Data)) {
					t.Errorf("patch %d: Data is not the text of %s from line %d", i, p.File, p.line)
				}
			}
		})
	}
}

// problems returns the messages of Load's multierror, failing unless the
// error is a PatchFail.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("Load succeeded, want an error")
	}
	if o := outcome.Of(err); o != outcome.PatchFail {
		t.Fatalf("outcome = %s, want %s (err: %v)", o, outcome.PatchFail, err)
	}
	var me *multierror.Error
	if !errors.As(err, &me) {
		t.Fatalf("error is not a multierror: %v", err)
	}
	var msgs []string
	for _, e := range me.Errors {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		set  string
		want []string // each must be a prefix of one problem, in order
	}{
		{"invalid", []string{
			"testdata/patches/invalid/01-empty.patch: empty patch file",
			"testdata/patches/invalid/02-notes.patch:1: not a patch",
			"testdata/patches/invalid/03-binary.diff:5: firmware/blob.bin: binary patch without data",
			"testdata/patches/invalid/04-malformed.patch:5: malformed patch: fragment header miscounts lines",
		}},
		{"mutants/escape", []string{
			"testdata/patches/mutants/escape/0001-passwd.patch:15: ../etc/passwd: leaves the kernel tree",
		}},
		{"mutants/missing", []string{
			"testdata/patches/mutants/missing/series:2: 0002-not-there.patch does not exist",
			`testdata/patches/mutants/missing/series:3: unsupported quilt option "-p0"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			s, err := Load(testRoot, tt.set)
			if s != nil {
				t.Errorf("Load returned a set along with the error")
			}
			got := problems(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
			if !strings.Contains(err.Error(), tt.want[0]) {
				t.Errorf("Error() does not list the problems: %v", err)
			}
		})
	}
}

func TestLoadNotASet(t *testing.T) {
	for _, name := range []string{"mutants", "no-such-set", "../patches", "/good"} {
		_, err := Load(testRoot, name)
		if o := outcome.Of(err); o != outcome.ConfigError {
			t.Errorf("Load(%q): outcome %s, want %s (err: %v)", name, o, outcome.ConfigError, err)
		}
	}
}

// writeSet makes a set "s" with the given files under a fresh root.
func writeSet(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, text := range files {
		p := filepath.Join(root, "s", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const okHunk = "@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n"

func TestLoadValidation(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // problem text without the root prefix; "" = loads
	}{
		{"git diff", map[string]string{"a.diff": "diff --git a/mm/x.c b/mm/x.c\nindex 1111111..2222222 100644\n--- a/mm/x.c\n+++ b/mm/x.c\n" + okHunk}, ""},
		{"absolute traditional", map[string]string{"a.patch": "--- /etc/passwd\n+++ /etc/passwd\n" + okHunk}, "s/a.patch:1: /etc/passwd: absolute path"},
		{"dotdot traditional", map[string]string{"a.patch": "--- ../etc/passwd\n+++ ../etc/passwd\n" + okHunk}, "s/a.patch:1: ../etc/passwd: leaves the kernel tree"},
		{"dotdot after clean", map[string]string{"a.patch": "--- a/mm/../../x\n+++ b/mm/../../x\n" + okHunk}, "s/a.patch:1: a/mm/../../x: leaves the kernel tree"},
		{"symlink out of the tree", map[string]string{"a.patch": "diff --git a/drivers/evil b/drivers/evil\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/drivers/evil\n@@ -0,0 +1 @@\n+../../../etc\n\\ No newline at end of file\n"},
			"s/a.patch:1: drivers/evil: symlink to ../../../etc leaves the kernel tree"},
		{"absolute symlink", map[string]string{"a.patch": "diff --git a/evil b/evil\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/evil\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n"},
			"s/a.patch:1: evil: symlink to /etc/passwd, outside the kernel tree"},
		{"symlink inside the tree", map[string]string{"a.patch": "diff --git a/arch/x/inc b/arch/x/inc\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/arch/x/inc\n@@ -0,0 +1 @@\n+../../include\n\\ No newline at end of file\n"}, ""},
		{"into .git", map[string]string{"a.patch": "Subject: x\n\ndiff --git a/.git/config b/.git/config\n--- a/.git/config\n+++ b/.git/config\n" + okHunk}, "s/a.patch:3: .git/config: writes into .git"},
		{"quoted-printable mail", map[string]string{"a.eml": "From: A <a@b>\nSubject: [PATCH] x\nContent-Transfer-Encoding: quoted-printable\n\n--- a/x\n+++ b/x\n" + okHunk}, "s/a.eml:1: mail body is quoted-printable-encoded"},
		{"bad hunk header", map[string]string{"a.patch": "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n"}, "s/a.patch:3: malformed patch: fragment header miscounts lines"},
		{"short hunk runs into the next", map[string]string{"a.patch": "--- a/x\n+++ b/x\n@@ -1,4 +1,4 @@\n a\n-b\n+c\n d\n" + okHunk}, "s/a.patch:3: malformed patch: hunk has fewer lines"},
		{"series comments and -p1", map[string]string{
			"series":  "# leading comment\n\n  a.patch  -p1 # trailing comment\n",
			"a.patch": "--- a/x\n+++ b/x\n" + okHunk,
			"b.patch": "not listed in series, so not read",
		}, ""},
		{"series listed twice", map[string]string{"series": "a.patch\na.patch\n", "a.patch": "--- a/x\n+++ b/x\n" + okHunk}, "s/series:2: a.patch is listed twice (first at "},
		{"series outside root", map[string]string{"series": "../../etc/passwd\n"}, "s/series:1: ../../etc/passwd: outside the patches root"},
		{"second mbox message broken", map[string]string{"a.mbox": "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH 1/2] one\n\n--- a/x\n+++ b/x\n" + okHunk +
			"\nFrom 2222222222222222222222222222222222222222 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH 2/2] two\n\njust words\n"}, "s/a.mbox:13: not a patch: no diff found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeSet(t, tt.files)
			s, err := Load(root, "s")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if len(s.Patches) != 1 {
					t.Errorf("got %d patches, want 1", len(s.Patches))
				}
				return
			}
			got := problems(t, err)
			if len(got) != 1 {
				t.Errorf("got %d problems, want 1: %q", len(got), got)
			}
			want := root + "/" + tt.want
			for _, g := range got {
				if strings.HasPrefix(g, want) {
					return
				}
			}
			t.Errorf("problems %q\nwant one starting with %q", got, want)
		})
	}
}

func TestSplitMessages(t *testing.T) {
	sep := "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\n"
	tests := []struct {
		name  string
		in    string
		lines []int
	}{
		{"plain diff", "--- a/x\n+++ b/x\n" + okHunk, []int{1}},
		{"single mail", sep + "Subject: x\n\n--- a/x\n+++ b/x\n" + okHunk, []int{1}},
		{"two mails", sep + "Subject: x\n\n" + sep + "Subject: y\n", []int{1, 4}},
		{"mbox from line", "\nFrom MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: x\n\nFrom git@z Thu Jan  1 00:00:00 1970\n", []int{2, 5}},
		{"From in a commit message is not a separator", sep + "Subject: x\n\nFrom the department of redundancy\n", []int{1}},
		{"separator not at the top: one patch", "Subject: x\n\n" + sep, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			segs := splitMessages([]byte(tt.in))
			var lines []int
			var joined string
			for _, s := range segs {
				lines = append(lines, s.line)
				joined += string(s.data)
			}
			if !reflect.DeepEqual(lines, tt.lines) {
				t.Errorf("segments start at lines %v, want %v", lines, tt.lines)
			}
			if strings.TrimLeft(joined, "\n") != strings.TrimLeft(tt.in, "\n") {
				t.Errorf("segments do not add up to the input")
			}
		})
	}
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"mm/highmem.c", true},
		{"include/linux/../linux/highmem.h", true},
		{"Documentation/.gitignore", true},
		{"/etc/passwd", false},
		{"../etc/passwd", false},
		{"mm/../../etc/passwd", false},
		{".git/config", false},
		{"sub/.GIT/hooks/pre-commit", false},
		{".", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := checkPath(tt.name) == ""; got != tt.ok {
			t.Errorf("checkPath(%q) ok = %v, want %v (%s)", tt.name, got, tt.ok, checkPath(tt.name))
		}
	}
}

func TestDigest(t *testing.T) {
	good, err := Load(testRoot, "good")
	if err != nil {
		t.Fatal(err)
	}
	mbox, err := Load(testRoot, "mbox")
	if err != nil {
		t.Fatal(err)
	}
	base := Digest([]*Set{good, mbox})
	if len(base) != 64 {
		t.Fatalf("Digest = %q, want 64 hex digits", base)
	}

	flipped := *good
	flipped.Patches = append([]Patch(nil), good.Patches...)
	data := append([]byte(nil), flipped.Patches[1].Data...)
	data[len(data)/2] ^= 1
	flipped.Patches[1].Data = data

	renamed := *good
	renamed.Name = "good2"

	moved := *good // the same bytes split differently between two patches
	moved.Patches = append([]Patch(nil), good.Patches...)
	a, b := moved.Patches[0].Data, moved.Patches[1].Data
	moved.Patches[0].Data = append(append([]byte(nil), a...), b[0])
	moved.Patches[1].Data = b[1:]

	reloaded, err := Load(testRoot, "good")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sets []*Set
		same bool
	}{
		{"reloaded", []*Set{reloaded, mbox}, true},
		{"one byte changed", []*Set{&flipped, mbox}, false},
		{"set renamed", []*Set{&renamed, mbox}, false},
		{"order swapped", []*Set{mbox, good}, false},
		{"set dropped", []*Set{good}, false},
		{"bytes moved between patches", []*Set{&moved, mbox}, false},
	}
	for _, tt := range tests {
		if got := Digest(tt.sets) == base; got != tt.same {
			t.Errorf("%s: digest equal = %v, want %v", tt.name, got, tt.same)
		}
	}
	if Digest([]*Set{good, mbox}) != base {
		t.Errorf("Digest is not stable")
	}
}
