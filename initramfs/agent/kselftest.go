package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/ktap"
)

// kselftestDir is where a suite's programs are: the image's place, or
// the test's.
func (a *agent) kselftestDir(suite string) string {
	if a.root != "" {
		return filepath.Join(a.root, guest.KselftestDir(suite))
	}
	return guest.KselftestDir(suite)
}

// readPlan finds a kselftest suite's plan in the image.
func (a *agent) readPlan(suite string) (*guest.KselftestPlan, bool) {
	b, err := os.ReadFile(filepath.Join(a.kselftestDir(suite), guest.KselftestPlanFile))
	if err != nil {
		return nil, false
	}
	var p guest.KselftestPlan
	if err := json.Unmarshal(b, &p); err != nil {
		return &guest.KselftestPlan{}, true // an empty plan: the suite fails, declaring nothing
	}
	return &p, true
}

// kselftest runs a kselftest suite: each program is a declared test
// (its exit code as kselftest maps it: 0 pass, 4 skip, a timeout, else
// fail), and each case it reports (KTAP, or uffd-unit-tests' own lines)
// a test "<program>/<case>" of its own.
func (a *agent) kselftest(s guest.Suite, plan *guest.KselftestPlan, args guest.BootArgs) {
	start := time.Now()
	var re *regexp.Regexp
	if s.Tests != "" {
		var err error
		if re, err = guest.CompileTests(s.Tests); err != nil {
			a.emit(event.Event{Type: event.SuiteEnd, Suite: s.Name, Result: event.Fail, Message: err.Error()})
			return
		}
	}
	var names []string
	var progs []guest.KselftestProgram
	for _, p := range plan.Programs {
		if re == nil || re.MatchString(p.Name) {
			names = append(names, p.Name)
			progs = append(progs, p)
		}
	}
	a.emit(event.Event{Type: event.SuiteStart, Suite: s.Name, Tests: names})
	deadline := s.Deadline
	if deadline <= 0 {
		deadline = guest.DefaultDeadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	defer a.sysctl(s.Name, plan.Sysctl)()
	for _, p := range progs {
		if ctx.Err() != nil {
			break
		}
		a.program(ctx, s.Name, p, args)
	}
	res, msg := event.Pass, ""
	if ctx.Err() != nil {
		res, msg = event.Timeout, fmt.Sprintf("suite %s killed after its %s deadline", s.Name, deadline)
	}
	a.emit(event.Event{Type: event.SuiteEnd, Suite: s.Name, Result: res, Message: msg, DurationMS: time.Since(start).Milliseconds()})
}

// uffdUnitRe is a line of 6.12's uffd-unit-tests; uffdUnitStartRe the
// start of a case whose result is not on the same line (the program
// printed in between, or died in it); uffdUnitEndRe that result.
var (
	uffdUnitRe      = regexp.MustCompile(`^Testing (.+?)\.\.\. (done|skipped \[reason: (.*)\]|failed \[reason: (.*)\])\s*$`)
	uffdUnitStartRe = regexp.MustCompile(`^Testing (.+?)\.\.\.`)
	uffdUnitEndRe   = regexp.MustCompile(`(done|skipped \[reason: (.*)\]|failed \[reason: (.*)\])\s*$`)
)

// program runs one selftest program.
func (a *agent) program(ctx context.Context, suite string, p guest.KselftestProgram, args guest.BootArgs) {
	start := time.Now()
	a.emit(event.Event{Type: event.TestStart, Suite: suite, Test: p.Name})
	kmsgStart := kmsgLastSeq()
	a.drain()
	end := func(res event.Result, msg string) {
		a.emit(event.Event{Type: event.TestEnd, Suite: suite, Test: p.Name, Result: res, Message: msg,
			Kmsg: kmsgSince(kmsgStart), DurationMS: time.Since(start).Milliseconds()})
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 45 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(pctx, filepath.Join(a.kselftestDir(suite), p.Name), p.Args...)
	cmd.Dir = "/tmp"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		end(event.Fail, err.Error())
		return
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		end(event.Fail, fmt.Sprintf("start %s: %v", p.Name, err))
		return
	}
	var lines atomic.Int64
	stopBeat := event.Beat(args.Heartbeat, func() {
		a.emit(event.Event{Type: event.Progress, Suite: suite, Test: p.Name, Iterations: lines.Load()})
	})
	caseEnd := func(name string, res event.Result, msg string) {
		a.emit(event.Event{Type: event.TestEnd, Suite: suite, Test: p.Name + "/" + name, Result: res, Message: msg})
	}
	seen := map[string]int{}
	parser := ktap.NewParser(ktap.Options{OnTest: func(path string, t *ktap.Test) {
		if len(t.Subtests) > 0 {
			return // a group: its cases report themselves
		}
		msg := t.Reason
		if run := runLine(t.Diagnostics); run != "" {
			// The mm tests announce each case ("[RUN] Basic COW after
			// fork() ... with base page") and then print one of a few
			// result lines, or none ("ok 2 # SKIP ..."): the announcement
			// is the case's name.
			path = run
			if seen[run]++; seen[run] > 1 {
				path = fmt.Sprintf("%s #%d", run, seen[run])
			}
			if t.Name != "" {
				msg = strings.TrimSpace(t.Name + " " + msg) // "No leak from parent into child"
			}
		}
		if t.Result == ktap.Crashed {
			msg = "no result line: the program (or the kernel) died in it"
		}
		if t.Result.Failed() && len(t.Diagnostics) > 0 {
			msg = strings.TrimSpace(msg + "\n" + strings.Join(lastN(t.Diagnostics, 10), "\n"))
		}
		caseEnd(path, ktapResult(t.Result), msg)
	}})
	uu := &uffdUnit{end: caseEnd}
	var tail []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		lines.Add(1)
		fmt.Fprintf(a.log, "%s/%s: %s\n", suite, p.Name, line)
		tail = append(tail, line)
		if len(tail) > 5 {
			tail = tail[1:]
		}
		switch p.Format {
		case "uffd-unit":
			uu.line(line)
		default:
			parser.Feed(line)
		}
	}
	werr := cmd.Wait()
	stopBeat()
	if p.Format != "uffd-unit" {
		parser.Finish() // a test that never got its result line: crashed
	} else {
		uu.finish(tail)
	}
	var ee *exec.ExitError
	switch {
	case pctx.Err() != nil && ctx.Err() == nil:
		end(event.Timeout, fmt.Sprintf("%s outran its timeout of %s (the tree's settings, scaled)", p.Name, timeout))
	case ctx.Err() != nil:
		end(event.Timeout, "the suite's deadline ended it")
	case werr == nil:
		end(event.Pass, strings.Join(tail, "\n"))
	case errors.As(werr, &ee) && ee.ExitCode() == 4:
		end(event.Skip, "exit status 4 (KSFT_SKIP): "+strings.Join(tail, "\n"))
	default:
		end(event.Fail, fmt.Sprintf("%v\n%s", werr, strings.Join(tail, "\n")))
	}
}

