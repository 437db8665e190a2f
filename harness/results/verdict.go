package results

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/splat"
)

// TestOutcome maps a guest result to an outcome.
func TestOutcome(r event.Result) outcome.Outcome {
	switch r {
	case event.Pass:
		return outcome.Pass
	case event.Skip:
		return outcome.Skip
	case event.Crash:
		return outcome.KernelCrash
	case event.Timeout:
		return outcome.Timeout
	}
	return outcome.TestFail
}

// Apply records one guest event in the cell and returns the test it
// finished, if any. Splats in a test's kernel log make it a kernel
// crash here, on the host: the guest reports, the host judges.
func (c *Cell) Apply(e event.Event) *Test {
	switch e.Type {
	case event.Hello:
		c.GuestInfo = e.Info
	case event.SuiteStart:
		c.SuiteRuns = append(c.SuiteRuns, &SuiteRun{Name: e.Suite, Declared: e.Tests, Started: true})
	case event.SuiteEnd:
		if sr := c.suiteRun(e.Suite); sr != nil {
			sr.Ended, sr.Result, sr.Message, sr.DurationMS = true, e.Result, e.Message, e.DurationMS
		}
	case event.Progress:
		// Heartbeats show on the progress line; only the last count is kept.
		c.progress = e
	case event.TestEnd:
		t := &Test{Suite: e.Suite, Name: e.Test, Outcome: TestOutcome(e.Result), Message: e.Message,
			DurationMS: e.DurationMS, Metrics: e.Metrics, Kmsg: e.Kmsg}
		if c.progress.Suite == e.Suite && c.progress.Test == e.Test {
			t.Iterations = c.progress.Iterations
		}
		if rs := splat.Parse([]byte(strings.Join(e.Kmsg, "\n"))); len(rs) > 0 {
			m, _ := splat.Most(rs)
			t.Outcome, t.Crash = outcome.KernelCrash, m.Title
			t.Message = strings.TrimSpace(fmt.Sprintf("kernel splat during the test: %s: %s\n%s", m.Kind, m.Title, t.Message))
		}
		c.Tests = append(c.Tests, t)
		return t
	}
	return nil
}

// suiteRun is the latest run of the named suite.
func (c *Cell) suiteRun(name string) *SuiteRun {
	for i := len(c.SuiteRuns) - 1; i >= 0; i-- {
		if c.SuiteRuns[i].Name == name {
			return c.SuiteRuns[i]
		}
	}
	return nil
}

// Boot is what the boot came to, as the verdict needs it.
type Boot struct {
	Outcome    outcome.Outcome
	Reason     string
	Watchdog   bool
	Crashes    []splat.Report
	Crash      *splat.Report
	BlameSuite string
	BlameTest  string
	Notes      []string
	// Known names the known issue describing a failed test ("" if none):
	// such a failure is recorded, and does not fail the cell.
	Known func(t *Test) string
}

