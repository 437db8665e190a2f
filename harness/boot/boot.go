// Package boot runs one kernel in QEMU: it builds the command line from
// the target's declarative record, drains the console to a log file while
// parsing it live for splats, reads the agent's events from a socket of
// their own, and turns whatever happened into one outcome with layered
// timeouts (boot, no output, no events, per suite, overall), as
// syzkaller's vm/qemu and ktest do.
//
// Decisions callers must know:
//   - Everything QEMU wrote is read to EOF before its exit status is looked
//     at, so the end of a panic is never lost.
//   - A host fault (QEMU missing, failing to start, exiting non-zero or
//     killed from outside, the events file not writable) is infra-error,
//     never a guest outcome.
//   - After the agent's hello only events count as output: suites send a
//     heartbeat while a test runs, so a console that keeps printing (an
//     RCU stall loop) does not hide a dead user space.
//   - The verdict is a pure function of what was observed (Verdict), so
//     every combination is table-tested without QEMU.
package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/splat"
	"github.com/kharness/kharness/harness/target"
)

// Spec is one boot.
type Spec struct {
	Target  target.Target
	Kernel  string
	Initrd  string
	Accel   Accel
	Guest   guest.BootArgs // what the agent is told (encoded into the kernel command line)
	Cmdline []string       // more kernel arguments, after the target's and the agent's
	// Dir receives console.log, events.jsonl, qemu.stderr and qemu.cmdline.
	Dir string
	// Deadlines, already scaled for the accelerator.
	Boot     time.Duration // QEMU start → agent hello
	NoOutput time.Duration // silence: console or events before hello, events after
	Overall  time.Duration
	// SuiteGrace is how long past a suite's own deadline (which the agent
	// enforces) the host waits before it stops the guest itself.
	SuiteGrace time.Duration
	// CrashGrace is how long to keep reading after a fatal splat so the
	// whole report is captured before QEMU is killed.
	CrashGrace time.Duration
	// KUnit, when set, reports the kernel's KUnit tests from the console.
	KUnit *KUnit
}

// Result is what one boot came to.
type Result struct {
	Outcome outcome.Outcome
	Reason  string
	// Watchdog is set when the outcome is a host watchdog's (boot, no
	// output, no events, overall deadline): it blames whatever ran, but
	// nothing says that test saw the fault.
	Watchdog bool
	// Crashes are all splats seen on the console; Crash is the one the
	// outcome is about (nil when none).
	Crashes []splat.Report
	Crash   *splat.Report
	// Blame is the suite/test running when the guest crashed or went silent.
	BlameSuite, BlameTest string
	Hello                 *event.Event
	Done                  bool
	QEMUExit              int
	// Notes are host-side remarks that did not decide the outcome on
	// their own (dropped event lines, undecodable lines).
	Notes      []string
	Started    time.Time
	FirstEvent time.Duration // QEMU start → first test result
	Duration   time.Duration
	Accel      Accel
}

// Args returns QEMU's argument list. events is the chardev backend for
// the agent's port (a unix socket when run by kharness, a file in the
// reproducer).
func Args(s Spec, consoleBackend, eventsBackend string) []string {
	t := s.Target
	cpu := t.CPU
	if s.Accel == KVM {
		cpu = t.KVMCPU
	}
	cmdline := append(append(append([]string{}, t.Cmdline...), s.Guest.Encode()...), s.Cmdline...)
	args := []string{
		"-nodefaults", "-no-reboot", "-display", "none", "-vga", "none",
		"-machine", t.Machine, "-accel", string(s.Accel), "-cpu", cpu,
		"-m", fmt.Sprint(t.MemoryMB), "-smp", fmt.Sprint(t.CPUs),
		"-kernel", s.Kernel, "-initrd", s.Initrd,
		"-append", strings.Join(cmdline, " "),
		"-chardev", consoleBackend + ",id=con", "-serial", "chardev:con",
		"-chardev", eventsBackend + ",id=ev", "-serial", "chardev:ev",
	}
	return append(args, t.ExtraArgs...)
}

// Reproducer is a command a person can paste to boot the same kernel the
// same way, with the console on the terminal and events in a file.
func Reproducer(s Spec) string {
	args := Args(s, "stdio,signal=on", "file,path=events.jsonl")
	q := []string{s.Target.QEMU}
	for _, a := range args {
		q = append(q, ShellQuote(a))
	}
	return strings.Join(q, " ")
}

