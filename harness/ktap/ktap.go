// Package ktap parses the results kernel tests print, as they arrive:
// KTAP (Documentation/dev-tools/ktap.rst v1, and the v2 proposals) from
// KUnit, TAP 13/14 from kselftest programs. The host feeds console or
// stdout lines to a Parser, is called back as each test's result becomes
// final (to report live and to know which test was running when the kernel
// died), and gets the tree of tests at the end.
//
// Any input gives a tree, never a panic: lines that do not fit are kept as
// diagnostics, format violations go to Errors. What a caller must know:
//
//   - Crashed means the result line never came: for a test that had begun
//     (its "# Subtest:" header or its subtests were printed) when output
//     ended or a new group replaced it, and for every enclosing test whose
//     result line is missing too. If output ends while a plan promises more
//     results, the next planned test is Crashed, holding the lines logged
//     since the last result (the oops or panic); later planned tests only
//     count in the plan error. None is invented after "Bail out!" or a
//     "# Totals:" line (ksft_print_cnts() ran), nor while output goes on.
//   - Directives SKIP, TODO, XFAIL, XPASS, TIMEOUT and ERROR give the status
//     of that name whatever ok/not ok says; they are case-insensitive
//     (kselftest prints "# error"), "#SKIP" and "# SKIPPED" count. Other
//     text after " # " falls back to ok = Pass, not ok = Fail and is kept as
//     Reason ("not ok 3 selftests: mm: cow # exit=1"). KTAP v2's "skip N"
//     result counts inside a "KTAP version 2" document only. Status.Failed
//     counts XPASS as a failure, as kselftest's ksft_finished() does.
//   - Nesting is by indentation of any width (KTAP 2, KUnit and TAP 14 4
//     spaces); the next result line at the outer indentation is the
//     parent's. "# Subtest: name" may sit at the child's indentation
//     (KUnit) or the parent's (TAP 14). "# text" diagnostics go to the test
//     their indentation says, other lines (the kernel's, "#PF:" included) to
//     the innermost group. Diagnostics belong to the next result at their
//     level; those before a group's plan or after its last planned result
//     belong to the group's parent.
//   - Plan mismatches are Errors of the parent whose plan it is
//     (Result.Errors at the top), out-of-order numbers Errors of the test;
//     no result line is dropped. A parent keeps the result its line gives:
//     "ok" over a failed subtest is an Error, not a failure.
//   - Paths (Flatten, OnTest) join names with "/". A name is fixed when
//     first known (header, "#:ktap_test:" metadata or result line); a
//     nameless test appears by number, a repeated sibling name gets " #N".
//     Subtests of a KTAP v1 group without a header are reported once the
//     group's result line names it.
//   - A top-level version line after results starts a new document (KUnit
//     prints one per module): tests append, numbering restarts.
//   - printk ("<6>", "[    1.234567] ", "[    T1] ") and /dev/kmsg
//     ("6,12,345,-;") prefixes, CRs, NULs and escape sequences are removed.
//     Lines before the first version line are Result.Diagnostics. The
//     kselftest runner's "# "-prefixed per-program TAP, and TAP YAML blocks,
//     stay diagnostics.
//   - Memory is bounded: a test keeps MaxDiagnostics lines (first and last
//     half; Dropped counts the rest), lines are cut at MaxLineBytes, groups
//     nested deeper than 32 are read as diagnostics.
package ktap

import (
	"strconv"
	"strings"
)

// Status is a test's outcome.
type Status string

// The statuses. A result line gives Pass or Fail unless its directive says
// otherwise; Crashed is the parser's verdict for a missing result line.
const (
	Pass    Status = "pass"
	Fail    Status = "fail"
	Skip    Status = "skip"
	Todo    Status = "todo"    // "# TODO": not expected to pass yet
	XFail   Status = "xfail"   // "# XFAIL": failed as expected
	XPass   Status = "xpass"   // "# XPASS": passed though expected to fail (kselftest)
	Timeout Status = "timeout" // "# TIMEOUT"
	Error   Status = "error"   // "# ERROR": the test could not run properly
	Crashed Status = "crashed" // no result line: the test, or the kernel, died
)

// Failed reports whether s counts as a failure: Fail, XPass, Timeout, Error
// and Crashed do; Pass, Skip, Todo and XFail do not.
func (s Status) Failed() bool {
	switch s {
	case Fail, XPass, Timeout, Error, Crashed:
		return true
	}
	return false
}

// Plan is a "1..N" line.
type Plan struct {
	Count     int    `json:"count"`
	Directive string `json:"directive,omitempty"` // "SKIP" for "1..0 # SKIP reason"
	Reason    string `json:"reason,omitempty"`
}

