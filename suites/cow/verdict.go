package main

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/internal/verdict"
)

// A skip must be earned (package verdict): a test skips only when the
// kernel under test justifies it (its configuration leaves the feature
// out, or patch set cow is not applied), and says which. Otherwise the
// missing feature fails the test with the same reason.

// patchSetCow is the patch set whose features the suite checks when it
// is applied (HasPinned, cow_fork_pinned_copy/_split, the tearing fix).
const patchSetCow = "cow"

// cowVerdict decides what a missing patches/cow feature (what) means.
func cowVerdict(what string, boot guest.BootArgs, bootErr error) verdict.Verdict {
	return verdict.PatchSet(patchSetCow, what, boot, bootErr)
}

// thpVerdict decides what a test that needs a THP does when it got none
// (why): it fails when the kernel is configured for THP.
func thpVerdict(why string, cfg map[string]string, cfgErr error) verdict.Verdict {
	return verdict.Config("CONFIG_TRANSPARENT_HUGEPAGE", "needs a THP and got none ("+why+")", cfg, cfgErr)
}

// gupTestVerdict decides what a gup_test that does not exist (err) means:
// a skip only on a kernel built without CONFIG_GUP_TEST.
func gupTestVerdict(err error, debugfs bool, cfg map[string]string, cfgErr error) verdict.Verdict {
	return verdict.Config("CONFIG_GUP_TEST", fmt.Sprintf("no gup_test: %v (debugfs mounted at /sys/kernel/debug: %v)", err, debugfs), cfg, cfgErr)
}

// iouringVerdict decides what a failed io_uring_setup (err) means, or
// returns false when err is no sign of a missing io_uring (an ordinary
// failure then). disabled is /proc/sys/kernel/io_uring_disabled ("" if
// unreadable).
func iouringVerdict(err error, disabled string, cfg map[string]string, cfgErr error) (verdict.Verdict, bool) {
	switch {
	case errors.Is(err, unix.ENOSYS):
		return verdict.Config("CONFIG_IO_URING", fmt.Sprintf("no io_uring: %v", err), cfg, cfgErr), true
	case errors.Is(err, unix.EPERM):
		if disabled != "" && disabled != "0" {
			return verdict.Skipf("io_uring is disabled on this kernel: kernel.io_uring_disabled = %s (%v)", disabled, err), true
		}
		return verdict.Failf("%v, with kernel.io_uring_disabled = %q: a root process may set up a ring", err, disabled), true
	}
	return verdict.Verdict{}, false
}
