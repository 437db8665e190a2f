package main

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/guest"
)

// A skip must be earned: a test skips only when the kernel under test
// justifies it (its configuration leaves the feature out, or the patch set
// that adds the feature is not applied), and says which. A missing
// feature the kernel is configured or patched to have, or that cannot be
// told either way, fails the test with the same reason.

// verdict is what a test does about something the kernel lacks.
type verdict struct {
	skip bool   // true: skip; false: fail
	why  string // the reason, either way
}

func skipBecause(format string, args ...any) verdict {
	return verdict{skip: true, why: fmt.Sprintf(format, args...)}
}

func failBecause(format string, args ...any) verdict {
	return verdict{why: fmt.Sprintf(format, args...)}
}

// apply ends the test: skipped or failed, with the reason.
func (c *tcase) apply(v verdict) {
	if v.skip {
		c.Skipf("%s", v.why)
	}
	c.Fatalf("%s", v.why)
}

// kconfig names an option's value in /proc/config.gz for a message.
func kconfig(cfg map[string]string, opt string) string {
	if v := cfg[opt]; v != "" {
		return opt + "=" + v
	}
	return opt + " is not set"
}

// patchSetCow is the patch set whose features the suite checks when it
// is applied (HasPinned, cow_fork_pinned_copy/_split, the tearing fix).
const patchSetCow = "cow"

// cowVerdict decides what a missing patches/cow feature (what) means:
// a skip only when the kernel command line says the patch set is not
// applied.
func cowVerdict(what string, boot guest.BootArgs, bootErr error) verdict {
	switch {
	case bootErr != nil:
		return failBecause("%s, and whether patch set %s is applied cannot be told: %v", what, patchSetCow, bootErr)
	case boot.Applied(patchSetCow):
		return failBecause("%s, although patch set %s is applied (patch sets %s)", what, patchSetCow, patchSets(boot))
	}
	return skipBecause("%s: patch set %s is not applied (patch sets %s)", what, patchSetCow, patchSets(boot))
}

func patchSets(b guest.BootArgs) string {
	if len(b.PatchSets) == 0 {
		return "none"
	}
	return strings.Join(b.PatchSets, ",")
}

// thpVerdict decides what a test that needs a THP does when it got none
// (why): it fails when the kernel is configured for THP.
func thpVerdict(why string, cfg map[string]string, cfgErr error) verdict {
	const opt = "CONFIG_TRANSPARENT_HUGEPAGE"
	switch {
	case cfgErr != nil:
		return failBecause("needs a THP and got none (%s); whether the kernel has THP cannot be told: %v", why, cfgErr)
	case cfg[opt] == "y":
		return failBecause("%s=y, yet no THP could be obtained: %s", opt, why)
	}
	return skipBecause("needs a THP: %s in /proc/config.gz (%s)", kconfig(cfg, opt), why)
}

// gupTestVerdict decides what a gup_test that cannot be opened because
// it does not exist (err) means: a skip only on a kernel built without
// CONFIG_GUP_TEST.
func gupTestVerdict(err error, debugfs bool, cfg map[string]string, cfgErr error) verdict {
	const opt = "CONFIG_GUP_TEST"
	switch {
	case cfgErr != nil:
		return failBecause("no gup_test (%v); whether the kernel has it cannot be told: %v", err, cfgErr)
	case cfg[opt] == "y":
		return failBecause("%s=y, yet there is no gup_test: %v (debugfs mounted at /sys/kernel/debug: %v)", opt, err, debugfs)
	}
	return skipBecause("no gup_test: %s in /proc/config.gz (%v)", kconfig(cfg, opt), err)
}

// iouringVerdict decides what a failed io_uring_setup (err) means, or
// returns false when err is no sign of a missing io_uring (then it is an
// ordinary failure). disabled is /proc/sys/kernel/io_uring_disabled ("" if
// unreadable).
func iouringVerdict(err error, disabled string, cfg map[string]string, cfgErr error) (verdict, bool) {
	const opt = "CONFIG_IO_URING"
	switch {
	case errors.Is(err, unix.ENOSYS):
		switch {
		case cfgErr != nil:
			return failBecause("%v; whether the kernel has io_uring cannot be told: %v", err, cfgErr), true
		case cfg[opt] == "y":
			return failBecause("%v, although %s=y", err, opt), true
		}
		return skipBecause("no io_uring: %s in /proc/config.gz (%v)", kconfig(cfg, opt), err), true
	case errors.Is(err, unix.EPERM):
		if disabled != "" && disabled != "0" {
			return skipBecause("io_uring is disabled on this kernel: kernel.io_uring_disabled = %s (%v)", disabled, err), true
		}
		return failBecause("%v, with kernel.io_uring_disabled = %q: a root process may set up a ring", err, disabled), true
	}
	return verdict{}, false
}