// Test is one test result, with its subtests.
type Test struct {
	Name   string `json:"name"`
	Number int    `json:"number"`
	Result Status `json:"result"`
	// OK is what the result line said: true for "ok" (and KTAP v2's
	// "skip"), false for "not ok" and for a Crashed test.
	OK bool `json:"ok"`
	// Directive is the recognised directive in upper case (SKIP, TODO,
	// XFAIL, XPASS, TIMEOUT, ERROR), "" for none.
	Directive string `json:"directive,omitempty"`
	// Reason is the text after the directive, or all the text after " # "
	// when there is no recognised directive.
	Reason string `json:"reason,omitempty"`
	// Version and Plan are those of its group of subtests, if any.
	Version string `json:"version,omitempty"`
	Plan    *Plan  `json:"plan,omitempty"`
	// Metadata holds KTAP v2 "#:key: value" lines.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Diagnostics are the "#" lines and unknown lines logged for the test,
	// without their nesting indentation.
	Diagnostics []string `json:"diagnostics,omitempty"`
	// Dropped counts diagnostic lines not kept (see MaxDiagnostics).
	Dropped  int     `json:"dropped,omitempty"`
	Subtests []*Test `json:"subtests,omitempty"`
	// Errors are violations of the format found while parsing the test:
	// plan mismatches, numbering, missing result line.
	Errors []string `json:"errors,omitempty"`
	// Line is the 1-based line of the result line, 0 if there was none.
	Line int `json:"line"`

	st   *state // parsing state; nil once the test is final
	elem string // its part of paths, once named and placed (see Flatten)
}

// Result is everything parsed from one stream.
type Result struct {
	// Version is the first version line, e.g. "KTAP version 1", "TAP
	// version 13"; "" if there was none.
	Version string `json:"version,omitempty"`
	// Plan is the top-level plan of the first document, nil if none.
	Plan *Plan `json:"plan,omitempty"`
	// Documents counts top-level version lines (at least 1 once any test
	// output was seen).
	Documents int `json:"documents"`
	// Tests are the top-level tests of all documents, in order.
	Tests []*Test `json:"tests,omitempty"`
	// BailOut is the reason of the first "Bail out!" line, if any.
	BailOut  string            `json:"bail_out,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Diagnostics are lines outside any test: before the first version
	// line and plan, and after the last top-level result.
	Diagnostics []string `json:"diagnostics,omitempty"`
	Dropped     int      `json:"dropped,omitempty"`
	// Errors are format violations at the top level.
	Errors []string `json:"errors,omitempty"`
}

// Entry is a test with its path, as Flatten lists them.
type Entry struct {
	Path string
	Test *Test
}

// Flatten lists every test, parents before their subtests, each with its
// path: the names from the top down joined by "/". A nameless test appears
// by its number. A name an earlier sibling already has gets " #N" appended,
// N its position among its siblings (1-based), since kselftest programs
// such as mm/cow describe tests by their outcome ("No leak from parent into
// child"). OnTest is given the same paths.
func (r *Result) Flatten() []Entry { return flatten("", r.Tests, nil) }

func flatten(prefix string, tests []*Test, out []Entry) []Entry {
	seen := make(map[string]bool, len(tests))
	for i, t := range tests {
		p := joinPath(prefix, pathElem(seen, t, i+1))
		out = append(out, Entry{p, t})
		out = flatten(p, t.Subtests, out)
	}
	return out
}

// pathElem is t's part of a path, t being at position pos among siblings
// whose parts so far are in seen.
func pathElem(seen map[string]bool, t *Test, pos int) string {
	e := t.Name
	if e == "" {
		e = strconv.Itoa(t.Number)
	}
	if seen[e] {
		return e + " #" + strconv.Itoa(pos)
	}
	seen[e] = true
	return e
}

func joinPath(prefix, elem string) string {
	if prefix == "" {
		return elem
	}
	return prefix + "/" + elem
}

// Counts tallies leaf tests (those without subtests) by status.
type Counts struct {
	Pass, Fail, Skip, Todo, XFail, XPass, Timeout, Error, Crashed int
}

// Total is the number of tests counted.
func (c Counts) Total() int {
	return c.Pass + c.Fail + c.Skip + c.Todo + c.XFail + c.XPass + c.Timeout + c.Error + c.Crashed
}

// Failed is the number of tests whose status is a failure.
func (c Counts) Failed() int { return c.Fail + c.XPass + c.Timeout + c.Error + c.Crashed }

func (c Counts) String() string {
	var b strings.Builder
	b.WriteString("total:" + strconv.Itoa(c.Total()))
	for _, f := range []struct {
		name string
		n    int
	}{{"pass", c.Pass}, {"fail", c.Fail}, {"skip", c.Skip}, {"todo", c.Todo}, {"xfail", c.XFail},
		{"xpass", c.XPass}, {"timeout", c.Timeout}, {"error", c.Error}, {"crashed", c.Crashed}} {
		if f.n > 0 {
			b.WriteString(" " + f.name + ":" + strconv.Itoa(f.n))
		}
	}
	return b.String()
}

func (c *Counts) add(s Status) {
	switch s {
	case Pass:
		c.Pass++
	case Fail:
		c.Fail++
	case Skip:
		c.Skip++
	case Todo:
		c.Todo++
	case XFail:
		c.XFail++
	case XPass:
		c.XPass++
	case Timeout:
		c.Timeout++
	case Error:
		c.Error++
	default:
		c.Crashed++
	}
}

// Counts tallies the leaf tests of the whole result.
func (r *Result) Counts() Counts {
	var c Counts
	for _, t := range r.Tests {
		t.count(&c)
	}
	return c
}

// Counts tallies the leaf tests under t, or t itself if it has no subtests.
func (t *Test) Counts() Counts {
	var c Counts
	t.count(&c)
	return c
}

func (t *Test) count(c *Counts) {
	if len(t.Subtests) == 0 {
		c.add(t.Result)
		return
	}
	for _, s := range t.Subtests {
		s.count(c)
	}
}
