package boot

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/ktap"
	"github.com/kharness/kharness/harness/splat"
)

// KUnit asks a boot to report the kernel's built-in KUnit tests: they run
// before init and print KTAP on the console, so the host parses the
// console up to the agent's hello, and reports every KUnit suite and case
// as a test of Suite, the way the agent reports the Go suites.
//
// A KUnit suite is one test: its cases are the kernel's to choose (they
// change between releases), and a failing case is named in the message.
type KUnit struct {
	Suite    string   `json:"suite"`    // the kharness suite they belong to (e.g. "kunit")
	Declared []string `json:"declared"` // the KUnit suites that must report
}

// subtestRe is KUnit's header of a suite, at the top level of its KTAP.
var subtestRe = regexp.MustCompile(`^\s*# Subtest: (\S+)`)

// kunitWatch turns console lines into events until it is closed.
type kunitWatch struct {
	mu      sync.Mutex
	spec    KUnit
	parser  *ktap.Parser
	emit    func(event.Event)
	running string // the KUnit suite under way, for blame
	// crashedCase is the case the kernel died in, from the crash's trace.
	crashedCase string
	closed      bool
}

func newKUnitWatch(k KUnit, emit func(event.Event)) *kunitWatch {
	kw := &kunitWatch{spec: k, emit: emit}
	kw.parser = ktap.NewParser(ktap.Options{OnTest: func(path string, t *ktap.Test) {
		if strings.Contains(path, "/") && len(t.Subtests) > 0 {
			return // a parameterised case: its parameters report
		}
		if t.Result == ktap.Crashed && kw.crashedCase != "" && strings.Contains(path, "/") {
			// KUnit prints nothing when a case starts: the parser names
			// the one that never ended by its number, the trace by its
			// function (KUNIT_CASE names a case after it).
			if dir, last := path[:strings.LastIndex(path, "/")], path[strings.LastIndex(path, "/")+1:]; isNumber(last) {
				path = dir + "/" + kw.crashedCase
			}
		}
		res, msg := kunitResult(t)
		emit(event.Event{Type: event.TestEnd, Suite: k.Suite, Test: path, Result: res, Message: msg})
	}})
	emit(event.Event{Type: event.SuiteStart, Suite: k.Suite, Tests: k.Declared})
	return kw
}

// initRe is the kernel starting init: built-in KUnit tests ran before it
// (kernel_init_freeable), so in console order nothing of theirs follows.
// The agent's hello is no such mark: it comes on another port and may
// overtake the console's last lines.
var initRe = regexp.MustCompile(`^Run \S+ as init process`)

// feed gives the watch one console line.
func (kw *kunitWatch) feed(line string) {
	kw.mu.Lock()
	if kw.closed {
		kw.mu.Unlock()
		return
	}
	text := stripPrintk(line)
	if m := subtestRe.FindStringSubmatch(text); m != nil {
		kw.running = m[1]
	}
	if initRe.MatchString(text) {
		kw.mu.Unlock()
		kw.close(event.Pass, "", "")
		return
	}
	kw.parser.Feed(line)
	kw.mu.Unlock()
}

// blame is the KUnit suite that was running, and the case when the
// crash's trace names it.
func (kw *kunitWatch) blame(crashedCase string) string {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	if kw.running != "" && crashedCase != "" {
		return kw.running + "/" + crashedCase
	}
	return kw.running
}

// traceFrameRe is a call trace line: " func+0x1/0x2".
var traceFrameRe = regexp.MustCompile(`^\s*(?:\? )?([A-Za-z0-9_.]+)\+0x[0-9a-f]+/0x[0-9a-f]+`)

// ripRe is where the kernel was: "RIP: 0010:func+0x4f/0x3a0", "EIP: func+0x...".
var ripRe = regexp.MustCompile(`^(?:RIP|EIP): (?:[0-9a-f]{4}:)?([A-Za-z0-9_.]+)\+0x`)

// crashedCase finds the KUnit case function in a crash report: the frame
// called by kunit_try_run_case (or by the case runner it inlines), or the
// faulting function when that frame is the first one.
func crashedCase(report string) string {
	var frames []string
	rip := ""
	for _, l := range strings.Split(report, "\n") {
		l = stripPrintk(l)
		if m := ripRe.FindStringSubmatch(l); m != nil && rip == "" {
			rip = m[1]
		}
		if m := traceFrameRe.FindStringSubmatch(l); m != nil && !strings.HasPrefix(strings.TrimSpace(l), "?") {
			frames = append(frames, m[1])
		}
	}
	for i, f := range frames {
		if f == "kunit_try_run_case" || f == "kunit_run_case_internal" {
			if i == 0 {
				return strings.TrimSuffix(rip, ".cold")
			}
			return frames[i-1]
		}
	}
	return ""
}

// kunitCase is the KUnit case the boot's worst crash happened in.
func kunitCase(reports []splat.Report) string {
	if c, ok := splat.Most(reports); ok {
		return crashedCase(c.Text)
	}
	return ""
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// close ends the KTAP stream (when init starts, or at the end of the
// boot): a suite without a result line crashed; crashedCase, when known,
// names the case that did.
func (kw *kunitWatch) close(res event.Result, msg, crashedCase string) {
	kw.mu.Lock()
	if kw.closed {
		kw.mu.Unlock()
		return
	}
	kw.closed = true
	kw.crashedCase = crashedCase
	kw.parser.Finish()
	kw.mu.Unlock()
	kw.emit(event.Event{Type: event.SuiteEnd, Suite: kw.spec.Suite, Result: res, Message: msg})
}

// stripPrintk drops a "[    1.234567] " prefix.
func stripPrintk(l string) string {
	if strings.HasPrefix(l, "[") {
		if i := strings.Index(l, "] "); i > 0 {
			return l[i+2:]
		}
	}
	return l
}

// kunitResult is a KUnit suite's result, and what to say about it: the
// cases that failed, with the last lines each logged.
func kunitResult(t *ktap.Test) (event.Result, string) {
	switch {
	case t.Result == ktap.Crashed:
		return event.Fail, "no result line: the kernel died in it" + casesFailed(t)
	case t.Result == ktap.Timeout:
		return event.Timeout, t.Reason + casesFailed(t)
	case t.Result.Failed():
		return event.Fail, strings.TrimSpace(t.Reason + casesFailed(t))
	case t.Result == ktap.Skip || t.Result == ktap.Todo:
		return event.Skip, t.Reason
	}
	return event.Pass, ""
}

// casesFailed names a suite's failed cases (parameterised ones by their
// parameter), each with its last diagnostics.
func casesFailed(t *ktap.Test) string {
	var b strings.Builder
	var walk func(prefix string, ts []*ktap.Test)
	walk = func(prefix string, ts []*ktap.Test) {
		for _, c := range ts {
			if !c.Result.Failed() {
				continue
			}
			name := prefix + c.Name
			if len(c.Subtests) > 0 {
				walk(name+"/", c.Subtests)
				continue
			}
			fmt.Fprintf(&b, "\n%s: %s", name, c.Result)
			if c.Reason != "" {
				fmt.Fprintf(&b, " (%s)", c.Reason)
			}
			d := c.Diagnostics
			for _, l := range d[max(0, len(d)-8):] {
				fmt.Fprintf(&b, "\n    %s", l)
			}
		}
	}
	walk("", t.Subtests)
	return b.String()
}
