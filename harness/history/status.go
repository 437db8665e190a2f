// Package history remembers runs: an SQLite index derived from run
// directories (results.json), rebuilt from them at any time, and the life
// cycle of every tracked result across runs: passing, suspect (a first
// failure), regressed (first failing run and last passing run recorded),
// fixed (first passing run after), a recurrence reopening the same
// regression, flakiness, known issues. Host faults (infra-error,
// interrupted, incomplete) never move a result's state.
package history

import (
	"fmt"
	"strings"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

// Key identifies a tracked result: one test on one line of the matrix.
//
// The line is (source as configured, cell name, target), the analogue of
// KernelCI's tree/branch/arch/config: what stays when the code changes.
// The source's content hash, the patch stack digest and the kconfig
// digest are the revision a run tested (Revision), the analogue of a
// commit: were they part of the key, tonight's patch would start a new
// history and could never be a regression.
type Key struct {
	Source string `json:"source"`
	Cell   string `json:"cell"`
	Target string `json:"target"`
	Suite  string `json:"suite"`
	Test   string `json:"test"`
}

// KernelSuite and KernelTest name the row each cell gets for the stages
// before its tests: FAIL when the kernel did not patch, build or boot.
const (
	KernelSuite = "kharness"
	KernelTest  = "kernel"
)

// CellID is the matrix cell id, as in results.json.
func (k Key) CellID() string { return k.Cell + "." + k.Target }

// TestName is "suite/test".
func (k Key) TestName() string { return k.Suite + "/" + k.Test }

func (k Key) String() string { return k.CellID() + " " + k.TestName() }

// Status is a result's status in history, ordered by priority as KCIDB
// orders its own: FAIL > ERROR > MISS > PASS > SKIP. A group's status is
// its worst member's.
type Status string

// The statuses.
const (
	Fail  Status = "FAIL"  // the kernel or the test failed (a mutant not caught included)
	Error Status = "ERROR" // the host failed: infra-error, interrupted, incomplete
	Miss  Status = "MISS"  // not run: the guest stopped before it
	Pass  Status = "PASS"  // passed, or failed as the cell's expectation says
	Skip  Status = "SKIP"
)

// Priority orders statuses; higher is worse.
func (s Status) Priority() int {
	switch s {
	case Fail:
		return 4
	case Error:
		return 3
	case Miss:
		return 2
	case Pass:
		return 1
	}
	return 0
}

// Decisive says whether the status moves a life cycle: only passes and
// failures do; a host fault, a test not reached or a skip says nothing
// about the kernel.
func (s Status) Decisive() bool { return s == Pass || s == Fail }

// Worst is the status of a group.
func Worst(ss ...Status) Status {
	w := Skip
	for _, s := range ss {
		if s.Priority() > w.Priority() {
			w = s
		}
	}
	return w
}

func hostFault(o outcome.Outcome) bool {
	return o == outcome.Infra || o == outcome.Interrupted || o == outcome.Incomplete || o == outcome.ConfigError
}

// expectNames reports whether the cell's expectation names the test.
func expectNames(c *results.Cell, t *results.Test) bool {
	if c.Expect == nil {
		return false
	}
	if len(c.Expect.Fail) == 0 {
		return false // the shorthand names no test
	}
	for _, p := range c.Expect.Fail {
		g := guest.ParseSuiteSpec(p)
		if g.Name != t.Suite {
			continue
		}
		if g.Tests == "" {
			return true
		}
		if re, err := guest.CompileTests(g.Tests); err == nil && re.MatchString(t.Name) {
			return true
		}
	}
	return false
}

// TestStatus is a test's status in its cell. A failure the cell's
// expectation names is a PASS (marked expected) when the cell was caught
// as expected; a named test that passed is a FAIL: the mutant was not
// caught, which is what a mutant cell regresses on.
func TestStatus(c *results.Cell, t *results.Test) (s Status, expected bool) {
	return statusOf(c, t, t.Outcome)
}

// RetryStatus is the status of a test's retry, "" when it had none.
func RetryStatus(c *results.Cell, t *results.Test) Status {
	if t.Retry == nil {
		return ""
	}
	if hostFault(t.Retry.Outcome) {
		return Error
	}
	// The retry boots the test alone with no expectation.
	s, _ := statusOf(&results.Cell{Outcome: outcome.TestFail}, t, t.Retry.Outcome)
	return s
}

func statusOf(c *results.Cell, t *results.Test, o outcome.Outcome) (Status, bool) {
	named := expectNames(c, t)
	switch o {
	case outcome.Pass:
		if named {
			return Fail, false
		}
		return Pass, false
	case outcome.Skip:
		return Skip, false
	case outcome.NotRun:
		return Miss, false
	case outcome.TestFail, outcome.KernelCrash, outcome.Timeout:
		if hostFault(c.Outcome) {
			return Error, false
		}
		if c.Outcome == outcome.ExpectedFail && (named || len(c.Expect.Fail) == 0) {
			return Pass, true
		}
		return Fail, false
	}
	if hostFault(o) {
		return Error, false
	}
	return Fail, false
}

// KernelStatus is the status of a cell's kernel row: FAIL when the cell
// failed before any test reported (patch, kconfig, build, boot), ERROR for
// a host fault, PASS otherwise.
func KernelStatus(c *results.Cell) Status {
	switch {
	case hostFault(c.Outcome) || hostFault(c.Raw):
		return Error
	case c.Outcome.Failed() && len(c.Tests) == 0:
		return Fail
	}
	return Pass
}

// ParseKey reads "cell.target suite/test" (the String form).
func ParseKey(s string) (Key, error) {
	cell, test, ok := strings.Cut(strings.TrimSpace(s), " ")
	suite, name, ok2 := strings.Cut(test, "/")
	dot := strings.LastIndex(cell, ".")
	if !ok || !ok2 || dot < 0 {
		return Key{}, fmt.Errorf("key %q: want \"cell.target suite/test\"", s)
	}
	return Key{Cell: cell[:dot], Target: cell[dot+1:], Suite: suite, Test: name}, nil
}
