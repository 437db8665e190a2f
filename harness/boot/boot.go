// Package boot runs one kernel in QEMU: it builds the command line from
// the target's declarative record, drains the console to a log file while
// parsing it live for splats, reads the agent's events from a socket of
// their own, and turns whatever happened into one outcome with layered
// timeouts (boot, no output, overall), as syzkaller's vm/qemu and ktest do.
package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/report"
	"github.com/kharness/kharness/harness/target"
)

// Spec is one boot.
type Spec struct {
	Target  target.Target
	Kernel  string
	Initrd  string
	Accel   Accel
	Cmdline []string // added after the target's own arguments
	// Dir receives console.log, events.jsonl and qemu.cmdline.
	Dir string
	// Deadlines, already scaled for the accelerator.
	Boot     time.Duration // QEMU start → agent hello
	NoOutput time.Duration // silence on console and events
	Overall  time.Duration
	// CrashGrace is how long to keep reading after a fatal splat so the
	// whole report is captured before QEMU is killed.
	CrashGrace time.Duration
}

// Result is what one boot came to.
type Result struct {
	Outcome outcome.Outcome
	Reason  string
	// Crashes are all splats seen on the console; Crash is the one the
	// outcome is about (nil when none).
	Crashes []report.Report
	Crash   *report.Report
	// Blame is the suite/test running when the guest crashed or went silent.
	BlameSuite, BlameTest string
	Hello                 *event.Event
	Done                  bool
	QEMUExit              int
	Started               time.Time
	FirstEvent            time.Duration // QEMU start → first test result
	Duration              time.Duration
	Accel                 Accel
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
	cmdline := append(append([]string{}, t.Cmdline...), s.Cmdline...)
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
		q = append(q, shellQuote(a))
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '_' || r == '.' || r == ',' || r == ':' || r == '=' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Run boots s and calls onEvent for every guest event, in order, as it
// arrives. It returns when QEMU is gone; QEMU never outlives it.
func Run(ctx context.Context, s Spec, onEvent func(event.Event)) (*Result, error) {
	if s.CrashGrace == 0 {
		s.CrashGrace = 10 * time.Second
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "boot dir: %w", err)
	}
	sockDir, err := os.MkdirTemp("", "kharness-ev-")
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "socket dir: %w", err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "events.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "listen for guest events: %w", err)
	}
	defer ln.Close()

	if err := os.WriteFile(filepath.Join(s.Dir, "qemu.cmdline"), []byte(Reproducer(s)+"\n"), 0o644); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	consoleFile, err := os.Create(filepath.Join(s.Dir, "console.log"))
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	defer consoleFile.Close()
	rawEvents, err := os.Create(filepath.Join(s.Dir, "events.jsonl"))
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	defer rawEvents.Close()

	cmd := exec.Command(s.Target.QEMU, Args(s, "stdio,signal=off", "socket,path="+sock)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	res := &Result{Accel: s.Accel, Started: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "start %s: %w", s.Target.QEMU, err)
	}
	os.WriteFile(filepath.Join(s.Dir, "qemu.pid"), []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644)
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	defer kill()

	w := &watch{res: res, last: time.Now(), parser: report.NewParser(),
		crashSeen: make(chan struct{}), helloSeen: make(chan struct{})}
	helloC, crashC := w.helloSeen, w.crashSeen
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); w.console(stdout, consoleFile) }()
	go func() { defer wg.Done(); w.events(ln, rawEvents, onEvent) }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	verdict := func(o outcome.Outcome, why string) {
		if res.Outcome == "" {
			res.Outcome, res.Reason = o, why
		}
	}
	bootT := time.NewTimer(s.Boot)
	overallT := time.NewTimer(s.Overall)
	tick := time.NewTicker(500 * time.Millisecond)
	defer bootT.Stop()
	defer overallT.Stop()
	defer tick.Stop()
	var graceT <-chan time.Time
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-exited:
			break loop
		case <-ctx.Done():
			verdict(outcome.Interrupted, "interrupted: "+context.Cause(ctx).Error())
			kill()
		case <-helloC:
			bootT.Stop()
			helloC = nil
		case <-bootT.C:
			if !w.hello() {
				verdict(outcome.BootFail, fmt.Sprintf("no agent hello within %s of QEMU start", s.Boot))
				kill()
			}
		case <-overallT.C:
			verdict(outcome.Timeout, fmt.Sprintf("overall deadline of %s exceeded", s.Overall))
			kill()
		case <-crashC:
			crashC = nil
			graceT = time.After(s.CrashGrace)
		case <-graceT:
			kill()
		case <-tick.C:
			if silent := w.silence(); silent > s.NoOutput {
				verdict(outcome.Timeout, fmt.Sprintf("no output on console or events for %s", silent.Round(time.Second)))
				kill()
			}
		}
	}
	// QEMU is gone; what it wrote may still sit in the socket and pipe
	// buffers. Read both to EOF (bounded), so the last events before a
	// crash are not lost.
	ln.Close()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		w.closeConn()
		<-drained
	}
	res.Duration = time.Since(res.Started)
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		res.QEMUExit = ee.ExitCode()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	res.Crashes = w.parser.Reports()
	if c, ok := report.Most(res.Crashes); ok {
		res.Crash = &c
	}
	res.BlameSuite, res.BlameTest = w.runSuite, w.runTest
	switch {
	case res.Outcome == outcome.Interrupted:
	case res.Crash != nil && res.Hello == nil:
		res.Outcome, res.Reason = outcome.BootFail, "kernel crashed before the agent started: "+res.Crash.Title
	case res.Crash != nil && (res.Crash.Fatal || !res.Done):
		res.Outcome, res.Reason = outcome.KernelCrash, res.Crash.Title
	case res.Outcome != "":
	case res.Hello == nil:
		res.Outcome, res.Reason = outcome.BootFail, fmt.Sprintf("QEMU exited (status %d) before the agent said hello", res.QEMUExit)
	case !res.Done:
		if res.QEMUExit != 0 {
			res.Outcome, res.Reason = outcome.Infra, fmt.Sprintf("QEMU exited with status %d before the done sentinel", res.QEMUExit)
		} else {
			res.Outcome, res.Reason = outcome.KernelCrash, "the guest rebooted or powered off before the done sentinel"
		}
	default:
		res.Outcome = outcome.Pass // the tests' own results decide the cell
	}
	return res, nil
}

