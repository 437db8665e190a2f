// Package verdict decides what a test does when the kernel under test
// lacks something it needs. A skip must be earned: it is justified only
// by the kernel itself — its configuration leaves the feature out, or
// the patch set that adds the feature is not applied (the kernel command
// line says which are, guest.BootArgs.PatchSets). A missing feature the
// kernel is configured or patched to have, or one whose absence cannot be
// explained because the configuration or the command line cannot be read,
// fails the test. Either way the reason is in the message.
package verdict

import (
	"fmt"
	"strings"

	"github.com/kharness/kharness/harness/guest"
)

// Verdict is a skip or a failure, with its reason.
type Verdict struct {
	Skip bool   // true: skip the test; false: fail it
	Why  string // the reason, either way
}

// Skipf is a skip for the given reason.
func Skipf(format string, args ...any) Verdict {
	return Verdict{Skip: true, Why: fmt.Sprintf(format, args...)}
}

// Failf is a failure for the given reason.
func Failf(format string, args ...any) Verdict {
	return Verdict{Why: fmt.Sprintf(format, args...)}
}

func (v Verdict) String() string {
	if v.Skip {
		return "skip: " + v.Why
	}
	return "fail: " + v.Why
}

// T is what Apply ends: a suite.T or a suite's own test handle.
type T interface {
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Apply ends the test as v says.
func (v Verdict) Apply(t T) {
	if v.Skip {
		t.Skipf("%s", v.Why)
		return
	}
	t.Fatalf("%s", v.Why)
}

// PatchSet decides about what, missing, which patch set name adds: a
// skip only when the kernel command line says name is not applied.
func PatchSet(name, what string, b guest.BootArgs, bootErr error) Verdict {
	switch {
	case bootErr != nil:
		return Failf("%s, and whether patch set %s is applied cannot be told: %v", what, name, bootErr)
	case b.Applied(name):
		return Failf("%s, although patch set %s is applied (patch sets %s)", what, name, PatchSets(b))
	}
	return Skipf("%s: patch set %s is not applied (patch sets %s)", what, name, PatchSets(b))
}

// Config decides about what, missing, which a kernel built with option
// opt=y has: a skip only when /proc/config.gz (cfg, or cfgErr when it
// could not be read) shows opt is not y.
func Config(opt, what string, cfg map[string]string, cfgErr error) Verdict {
	switch {
	case cfgErr != nil:
		return Failf("%s, and whether the kernel is built with %s cannot be told: %v", what, opt, cfgErr)
	case cfg[opt] == "y":
		return Failf("%s, although the kernel is built with %s=y", what, opt)
	}
	return Skipf("%s: %s in /proc/config.gz", what, Option(cfg, opt))
}

// Option shows an option's value for a message: "CONFIG_X=y", "CONFIG_X
// is not set".
func Option(cfg map[string]string, opt string) string {
	if v := cfg[opt]; v != "" {
		return opt + "=" + v
	}
	return opt + " is not set"
}

// PatchSets lists the applied patch sets for a message.
func PatchSets(b guest.BootArgs) string {
	if len(b.PatchSets) == 0 {
		return "none"
	}
	return strings.Join(b.PatchSets, ",")
}
