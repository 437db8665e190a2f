package outcome

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/kharness/kharness/harness/guest"
)

// Expectation says how a cell must fail: a mutant is caught only when the
// named tests fail for the named reason. Anything else that goes wrong in
// such a cell (another test, a watchdog, the agent dying) is a Mismatch,
// never an ExpectedFail.
type Expectation struct {
	// Fail lists "suite" or "suite:regexp" patterns (the regexp anchored
	// as the guest anchors -run); each must match at least one failed
	// test. Empty is the `expect: fail` shorthand: any failed test.
	Fail []string `yaml:"fail" json:"fail,omitempty"`
	// Outcome lists the raw cell outcomes accepted; empty accepts
	// test-failure, kernel-crash and guest-timeout.
	Outcome []Outcome `yaml:"outcome" json:"outcome,omitempty"`
	// Crash, when set, must match the crash title of a matching failure.
	Crash string `yaml:"crash" json:"crash,omitempty"`
	// Reason, when set, must match the message of a matching failure.
	Reason string `yaml:"reason" json:"reason,omitempty"`
}

// Failure is one failed test, as an expectation judges it.
type Failure struct {
	Suite, Test string
	Outcome     Outcome // the test's own: test-failure, kernel-crash or guest-timeout
	Message     string
	Crash       string // title of the splat that failed it, if any
	// Watchdog marks a test blamed by a host watchdog (no output, no
	// events): the kernel may be guilty, but nothing says this test saw it.
	Watchdog bool
}

func (f Failure) String() string {
	s := fmt.Sprintf("%s/%s (%s", f.Suite, f.Test, f.Outcome)
	if f.Watchdog {
		s += ", host watchdog"
	}
	msg := f.Crash
	if msg == "" {
		msg, _, _ = strings.Cut(f.Message, "\n")
	}
	if msg != "" {
		if len(msg) > 120 {
			msg = msg[:117] + "..."
		}
		s += ": " + msg
	}
	return s + ")"
}

// accepted are the raw outcomes of the shorthand.
var accepted = []Outcome{TestFail, KernelCrash, Timeout}

// Validate checks the patterns and outcomes, naming what is wrong.
func (e Expectation) Validate() error {
	var errs *multierror.Error
	for _, p := range e.Fail {
		if _, _, err := compilePattern(p); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	for _, o := range e.Outcome {
		ok := false
		for _, a := range accepted {
			ok = ok || o == a
		}
		if !ok {
			errs = multierror.Append(errs, fmt.Errorf("outcome %q cannot be expected (only %v: a mutant is caught by the kernel misbehaving under test)", o, accepted))
		}
	}
	for _, re := range []string{e.Crash, e.Reason} {
		if re != "" {
			if _, err := regexp.Compile(re); err != nil {
				errs = multierror.Append(errs, fmt.Errorf("regexp %q: %w", re, err))
			}
		}
	}
	return errs.ErrorOrNil()
}

// compilePattern splits "suite[:regexp]".
func compilePattern(p string) (string, *regexp.Regexp, error) {
	s := guest.ParseSuiteSpec(p)
	if s.Name == "" {
		return "", nil, fmt.Errorf("pattern %q names no suite (want suite or suite:regexp)", p)
	}
	if s.Tests == "" {
		return s.Name, nil, nil
	}
	re, err := guest.CompileTests(s.Tests)
	if err != nil {
		return "", nil, fmt.Errorf("pattern %q: %w", p, err)
	}
	return s.Name, re, nil
}

// Judge turns a cell's raw outcome into its verdict under e. raw is what
// the cell came to without an expectation; failures are its failed tests,
// passed its passed ones ("suite/test"). Host faults and stages before the
// boot keep their own outcome: a mutant that does not build is not caught.
func (e Expectation) Judge(raw Outcome, failures []Failure, passed []string) (Outcome, string) {
	switch raw {
	case Pass:
		return UnexpectedOK, "expected to fail" + e.named() + ", but every test passed"
	case TestFail, KernelCrash, Timeout:
	default:
		return raw, ""
	}
	acc := e.Outcome
	if len(acc) == 0 {
		acc = accepted
	}
	var instead []string
	for _, f := range failures {
		instead = append(instead, f.String())
	}
	sort.Strings(instead)
	okRaw := false
	for _, a := range acc {
		okRaw = okRaw || raw == a
	}
	crashRe, reasonRe := optRe(e.Crash), optRe(e.Reason)
	qualifies := func(f Failure) bool {
		if f.Watchdog {
			return false
		}
		if crashRe != nil && !crashRe.MatchString(f.Crash) {
			return false
		}
		return reasonRe == nil || reasonRe.MatchString(f.Message)
	}
	pats := e.Fail
	if len(pats) == 0 {
		pats = []string{""} // any test
	}
	var caught, missing []string
	for _, p := range pats {
		var suite string
		var re *regexp.Regexp
		if p != "" {
			suite, re, _ = compilePattern(p) // validated when the config was read
		}
		hit := ""
		for _, f := range failures {
			if (suite == "" || f.Suite == suite) && (re == nil || re.MatchString(f.Test)) && qualifies(f) {
				hit = f.String()
				break
			}
		}
		if hit == "" {
			desc := p
			if desc == "" {
				desc = "a test"
			}
			if ps := matching(p, passed); len(ps) > 0 {
				desc += " (passed: " + strings.Join(ps, ", ") + ")"
			}
			missing = append(missing, desc)
			continue
		}
		caught = append(caught, hit)
	}
	var why []string
	if !okRaw {
		why = append(why, fmt.Sprintf("cell outcome %s is not one of %v", raw, acc))
	}
	if len(missing) > 0 {
		w := "expected to fail: " + strings.Join(missing, "; ")
		if crashRe != nil {
			w += fmt.Sprintf(" with a crash matching %q", e.Crash)
		}
		if reasonRe != nil {
			w += fmt.Sprintf(" for a reason matching %q", e.Reason)
		}
		why = append(why, w)
	}
	if len(why) > 0 {
		if len(instead) > 0 {
			why = append(why, "failed instead: "+strings.Join(instead, "; "))
		} else {
			why = append(why, "no test failed")
		}
		return Mismatch, strings.Join(why, "; ")
	}
	return ExpectedFail, "caught by " + strings.Join(caught, "; ")
}

func (e Expectation) named() string {
	if len(e.Fail) == 0 {
		return ""
	}
	return " in " + strings.Join(e.Fail, ", ")
}

// matching lists the passed tests a pattern names.
func matching(p string, passed []string) []string {
	if p == "" {
		return nil
	}
	suite, re, err := compilePattern(p)
	if err != nil {
		return nil
	}
	var out []string
	for _, st := range passed {
		s, t, _ := strings.Cut(st, "/")
		if s == suite && (re == nil || re.MatchString(t)) {
			out = append(out, st)
		}
	}
	return out
}

func optRe(s string) *regexp.Regexp {
	if s == "" {
		return nil
	}
	return regexp.MustCompile(s) // validated when the config was read
}

// PatternMatches says whether a "suite" or "suite:regexp" pattern names
// the test (a pattern that does not compile names nothing).
func PatternMatches(p, suite, test string) bool {
	s, re, err := compilePattern(p)
	return err == nil && s == suite && (re == nil || re.MatchString(test))
}
