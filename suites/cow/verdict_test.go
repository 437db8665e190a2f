package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/internal/verdict"
)

// checkVerdict compares a verdict with the expected kind and the words
// its reason must contain.
func checkVerdict(t *testing.T, name string, got verdict.Verdict, wantSkip bool, words ...string) {
	t.Helper()
	if got.Skip != wantSkip {
		t.Errorf("%s: %v, want skip=%v", name, got, wantSkip)
	}
	for _, w := range words {
		if !strings.Contains(got.Why, w) {
			t.Errorf("%s: reason %q lacks %q", name, got.Why, w)
		}
	}
}

func TestCowVerdict(t *testing.T) {
	stock := guest.BootArgs{PatchSets: []string{"kmap-local"}}
	patched := guest.BootArgs{PatchSets: []string{"cow", "kmap-local", "umcg", "mutants/cow-no-early-copy"}}
	for _, tc := range []struct {
		name     string
		boot     guest.BootArgs
		bootErr  error
		wantSkip bool
		words    []string
	}{
		{"no patch sets", guest.BootArgs{}, nil, true, []string{"no HasPinned", "cow is not applied", "patch sets none"}},
		{"other patch sets", stock, nil, true, []string{"not applied", "kmap-local"}},
		{"cow applied", patched, nil, false, []string{"no HasPinned", "although patch set cow is applied", "mutants/cow-no-early-copy"}},
		{"mutant name is not the set", guest.BootArgs{PatchSets: []string{"mutants/cow-x"}}, nil, true, []string{"not applied"}},
		{"command line unreadable", patched, errors.New("bad kharness.cpus"), false, []string{"cannot be told", "bad kharness.cpus"}},
	} {
		checkVerdict(t, tc.name, cowVerdict("no HasPinned line", tc.boot, tc.bootErr), tc.wantSkip, tc.words...)
	}
}

func TestTHPVerdict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      map[string]string
		cfgErr   error
		wantSkip bool
		words    []string
	}{
		{"THP configured", map[string]string{"CONFIG_TRANSPARENT_HUGEPAGE": "y"}, nil, false, []string{"CONFIG_TRANSPARENT_HUGEPAGE=y", "got none (why)"}},
		{"THP not set", map[string]string{}, nil, true, []string{"CONFIG_TRANSPARENT_HUGEPAGE is not set", "why"}},
		{"THP n", map[string]string{"CONFIG_TRANSPARENT_HUGEPAGE": "n"}, nil, true, []string{"CONFIG_TRANSPARENT_HUGEPAGE=n"}},
		{"no config", nil, errors.New("no /proc/config.gz"), false, []string{"cannot be told", "no /proc/config.gz", "why"}},
	} {
		checkVerdict(t, tc.name, thpVerdict("why", tc.cfg, tc.cfgErr), tc.wantSkip, tc.words...)
	}
}

func TestGupTestVerdict(t *testing.T) {
	missing := &fs.PathError{Op: "open", Path: "/sys/kernel/debug/gup_test", Err: fs.ErrNotExist}
	for _, tc := range []struct {
		name     string
		cfg      map[string]string
		cfgErr   error
		debugfs  bool
		wantSkip bool
		words    []string
	}{
		{"built without", map[string]string{}, nil, true, true, []string{"CONFIG_GUP_TEST is not set", "gup_test"}},
		{"built with, debugfs mounted", map[string]string{"CONFIG_GUP_TEST": "y"}, nil, true, false, []string{"CONFIG_GUP_TEST=y", "debugfs mounted at /sys/kernel/debug: true"}},
		{"built with, no debugfs", map[string]string{"CONFIG_GUP_TEST": "y"}, nil, false, false, []string{"debugfs mounted at /sys/kernel/debug: false"}},
		{"no config", nil, errors.New("no /proc/config.gz"), true, false, []string{"cannot be told"}},
	} {
		checkVerdict(t, tc.name, gupTestVerdict(missing, tc.debugfs, tc.cfg, tc.cfgErr), tc.wantSkip, tc.words...)
	}
	if !gupMissing(missing) || gupMissing(unix.EACCES) {
		t.Errorf("gupMissing must tell ENOENT (a missing file) from other open errors")
	}
}

func TestIOURingVerdict(t *testing.T) {
	with := map[string]string{"CONFIG_IO_URING": "y"}
	for _, tc := range []struct {
		name     string
		err      error
		disabled string
		cfg      map[string]string
		cfgErr   error
		decided  bool
		wantSkip bool
		words    []string
	}{
		{"ENOSYS without io_uring", unix.ENOSYS, "", map[string]string{}, nil, true, true, []string{"CONFIG_IO_URING is not set"}},
		{"ENOSYS with io_uring", unix.ENOSYS, "0", with, nil, true, false, []string{"built with CONFIG_IO_URING=y", "io_uring_setup: function not implemented"}},
		{"ENOSYS, no config", unix.ENOSYS, "0", nil, errors.New("gone"), true, false, []string{"cannot be told"}},
		{"EPERM, disabled", unix.EPERM, "2", with, nil, true, true, []string{"io_uring_disabled = 2"}},
		{"EPERM, enabled", unix.EPERM, "0", with, nil, true, false, []string{"io_uring_disabled = \"0\""}},
		{"EPERM, sysctl unreadable", unix.EPERM, "", with, nil, true, false, []string{"io_uring_disabled"}},
		{"ENOMEM is no verdict", unix.ENOMEM, "0", with, nil, false, false, nil},
	} {
		v, ok := iouringVerdict(fmt.Errorf("io_uring_setup: %w", tc.err), tc.disabled, tc.cfg, tc.cfgErr)
		if ok != tc.decided {
			t.Errorf("%s: decided=%v, want %v", tc.name, ok, tc.decided)
			continue
		}
		if ok {
			checkVerdict(t, tc.name, v, tc.wantSkip, tc.words...)
		}
	}
}