// watch is the shared state of the console and event readers.
type watch struct {
	mu        sync.Mutex
	res       *Result
	last      time.Time
	parser    *report.Parser
	conn      net.Conn
	crashSeen chan struct{}
	helloSeen chan struct{}
	crashOnce sync.Once
	helloOnce sync.Once
	runSuite  string
	runTest   string
}

func (w *watch) touch() {
	w.mu.Lock()
	w.last = time.Now()
	w.mu.Unlock()
}

func (w *watch) silence() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Since(w.last)
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

func (w *watch) console(r io.Reader, log io.Writer) {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			log.Write([]byte(line))
			w.mu.Lock()
			w.last = time.Now()
			rep := w.parser.Feed(strings.TrimRight(line, "\r\n"))
			w.mu.Unlock()
			if rep != nil && rep.Fatal {
				w.crashOnce.Do(func() { close(w.crashSeen) })
			}
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
	rd := event.NewReader(io.TeeReader(conn, raw))
	for {
		e, err := rd.Next()
		if err != nil {
			return
		}
		w.mu.Lock()
		w.last = time.Now()
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
		case event.SuiteEnd:
			w.runSuite, w.runTest = "", ""
		case event.Done:
			w.res.Done = true
		}
		w.mu.Unlock()
		if onEvent != nil {
			onEvent(e)
		}
	}
}
