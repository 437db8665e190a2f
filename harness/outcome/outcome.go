// Package outcome names every way a matrix cell can end and maps each to
// its own process exit code, so CI and nightly jobs can act on the class of
// failure without parsing logs.
package outcome

import (
	"errors"
	"fmt"
)

// Outcome is the verdict of a test, a cell or a whole run.
type Outcome string

// The outcomes, from best to worst as far as Worst is concerned.
const (
	Pass         Outcome = "pass"
	Skip         Outcome = "skip"
	NotRun       Outcome = "not-run"         // a test the guest never reached (it crashed or stopped first)
	ExpectedFail Outcome = "xfail"           // failed as the cell's expectation says
	UnexpectedOK Outcome = "xpass"           // passed, but the config said it should fail
	Mismatch     Outcome = "xfail-mismatch"  // failed, but not the named tests or not for the named reason
	AllSkipped   Outcome = "all-skipped"     // every test skipped: nothing was tested
	Incomplete   Outcome = "incomplete"      // the run (or cell) has not finished, or its process died
	TestFail     Outcome = "test-failure"    // a suite reported a failed test
	PatchFail    Outcome = "patch-failed"    // a patch does not apply
	KconfigDrop  Outcome = "kconfig-dropped" // a requested option did not survive olddefconfig
	BuildFail    Outcome = "build-failed"    // make failed
	BootFail     Outcome = "boot-failed"     // the kernel never reached the guest agent
	KernelCrash  Outcome = "kernel-crash"    // panic, oops, BUG, WARNING, lockdep, KASAN, ...
	Timeout      Outcome = "guest-timeout"   // no output, overall or per-suite deadline
	Infra        Outcome = "infra-error"     // the harness or the host failed, not the kernel
	Interrupted  Outcome = "interrupted"     // Ctrl-C / SIGTERM
	ConfigError  Outcome = "config-error"    // bad kharness.yaml or flags
)

// info holds the documented exit code and a one-line description.
type info struct {
	code int
	rank int // higher is worse; decides the run's exit code
	desc string
}

func table(o Outcome) (info, bool) {
	switch o {
	case Pass:
		return info{0, 0, "everything passed"}, true
	case Skip:
		return info{0, 1, "skipped (reason recorded)"}, true
	case NotRun:
		return info{0, 1, "a test not reached: the guest crashed or stopped before it (the cell's outcome says why)"}, true
	case ExpectedFail:
		return info{0, 2, "failed as the cell's expectation says (the named tests, for the named reason)"}, true
	case AllSkipped:
		return info{11, 3, "every test skipped: nothing was tested"}, true
	case UnexpectedOK:
		return info{10, 4, "passed although expected to fail (a mutant not caught)"}, true
	case Mismatch:
		return info{12, 5, "failed, but not as expected (other tests, or another reason)"}, true
	case TestFail:
		return info{1, 6, "a test failed, a suite did not complete, or a declared test never reported"}, true
	case ConfigError:
		return info{2, 20, "invalid configuration or command line"}, true
	case PatchFail:
		return info{3, 7, "a patch does not apply"}, true
	case KconfigDrop:
		return info{4, 8, "a requested kconfig option was dropped"}, true
	case BuildFail:
		return info{5, 9, "the kernel build failed"}, true
	case BootFail:
		return info{6, 10, "the kernel did not boot to the guest agent"}, true
	case KernelCrash:
		return info{7, 12, "the kernel crashed (panic/oops/BUG/WARNING/lockdep/KASAN/hung task/RCU stall/soft lockup)"}, true
	case Timeout:
		return info{8, 11, "the guest timed out (no output, no events, suite or overall deadline)"}, true
	case Infra:
		return info{9, 15, "infrastructure error: the host failed (tools, QEMU killed or not starting, disk)"}, true
	case Incomplete:
		return info{13, 18, "not finished: still running, or kharness was killed before it could say"}, true
	case Interrupted:
		return info{130, 30, "interrupted (SIGINT, SIGTERM, SIGHUP)"}, true
	}
	return info{}, false
}

// ExitCode is the documented process exit code for o.
func (o Outcome) ExitCode() int {
	if i, ok := table(o); ok {
		return i.code
	}
	return Infra.ExitCode()
}

// Description is a one-line human description of o.
func (o Outcome) Description() string {
	if i, ok := table(o); ok {
		return i.desc
	}
	return fmt.Sprintf("unknown outcome %q", string(o))
}

// Failed reports whether o counts as a failure for the run's exit code.
func (o Outcome) Failed() bool { return o.ExitCode() != 0 }

// Valid reports whether o is a known outcome.
func (o Outcome) Valid() bool { _, ok := table(o); return ok }

// Worst returns the most severe of the given outcomes (Pass when empty).
func Worst(os ...Outcome) Outcome {
	w := Pass
	for _, o := range os {
		if rank(o) > rank(w) {
			w = o
		}
	}
	return w
}

func rank(o Outcome) int {
	if i, ok := table(o); ok {
		return i.rank
	}
	return 15
}

// All lists the outcomes in documentation order.
func All() []Outcome {
	return []Outcome{Pass, Skip, NotRun, ExpectedFail, TestFail, ConfigError, PatchFail, KconfigDrop,
		BuildFail, BootFail, KernelCrash, Timeout, Infra, UnexpectedOK, AllSkipped, Mismatch, Incomplete, Interrupted}
}

// Error is an error that carries the outcome it stands for, so stages can
// fail with their class and the orchestrator can sort failures without
// string matching.
type Error struct {
	Outcome Outcome
	Err     error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf wraps a formatted error with outcome o.
func Errorf(o Outcome, format string, args ...any) error {
	return &Error{Outcome: o, Err: fmt.Errorf(format, args...)}
}

// Of returns the outcome carried by err, or Infra when there is none.
func Of(err error) Outcome {
	if err == nil {
		return Pass
	}
	var e *Error
	if !errors.As(err, &e) {
		return Infra
	}
	return e.Outcome
}