// ShellQuote quotes s for a POSIX shell when it needs it.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '_' || r == '.' || r == ',' || r == ':' || r == '=' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Facts are what a boot observed; Verdict turns them into an outcome.
type Facts struct {
	StartErr    error // QEMU could not be started
	WriteErr    error // a record of the boot (console, events file) could not be written
	Interrupted string
	// Stopped is set when the host stopped the guest for a watchdog or
	// deadline, with the outcome and reason that stop stands for.
	Stopped       outcome.Outcome
	StoppedReason string
	StoppedByDog  bool // the stop was a watchdog's (no output, no events, boot, overall)
	Hello, Done   bool
	InKUnit       bool // the crash came while KUnit's tests ran (before init)
	ConsoleBytes  int64
	Crash         *splat.Report
	// QEMU's end: exit code, or the signal that killed it, and the
	// "terminating on signal N from pid M" line QEMU prints when someone
	// else asked it to stop.
	ExitCode   int
	ExitSignal string
	Terminated string
	StderrTail string
	KilledByUs bool
}

// Verdict decides a boot's outcome. Order matters: an interruption, then
// faults of the host, then what the kernel did, then the watchdogs.
func Verdict(f Facts) (o outcome.Outcome, reason string, watchdog bool) {
	stderr := ""
	if t := strings.TrimSpace(f.StderrTail); t != "" {
		stderr = ": " + lastLines(t, 3)
	}
	switch {
	case f.Interrupted != "":
		return outcome.Interrupted, "interrupted: " + f.Interrupted, false
	case f.StartErr != nil:
		return outcome.Infra, "QEMU did not start: " + f.StartErr.Error(), false
	case f.WriteErr != nil:
		return outcome.Infra, "the boot's record could not be written: " + f.WriteErr.Error(), false
	case f.Crash != nil && (f.Crash.Fatal || !f.Done):
		if !f.Hello && !f.InKUnit {
			return outcome.BootFail, "kernel crashed before the agent started: " + f.Crash.Title, false
		}
		return outcome.KernelCrash, f.Crash.Title, false
	case f.Stopped != "":
		return f.Stopped, f.StoppedReason, f.StoppedByDog
	case f.Terminated != "":
		return outcome.Infra, "QEMU was stopped from outside the run (" + f.Terminated + ")", false
	case f.ExitSignal != "" && !f.KilledByUs:
		return outcome.Infra, "QEMU was killed by " + f.ExitSignal + stderr, false
	case f.ExitCode != 0:
		return outcome.Infra, fmt.Sprintf("QEMU exited with status %d%s", f.ExitCode, stderr), false
	case !f.Hello && f.ConsoleBytes == 0:
		return outcome.Infra, "QEMU exited without any console output" + stderr, false
	case !f.Hello:
		return outcome.BootFail, "the guest powered off before the agent said hello", false
	case !f.Done:
		return outcome.KernelCrash, "the guest rebooted or powered off before the done sentinel", false
	}
	return outcome.Pass, "", false // the tests' own results decide the cell
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// terminatedRe is QEMU's line when it is asked to stop by a signal.
var terminatedRe = regexp.MustCompile(`terminating on signal (\d+)(?: from pid (\d+))?(?: \(([^)]*)\))?`)

// Run boots s and calls onEvent for every guest event, in order, as it
// arrives. It returns when QEMU is gone and everything it wrote was read;
// QEMU never outlives it. The error is for failures before QEMU could be
// tried at all (the cell directory); everything after is in the Result.
func Run(ctx context.Context, s Spec, onEvent func(event.Event)) (*Result, error) {
	if s.CrashGrace == 0 {
		s.CrashGrace = 10 * time.Second
	}
	if s.SuiteGrace == 0 {
		s.SuiteGrace = 30 * time.Second
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "boot dir: %w", err)
	}
	res := &Result{Accel: s.Accel, Started: time.Now()}
	var f Facts
	finish := func() (*Result, error) {
		res.Duration = time.Since(res.Started)
		res.Outcome, res.Reason, res.Watchdog = Verdict(f)
		return res, nil
	}
	cache.SweepTemp(os.TempDir(), "kharness-ev-") // left by a killed run
	sockDir, err := cache.TempDir(os.TempDir(), "kharness-ev-")
	if err != nil {
		f.StartErr = fmt.Errorf("socket dir: %w", err)
		return finish()
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "events.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.StartErr = fmt.Errorf("listen for guest events: %w", err)
		return finish()
	}
	defer ln.Close()
	if err := os.WriteFile(filepath.Join(s.Dir, "qemu.cmdline"), []byte(Reproducer(s)+"\n"), 0o644); err != nil {
		f.WriteErr = err
		return finish()
	}
	files := map[string]*os.File{}
	for _, name := range []string{"console.log", "events.jsonl", "qemu.stderr"} {
		fl, err := os.Create(filepath.Join(s.Dir, name))
		if err != nil {
			f.WriteErr = err
			return finish()
		}
		defer fl.Close()
		files[name] = fl
	}
	// Pipes we own: QEMU holds the write ends, so EOF means QEMU (and
	// anything it started) is gone, and Wait cannot close them early.
	conR, conW, err := os.Pipe()
	if err != nil {
		f.StartErr = err
		return finish()
	}
	defer conR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		conW.Close()
		f.StartErr = err
		return finish()
	}
	defer errR.Close()
	cmd := exec.Command(s.Target.QEMU, Args(s, "stdio,signal=off", "socket,path="+sock)...)
	cmd.Stdout, cmd.Stderr = conW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	conW.Close()
	errW.Close()
	if err != nil {
		f.StartErr = fmt.Errorf("%s: %w", s.Target.QEMU, err)
		return finish()
	}
	os.WriteFile(filepath.Join(s.Dir, "qemu.pid"), []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644)
	w := &watch{res: res, facts: &f, last: time.Now(), lastEvent: time.Now(), parser: splat.NewParser(),
		crashSeen: make(chan struct{}), helloSeen: make(chan struct{}), suiteStart: make(chan suiteRun, 16),
		suiteEnd: make(chan struct{}, 16), suites: s.Guest.Suites}
	var killedByUs bool
	var killMu sync.Mutex
	kill := func() {
		killMu.Lock()
		killedByUs = true
		killMu.Unlock()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // on every path
	if s.KUnit != nil {
		// KUnit speaks before anything else: its events are serialized
		// with the agent's through one lock.
		var emitMu sync.Mutex
		orig := onEvent
		onEvent = func(e event.Event) {
			emitMu.Lock()
			defer emitMu.Unlock()
			if orig != nil {
				orig(e)
			}
		}
		w.kunit = newKUnitWatch(*s.KUnit, onEvent)
	}
	var readers sync.WaitGroup
	readers.Add(3)
	w.pipes.Add(2)
	go func() { defer readers.Done(); w.console(conR, files["console.log"]) }()
	go func() { defer readers.Done(); w.stderr(errR, files["qemu.stderr"]) }()
	go func() { defer readers.Done(); w.events(ln, files["events.jsonl"], onEvent) }()
	// QEMU has exited once both of its pipes are at EOF; Wait after that.
	pipesDone := make(chan struct{})
	go func() { w.pipes.Wait(); close(pipesDone) }()

	stop := func(o outcome.Outcome, why string, dog bool) {
		if f.Stopped == "" && f.Interrupted == "" {
			f.Stopped, f.StoppedReason, f.StoppedByDog = o, why, dog
			w.mu.Lock()
			res.BlameSuite, res.BlameTest = w.runSuite, w.runTest
			w.mu.Unlock()
		}
		kill()
	}
	bootT := time.NewTimer(s.Boot)
	overallT := time.NewTimer(s.Overall)
	tick := time.NewTicker(250 * time.Millisecond)
	defer bootT.Stop()
	defer overallT.Stop()
	defer tick.Stop()
	helloC, crashC := w.helloSeen, w.crashSeen
	var graceT, suiteT <-chan time.Time
	var suiteTimer *time.Timer
	var cur suiteRun
loop:
	for {
		select {
		case <-pipesDone:
			break loop
		case <-ctx.Done():
			if f.Interrupted == "" {
				f.Interrupted = context.Cause(ctx).Error()
			}
			kill()
		case <-helloC:
			bootT.Stop()
			helloC = nil
		case <-bootT.C:
			if !w.hello() {
				stop(outcome.BootFail, fmt.Sprintf("no agent hello within %s of QEMU start", s.Boot), true)
			}
		case <-overallT.C:
			stop(outcome.Timeout, fmt.Sprintf("overall deadline of %s exceeded", s.Overall), true)
		case <-crashC:
			crashC = nil
			graceT = time.After(s.CrashGrace)
		case <-graceT:
			kill()
		case sr := <-w.suiteStart:
			cur = sr
			if suiteTimer != nil {
				suiteTimer.Stop()
			}
			suiteTimer = time.NewTimer(sr.deadline + s.SuiteGrace)
			suiteT = suiteTimer.C
		case <-w.suiteEnd:
			if suiteTimer != nil {
				suiteTimer.Stop()
			}
			suiteT = nil
		case <-suiteT:
			suiteT = nil
			stop(outcome.Timeout, fmt.Sprintf("suite %s still running %s after its %s deadline (the guest did not stop it)",
				cur.name, s.SuiteGrace, cur.deadline), false)
		case <-tick.C:
			if helloC == nil {
				if silent := w.eventSilence(); silent > s.NoOutput {
					stop(outcome.Timeout, fmt.Sprintf("no events from the guest for %s%s", silent.Round(time.Second), w.consoleNote()), true)
				}
			} else if silent := w.silence(); silent > s.NoOutput {
				stop(outcome.Timeout, fmt.Sprintf("no output on console or events for %s", silent.Round(time.Second)), true)
			}
		}
	}
	// QEMU closed its pipes: it is gone or going. What it sent to the
	// events socket may still be buffered, its connection even still in
	// the listen backlog: accept it if it is there (closing the listener
	// would drop it), then read to EOF (bounded).
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetDeadline(time.Now().Add(time.Second))
	} else {
		ln.Close()
	}
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		w.closeConn()
		<-drained
	}
	if w.kunit != nil {
		// Usually closed when init started; a console that does not print
		// that line (loglevel) leaves it to here, where a missing result
		// line is still a crashed suite.
		if res.Hello != nil {
			w.kunit.close(event.Pass, "", "")
		} else {
			w.mu.Lock()
			reports := w.parser.Reports()
			w.mu.Unlock()
			w.kunit.close(event.Fail, "the boot ended before init started: the KUnit tests did not finish", kunitCase(reports))
		}
	}
	waitErr := cmd.Wait()
	res.Duration = time.Since(res.Started)
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		res.QEMUExit = ee.ExitCode()
		f.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			f.ExitSignal = ws.Signal().String()
			f.ExitCode = 0
		}
	}
	killMu.Lock()
	f.KilledByUs = killedByUs
	killMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	res.Crashes = w.parser.Reports()
	if c, ok := splat.Most(res.Crashes); ok {
		res.Crash = &c
		f.Crash = &c
	}
	if res.BlameSuite == "" && res.BlameTest == "" {
		res.BlameSuite, res.BlameTest = w.runSuite, w.runTest
	}
	if res.BlameSuite == "" && res.Hello == nil && w.kunit != nil && w.kunit.blame("") != "" {
		// A crash before init, during the KUnit tests: blame the one running.
		res.BlameSuite, res.BlameTest = s.KUnit.Suite, w.kunit.blame(kunitCase(res.Crashes))
		f.InKUnit = f.Crash != nil
	}
	f.Hello, f.Done = res.Hello != nil, res.Done
	f.ConsoleBytes = w.consoleBytes
	f.StderrTail = w.stderrTail.String()
	if m := terminatedRe.FindStringSubmatch(f.StderrTail); m != nil && !f.KilledByUs {
		f.Terminated = "QEMU says: " + strings.TrimSpace(m[0])
	}
	if w.writeErr != nil && f.WriteErr == nil {
		f.WriteErr = w.writeErr
	}
	res.Notes = append(res.Notes, w.notes...)
	res.Outcome, res.Reason, res.Watchdog = Verdict(f)
	return res, nil
}