// Finish decides a booted cell from its boot and the guest's reports,
// then applies the cell's expectation. A suite is complete or it failed:
// one that never started, exited between tests or outran its deadline
// with no test running fails as a suite; a declared test that never
// reported fails as "never reported"; a cell where nothing but skips
// ran is all-skipped, not a pass.
func (c *Cell) Finish(b Boot) {
	c.Crashes, c.Crash, c.BlameSuite, c.BlameTest = b.Crashes, b.Crash, b.BlameSuite, b.BlameTest
	c.Watchdog = b.Watchdog
	c.Notes = append(c.Notes, b.Notes...)
	raw, stage, reason := b.Outcome, "boot", b.Reason
	hostFault := raw == outcome.Infra || raw == outcome.Interrupted
	// The test the guest was in when it crashed or went silent gets the
	// cell's verdict, marked as the host's doing.
	if (raw == outcome.KernelCrash || raw == outcome.Timeout) && b.BlameTest != "" && c.test(b.BlameSuite, b.BlameTest) == nil {
		t := &Test{Suite: b.BlameSuite, Name: b.BlameTest, Outcome: raw, Message: b.Reason, HostBlamed: b.Watchdog}
		if raw == outcome.KernelCrash && b.Crash != nil {
			t.Crash = b.Crash.Title
			t.HostBlamed = false // the console shows the crash in this test
		}
		c.Tests = append(c.Tests, t)
	}
	guestDone := raw == outcome.Pass
	var problems []string
	var worst []outcome.Outcome
	for i, spec := range c.Suites {
		name := guest.ParseSuiteSpec(spec).Name
		var sr *SuiteRun
		if i < len(c.SuiteRuns) && c.SuiteRuns[i].Name == name {
			sr = c.SuiteRuns[i]
		} else {
			sr = c.suiteRun(name)
		}
		switch {
		case sr == nil && guestDone:
			problems = append(problems, fmt.Sprintf("suite %s never started", name))
			worst = append(worst, outcome.TestFail)
			continue
		case sr == nil:
			continue // the guest stopped before it; the boot's verdict says why
		}
		var missing []string
		for _, d := range sr.Declared {
			if c.test(name, d) == nil {
				missing = append(missing, d)
			}
		}
		running := c.ranPastEnd(sr)
		switch {
		case len(sr.Declared) == 0 && (sr.Ended || guestDone) && !c.anyReported(name):
			problems = append(problems, fmt.Sprintf("suite %s declared no tests: %s", name, orElse(sr.Message, "its binary never said which it runs")))
			worst = append(worst, outcome.TestFail)
		case !sr.Ended && guestDone:
			problems = append(problems, fmt.Sprintf("suite %s started but never ended", name))
			worst = append(worst, outcome.TestFail)
		case sr.Ended && sr.Result == event.Timeout && !running:
			problems = append(problems, fmt.Sprintf("suite %s outran its deadline with no test running: %s", name, sr.Message))
			worst = append(worst, outcome.Timeout)
		case sr.Ended && sr.Result == event.Fail && len(missing) == 0 && !c.anyFailed(name):
			problems = append(problems, fmt.Sprintf("suite %s failed although every test passed: %s", name, sr.Message))
			worst = append(worst, outcome.TestFail)
		}
		if sr.Ended || guestDone {
			why := "the suite ended without it"
			if sr.Message != "" {
				why = sr.Message
			}
			for _, d := range missing {
				c.Tests = append(c.Tests, &Test{Suite: name, Name: d, Outcome: outcome.TestFail, HostBlamed: true,
					Message: fmt.Sprintf("declared but never reported (%s)", why)})
			}
			if len(missing) > 0 {
				problems = append(problems, fmt.Sprintf("suite %s: %d of %d declared tests never reported (%s)", name, len(missing), len(sr.Declared), why))
			}
		} else {
			for _, d := range missing {
				c.Tests = append(c.Tests, &Test{Suite: name, Name: d, Outcome: outcome.NotRun, HostBlamed: true,
					Message: "not run: the guest stopped before it"})
			}
		}
	}
	if !hostFault {
		known := c.excuse(b.Known)
		for _, t := range c.Tests {
			if t.Known == "" {
				worst = append(worst, t.Outcome)
			}
		}
		if len(known) > 0 {
			c.Notes = append(c.Notes, fmt.Sprintf("%d known failure(s), not counted: %s", len(known), strings.Join(known, ", ")))
		}
		if raw == outcome.Pass {
			stage = "tests"
			raw = outcome.Worst(worst...)
			if (raw == outcome.Skip || raw == outcome.NotRun) && c.anyPassed() {
				raw = outcome.Pass // skips with their reasons beside passes
			}
			switch {
			case raw == outcome.Skip || raw == outcome.NotRun || (raw == outcome.Pass && !c.anyPassed()):
				raw, reason = outcome.AllSkipped, "no test passed: "+skipReasons(c.Tests)
			case raw == outcome.Pass && len(c.Crashes) > 0:
				raw, reason = outcome.KernelCrash, "kernel splat outside any test: "+c.Crashes[0].Title
			case raw != outcome.Pass:
				reason = strings.Join(append(problems, failedTests(c.Tests)), "; ")
				reason = strings.TrimSuffix(reason, "; ")
			}
		} else if len(problems) > 0 {
			reason += "; " + strings.Join(problems, "; ")
		}
	}
	if raw == outcome.Pass {
		stage = ""
	}
	c.SetOutcome(raw, stage, reason)
}

// ranPastEnd says whether a test was running when the suite ended: the
// agent then reported that test's own end.
func (c *Cell) ranPastEnd(sr *SuiteRun) bool {
	for _, t := range c.Tests {
		if t.Suite == sr.Name && t.Outcome == outcome.Timeout {
			return true
		}
	}
	return false
}

