package boot

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/ktap"
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
	closed  bool
}

func newKUnitWatch(k KUnit, emit func(event.Event)) *kunitWatch {
	kw := &kunitWatch{spec: k, emit: emit}
	kw.parser = ktap.NewParser(ktap.Options{OnTest: func(path string, t *ktap.Test) {
		if strings.Contains(path, "/") {
			return // a case: its suite reports it
		}
		res, msg := kunitResult(t)
		emit(event.Event{Type: event.TestEnd, Suite: k.Suite, Test: path, Result: res, Message: msg})
	}})
	emit(event.Event{Type: event.SuiteStart, Suite: k.Suite, Tests: k.Declared})
	return kw
}

// feed gives the watch one console line.
func (kw *kunitWatch) feed(line string) {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	if kw.closed {
		return
	}
	if m := subtestRe.FindStringSubmatch(stripPrintk(line)); m != nil {
		kw.running = m[1]
	}
	kw.parser.Feed(line)
}

// blame is the KUnit suite that was running.
func (kw *kunitWatch) blame() string {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	return kw.running
}

// close ends the KTAP stream (at the agent's hello, or at the end of the
// boot): a case without a result line crashed.
func (kw *kunitWatch) close(res event.Result, msg string) {
	kw.mu.Lock()
	if kw.closed {
		kw.mu.Unlock()
		return
	}
	kw.closed = true
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