type suiteRun struct {
	name     string
	deadline time.Duration
}

// watch is the shared state of the console, stderr and event readers.
type watch struct {
	mu           sync.Mutex
	res          *Result
	facts        *Facts
	last         time.Time // any output
	lastEvent    time.Time
	consoleBytes int64
	parser       *splat.Parser
	conn         net.Conn
	crashSeen    chan struct{}
	helloSeen    chan struct{}
	kunit        *kunitWatch // nil: no KUnit to report
	crashOnce    sync.Once
	helloOnce    sync.Once
	suiteStart   chan suiteRun
	suiteEnd     chan struct{}
	suites       []guest.Suite
	suiteIdx     int
	runSuite     string
	runTest      string
	pipes        sync.WaitGroup // console and stderr readers, for "QEMU has gone"
	stderrTail   tailBuf
	writeErr     error
	notes        []string
}

func (w *watch) silence() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Since(w.last)
}

func (w *watch) eventSilence() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Since(w.lastEvent)
}

// consoleNote says whether the console kept printing while events stopped.
func (w *watch) consoleNote() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.last) < time.Since(w.lastEvent)/2 {
		return " (the console kept printing)"
	}
	return ""
}

func (w *watch) hello() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.res.Hello != nil
}

func (w *watch) closeConn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
	}
}