func (c *Cell) test(suite, name string) *Test {
	for _, t := range c.Tests {
		if t.Suite == suite && t.Name == name {
			return t
		}
	}
	return nil
}

func (c *Cell) anyFailed(suite string) bool {
	for _, t := range c.Tests {
		if t.Suite == suite && t.Outcome != outcome.Pass && t.Outcome != outcome.Skip && t.Outcome != outcome.NotRun {
			return true
		}
	}
	return false
}

func (c *Cell) anyReported(suite string) bool {
	for _, t := range c.Tests {
		if t.Suite == suite {
			return true
		}
	}
	return false
}

func orElse(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

// excuse marks the failed tests a known issue describes, and a program
// (test "p") whose failed cases ("p/...") are all known; tests the cell's
// expectation names stay failures (a mutant is caught by them). It
// returns "suite/test (issue)" for each.
func (c *Cell) excuse(known func(*Test) string) []string {
	if known == nil {
		return nil
	}
	failed := func(t *Test) bool {
		switch t.Outcome {
		case outcome.TestFail, outcome.KernelCrash, outcome.Timeout:
			return true
		}
		return false
	}
	named := func(t *Test) bool {
		if c.Expect == nil {
			return false
		}
		for _, p := range c.Expect.Fail {
			if outcome.PatternMatches(p, t.Suite, t.Name) {
				return true
			}
		}
		return false
	}
	var out []string
	for _, t := range c.Tests {
		if failed(t) && !named(t) {
			if id := known(t); id != "" {
				t.Known = id
				out = append(out, fmt.Sprintf("%s/%s (%s)", t.Suite, t.Name, id))
			}
		}
	}
	for _, t := range c.Tests {
		if !failed(t) || t.Known != "" || named(t) {
			continue
		}
		var ids []string
		all := true
		for _, sub := range c.Tests {
			if sub.Suite == t.Suite && strings.HasPrefix(sub.Name, t.Name+"/") && failed(sub) {
				if sub.Known == "" {
					all = false
				} else if !slices.Contains(ids, sub.Known) {
					ids = append(ids, sub.Known)
				}
			}
		}
		if all && len(ids) > 0 {
			t.Known = strings.Join(ids, ",")
			out = append(out, fmt.Sprintf("%s/%s (its cases: %s)", t.Suite, t.Name, t.Known))
		}
	}
	return out
}

func (c *Cell) anyPassed() bool {
	for _, t := range c.Tests {
		if t.Outcome == outcome.Pass {
			return true
		}
	}
	return false
}

func skipReasons(ts []*Test) string {
	if len(ts) == 0 {
		return "no test ran"
	}
	var r []string
	for _, t := range ts {
		r = append(r, fmt.Sprintf("%s/%s (%s: %s)", t.Suite, t.Name, t.Outcome, firstLine(t.Message)))
	}
	if len(r) > 5 {
		r = append(r[:5], fmt.Sprintf("and %d more", len(r)-5))
	}
	return strings.Join(r, ", ")
}

// SetOutcome records a raw outcome (and the failing stage) and derives the
// final one from the cell's expectation (outcome.Expectation.Judge).
func (c *Cell) SetOutcome(raw outcome.Outcome, stage, reason string) {
	c.Raw, c.Stage, c.Reason = raw, stage, reason
	c.Outcome = raw
	if c.Expect == nil {
		return
	}
	var failures []outcome.Failure
	var passed []string
	for _, t := range c.Tests {
		switch t.Outcome {
		case outcome.Pass:
			passed = append(passed, t.Suite+"/"+t.Name)
		case outcome.TestFail, outcome.KernelCrash, outcome.Timeout:
			failures = append(failures, outcome.Failure{Suite: t.Suite, Test: t.Name, Outcome: t.Outcome,
				Message: t.Message, Crash: t.Crash, Watchdog: t.HostBlamed})
		}
	}
	o, why := c.Expect.Judge(raw, failures, passed)
	c.Outcome = o
	if why != "" {
		c.Reason = why
	}
}

func failedTests(ts []*Test) string {
	var names []string
	for _, t := range ts {
		if t.Outcome != outcome.Pass && t.Outcome != outcome.Skip && t.Outcome != outcome.NotRun {
			names = append(names, fmt.Sprintf("%s/%s (%s)", t.Suite, t.Name, t.Outcome))
		}
	}
	sort.Strings(names)
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}
	if len(names) == 0 {
		return ""
	}
	return "failed: " + strings.Join(names, ", ")
}
