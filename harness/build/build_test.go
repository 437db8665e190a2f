package build

import (
	"os"
	"strings"
	"testing"
)

func TestDiagnostics(t *testing.T) {
	// gcc-error.log is the real output of a 6.12 i386 kbuild run whose
	// compile failed (make ... KCFLAGS='-include broken.h').
	real, err := os.ReadFile("testdata/gcc-error.log")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		log   string
		kinds []string
		want  []string
	}{
		{"real kbuild failure", string(real), []string{"error", "fatal error"},
			[]string{"/tmp/kh-broken.h:3:16: error: ‘kh_undeclared_symbol’ undeclared (first use in this function)"}},
		{"warnings only", "mm/highmem.c:12:5: warning: unused variable ‘x’ [-Wunused-variable]\nmm/a.c:1: error: no col\n", []string{"warning"},
			[]string{"mm/highmem.c:12:5: warning: unused variable ‘x’ [-Wunused-variable]"}},
		{"dedup and order", "a.c:1:1: error: x\nb.c:2:2: fatal error: y.h: No such file or directory\na.c:1:1: error: x\n", []string{"error", "fatal error"},
			[]string{"a.c:1:1: error: x", "b.c:2:2: fatal error: y.h: No such file or directory"}},
		{"make noise is no diagnostic", "make[4]: *** [scripts/Makefile.build:229: mm/highmem.o] Error 1\n", []string{"error"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, d := range Diagnostics([]byte(tc.log), tc.kinds...) {
				got = append(got, d.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Errors: Diagnostics([]byte("mm/x.c:3:4: error: boom\n"), "error"), LogPath: "/r/build.log"}
	if m := e.Error(); !strings.Contains(m, "mm/x.c:3:4: error: boom") || !strings.Contains(m, "/r/build.log") {
		t.Errorf("message: %s", m)
	}
	e = &Error{Tail: tailLines([]byte("  LD vmlinux\nld: vmlinux.o: in function `f': undefined reference to `g'\nmake: *** Error 2\n"), 2)}
	if m := e.Error(); !strings.Contains(m, "undefined reference to `g'") {
		t.Errorf("linker error lost: %s", m)
	}
}

func TestObjectCounter(t *testing.T) {
	var got []int
	c := &objectCounter{on: func(n int) { got = append(got, n) }}
	log := "  CC      mm/memory.o\n  CC      mm/highmem.o\n  AR      mm/built-in.a\nmake[2]: Nothing to be done\n  LD      vmlinux.o\n  HOSTCC  scripts/basic/fixdep\n  GEN     Makefile\nmm/x.c:1:2: warning: y\n"
	// Written in pieces that cut lines in the middle, as a pipe does.
	for i := 0; i < len(log); i += 7 {
		c.Write([]byte(log[i:min(i+7, len(log))]))
	}
	if c.n != 5 || len(got) != 5 || got[4] != 5 {
		t.Errorf("counted %d objects (%v), want 5", c.n, got)
	}
}

func TestRelTo(t *testing.T) {
	src, out := "/root/.cache/kharness/trees/tar-c93391b6a4884e6428ff", "/root/.cache/kharness/build/x86_64-1"
	tests := []struct{ file, want string }{
		// The path gcc printed in a CI run's patchcheck (6.12, O= build).
		{src + "/mm/mremap.c", "mm/mremap.c"},
		{out + "/include/generated/autoconf.h", "include/generated/autoconf.h"},
		{"mm/highmem.c", "mm/highmem.c"},
		{"/tmp/kh-broken.h", "/tmp/kh-broken.h"},
		{src + "-other/mm/x.c", src + "-other/mm/x.c"},
	}
	for _, tc := range tests {
		if got := relTo(tc.file, src, out); got != tc.want {
			t.Errorf("relTo(%q) = %q, want %q", tc.file, got, tc.want)
		}
	}
}