// noteWrite keeps the first failure to write a record: the reading goes
// on, the outcome says infra-error.
func (w *watch) noteWrite(what string, err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.writeErr == nil {
		w.writeErr = fmt.Errorf("%s: %w", what, err)
	}
}

// maxConsoleLine bounds a console line: a guest printing without newlines
// costs at most this much memory, and each such chunk counts as output.
const maxConsoleLine = 64 * 1024

func (w *watch) console(r io.Reader, log io.Writer) {
	defer w.pipes.Done()
	buf := make([]byte, 32*1024)
	var line []byte
	feed := func(l []byte) {
		text := strings.TrimRight(string(l), "\r\n")
		if w.kunit != nil {
			w.kunit.feed(text)
		}
		w.mu.Lock()
		rep := w.parser.Feed(text)
		w.mu.Unlock()
		if rep != nil && rep.Fatal {
			w.crashOnce.Do(func() { close(w.crashSeen) })
		}
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := log.Write(buf[:n]); werr != nil {
				w.noteWrite("console.log", werr)
			}
			w.mu.Lock()
			w.last = time.Now()
			w.consoleBytes += int64(n)
			w.mu.Unlock()
			chunk := buf[:n]
			for len(chunk) > 0 {
				i := bytes.IndexByte(chunk, '\n')
				if i < 0 {
					line = append(line, chunk...)
					if len(line) >= maxConsoleLine {
						feed(line)
						line = line[:0]
					}
					break
				}
				line = append(line, chunk[:i]...)
				feed(line)
				line = line[:0]
				chunk = chunk[i+1:]
			}
		}
		if err != nil {
			if len(line) > 0 {
				feed(line)
			}
			return
		}
	}
}