// uffdUnit follows uffd-unit-tests' "Testing <case>... <result>" lines.
// A case whose result never comes (the program died in it: a segfault,
// an err() exit) is a failure of that case, not only of the program.
type uffdUnit struct {
	end     func(name string, res event.Result, msg string)
	pending string   // a case started, its result not seen yet
	between []string // what it printed since
}

func (u *uffdUnit) line(line string) {
	if m := uffdUnitRe.FindStringSubmatch(line); m != nil {
		u.finish(nil) // a case that started before and never ended
		u.result(m[1], m[2], m[3], m[4])
		return
	}
	if m := uffdUnitStartRe.FindStringSubmatch(line); m != nil {
		u.finish(nil)
		u.pending = m[1]
		return
	}
	if u.pending == "" {
		return
	}
	if m := uffdUnitEndRe.FindStringSubmatch(line); m != nil {
		name := u.pending
		u.pending, u.between = "", nil
		u.result(name, m[1], m[2], m[3])
		return
	}
	u.between = append(u.between, line)
}

func (u *uffdUnit) result(name, what, skipReason, failReason string) {
	switch {
	case what == "done":
		u.end(name, event.Pass, "")
	case strings.HasPrefix(what, "skipped"):
		u.end(name, event.Skip, skipReason)
	default:
		u.end(name, event.Fail, failReason)
	}
}

// finish fails a case still waiting for its result, with what it printed
// (or the program's last lines).
func (u *uffdUnit) finish(tail []string) {
	if u.pending == "" {
		return
	}
	out := u.between
	if len(out) == 0 {
		out = tail
	}
	u.end(u.pending, event.Fail, strings.TrimSpace("no result line: the program (or the kernel) died in it\n"+strings.Join(lastN(out, 10), "\n")))
	u.pending, u.between = "", nil
}

// ktapResult maps a KTAP status to an event result: an expected failure
// passes, an unexpected pass fails.
func ktapResult(s ktap.Status) event.Result {
	switch s {
	case ktap.Pass, ktap.XFail:
		return event.Pass
	case ktap.Skip, ktap.Todo:
		return event.Skip
	case ktap.Timeout:
		return event.Timeout
	}
	return event.Fail
}

// sysctl sets what a suite asks of the machine and returns what puts it
// back. A setting the kernel lacks (no hugetlb in its config) or grants
// only in part is logged: the cases that need it then skip, saying why.
func (a *agent) sysctl(suite string, set map[string]string) (restore func()) {
	var undo []func()
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := filepath.Join(a.root, "/proc/sys", strings.ReplaceAll(k, ".", "/"))
		old, err := os.ReadFile(path)
		if err == nil {
			err = os.WriteFile(path, []byte(set[k]), 0o644)
		}
		if err != nil {
			a.emit(event.Event{Type: event.Log, Suite: suite, Message: fmt.Sprintf("sysctl %s=%s: %v", k, set[k], err)})
			continue
		}
		if now, _ := os.ReadFile(path); strings.TrimSpace(string(now)) != set[k] {
			a.emit(event.Event{Type: event.Log, Suite: suite, Message: fmt.Sprintf("sysctl %s=%s: the kernel gave %s", k, set[k], strings.TrimSpace(string(now)))})
		}
		undo = append(undo, func() { os.WriteFile(path, old, 0o644) })
	}
	return func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
}

// runLine is the case's "[RUN] ..." announcement, if it made one.
func runLine(diags []string) string {
	for i := len(diags) - 1; i >= 0; i-- {
		d := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(diags[i]), "#"))
		if r, ok := strings.CutPrefix(d, "[RUN] "); ok {
			return strings.TrimSpace(r)
		}
	}
	return ""
}

func lastN(l []string, n int) []string {
	if len(l) > n {
		return l[len(l)-n:]
	}
	return l
}
