package kselftest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/outcome"
)

// TestBuildErr: a host short of a tool or package is infra, the tree's
// own compile errors are build-failed. The messages are what make printed
// here (the rsync one from a real run on a host without rsync).
func TestBuildErr(t *testing.T) {
	tests := []struct {
		log  string
		want outcome.Outcome
	}{
		{"/bin/sh: 1: rsync: not found\nmake[2]: *** [Makefile:1358: headers_install] Error 127", outcome.Infra},
		{"In file included from /usr/include/features.h:510,\n/usr/include/gnu/stubs.h:7:11: fatal error: gnu/stubs-32.h: No such file or directory", outcome.Infra},
		{"/usr/bin/ld: cannot find -luring: No such file or directory", outcome.Infra},
		{"make: gcc: No such file or directory: 'gcc'", outcome.Infra},
		{"cow.c:1702:9: error: 'PAGEMAP_SCAN' undeclared (first use in this function)\nmake: *** [../lib.mk:222: /tmp/out/cow] Error 1", outcome.BuildFail},
		{"uffd-common.c:12:2: error: expected ';' before 'return'", outcome.BuildFail},
		{"write error: No space left on device", outcome.Infra},
	}
	for _, tc := range tests {
		if got := outcome.Of(buildErr("build x", errors.New(tc.log))); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.log, got, tc.want)
		}
	}
}

// TestPrepare: i386 builds get "no liburing" written up front (the probe
// would say yes to 64-bit liburing), x86_64 builds lose stale answers.
func TestPrepare(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "check_config.sh"), []byte("#!/bin/sh\n"), 0o755)
	if err := prepare(dir, "i386"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "local_config.mk"))
	if err != nil || len(b) == 0 {
		t.Fatalf("i386: local_config.mk %q, %v", b, err)
	}
	if err := prepare(dir, "x86_64"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"local_config.h", "local_config.mk"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("x86_64: %s left from the i386 build", f)
		}
	}
}

func TestSettingsTimeout(t *testing.T) {
	dir := t.TempDir()
	if got := settingsTimeout(dir); got != DefaultTimeout {
		t.Errorf("no settings: %s, want %s", got, DefaultTimeout)
	}
	os.WriteFile(filepath.Join(dir, "settings"), []byte("timeout=180\n"), 0o644) // tools/testing/selftests/mm/settings in 6.12
	if got := settingsTimeout(dir); got != 180*time.Second {
		t.Errorf("settings: %s, want 3m", got)
	}
}

// TestKey: the programs' cache key changes with everything that goes
// into them, and not with the order programs are listed in.
func TestKey(t *testing.T) {
	base := Request{Commit: "c1", Arch: "i386", Paths: []string{"a/cow", "a/gup_longterm"}, Compiler: "gcc 12"}
	k := Key(base)
	same := base
	same.Paths = []string{"a/gup_longterm", "a/cow"}
	if Key(same) != k {
		t.Error("the order of programs changed the key")
	}
	for name, r := range map[string]Request{
		"commit":   {Commit: "c2", Arch: "i386", Paths: base.Paths, Compiler: "gcc 12"},
		"arch":     {Commit: "c1", Arch: "x86_64", Paths: base.Paths, Compiler: "gcc 12"},
		"programs": {Commit: "c1", Arch: "i386", Paths: []string{"a/cow"}, Compiler: "gcc 12"},
		"compiler": {Commit: "c1", Arch: "i386", Paths: base.Paths, Compiler: "gcc 13"},
	} {
		if Key(r) == k {
			t.Errorf("a different %s, the same key", name)
		}
	}
}