func (w *watch) stderr(r io.Reader, log io.Writer) {
	defer w.pipes.Done()
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := log.Write(buf[:n]); werr != nil {
				w.noteWrite("qemu.stderr", werr)
			}
			w.mu.Lock()
			w.stderrTail.Write(buf[:n])
			w.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (w *watch) events(ln net.Listener, raw io.Writer, onEvent func(event.Event)) {
	conn, err := ln.Accept()
	if err != nil {
		return
	}
	w.mu.Lock()
	w.conn = conn
	w.mu.Unlock()
	rd := event.NewReader(conn)
	rd.Raw = func(line []byte) {
		if _, err := raw.Write(append(line, '\n')); err != nil {
			w.noteWrite("events.jsonl", err)
		}
	}
	garbage := 0
	rd.Garbage = func(string) { garbage++ }
	rd.Oversize = func(n int) {
		w.mu.Lock()
		w.notes = append(w.notes, fmt.Sprintf("dropped an event line of %d bytes (limit %d)", n, event.MaxLine))
		w.last, w.lastEvent = time.Now(), time.Now()
		w.mu.Unlock()
	}
	defer func() {
		if garbage > 0 {
			w.mu.Lock()
			w.notes = append(w.notes, fmt.Sprintf("%d undecodable line(s) on the event port", garbage))
			w.mu.Unlock()
		}
	}()
	for {
		e, err := rd.Next()
		if err != nil {
			return
		}
		w.mu.Lock()
		w.last, w.lastEvent = time.Now(), time.Now()
		switch e.Type {
		case event.Hello:
			ev := e
			w.res.Hello = &ev
			w.helloOnce.Do(func() { close(w.helloSeen) })
		case event.TestStart:
			w.runSuite, w.runTest = e.Suite, e.Test
		case event.TestEnd:
			if w.res.FirstEvent == 0 {
				w.res.FirstEvent = time.Since(w.res.Started)
			}
			w.runSuite, w.runTest = e.Suite, ""
		case event.SuiteStart:
			w.runSuite, w.runTest = e.Suite, ""
			select {
			case w.suiteStart <- suiteRun{name: e.Suite, deadline: w.deadlineOf(e.Suite)}:
			default:
			}
		case event.SuiteEnd:
			w.runSuite, w.runTest = "", ""
			select {
			case w.suiteEnd <- struct{}{}:
			default:
			}
		case event.Done:
			w.res.Done = true
		}
		w.mu.Unlock()
		if onEvent != nil {
			onEvent(e)
		}
	}
}

// deadlineOf finds the deadline the host gave the suite that just
// started: suites start in the order they were given.
func (w *watch) deadlineOf(name string) time.Duration {
	for w.suiteIdx < len(w.suites) {
		s := w.suites[w.suiteIdx]
		w.suiteIdx++
		if s.Name == name {
			if s.Deadline > 0 {
				return s.Deadline
			}
			break
		}
	}
	return guest.DefaultDeadline
}

// tailBuf keeps the last 4 KiB written.
type tailBuf struct{ b []byte }

func (t *tailBuf) Write(p []byte) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
}

func (t *tailBuf) String() string { return string(t.b) }
