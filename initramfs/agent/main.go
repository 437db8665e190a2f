// Command agent is the guest's /init. It mounts the pseudo file systems,
// runs the selected suites one after another with a deadline each, streams
// their events to the host over a serial port of its own (never the
// kernel console), attaches to every test the kernel log lines it
// produced, ends the stream with a sentinel and powers the VM off.
//
// What to run comes from the kernel command line (package guest, the one
// contract both sides share). The agent judges nothing: it reports what
// happened (a suite's declared tests, its exit status, the kernel log of
// each test) and the host decides the verdict.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/suite"
	"github.com/kharness/kharness/suites/sysinfo"
)

func main() {
	log := os.Stdout
	if err := mountAll(); err != nil {
		fmt.Fprintf(log, "kharness-agent: %v\n", err)
	}
	args, argErr := guest.Read()
	if args.Mode == guest.ModeShell {
		shell(log)
		powerOff(log)
	}
	ew, drain, closeEv, err := openEvents("/dev/" + args.EventPort)
	if err != nil {
		fmt.Fprintf(log, "kharness-agent: %v\n", err)
		powerOff(log)
	}
	a := &agent{log: log, ev: ew, drain: drain}
	a.run(args, argErr)
	closeEv()
	powerOff(log)
}

type mount struct{ src, dir, fstype string }

func mountAll() error {
	var errs []error
	for _, m := range []mount{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"debugfs", "/sys/kernel/debug", "debugfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err))
		}
	}
	return errors.Join(errs...)
}

// openEvents opens the event port in raw mode: no echo, no \n → \r\n.
func openEvents(port string) (w *event.Writer, drain, closeFn func(), err error) {
	f, err := os.OpenFile(port, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open event port %s: %w", port, err)
	}
	if tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag &^= unix.CSIZE | unix.PARENB
		tio.Cflag |= unix.CS8
		unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, tio)
	}
	drain = func() { unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) } // tcdrain
	return event.NewWriter(f), drain, func() { drain(); f.Close() }, nil
}

type agent struct {
	log   io.Writer
	ev    *event.Writer
	drain func() // waits until the event port has sent everything
	root  string // prefix of the image's paths ("" in the guest; tests set it)
}

func (a *agent) emit(e event.Event) {
	if err := a.ev.Emit(e); err != nil {
		fmt.Fprintf(a.log, "kharness-agent: %v\n", err)
	}
}

func (a *agent) run(args guest.BootArgs, argErr error) {
	release, version, machine := sysinfo.Uname()
	cmdline, _ := os.ReadFile("/proc/cmdline")
	mi, _ := sysinfo.MemInfo()
	a.emit(event.Event{Type: event.Hello, Info: map[string]string{
		"release": release, "version": version, "machine": machine,
		"cmdline":  strings.TrimSpace(string(cmdline)),
		"mem_kb":   strconv.FormatUint(mi["MemTotal"], 10),
		"high_kb":  strconv.FormatUint(mi["HighTotal"], 10),
		"num_cpus": strconv.Itoa(numCPU()),
	}})
	if argErr != nil {
		// The host reads this and finds every suite never started.
		a.emit(event.Event{Type: event.Log, Message: "kharness-agent: " + argErr.Error()})
	} else {
		for _, s := range args.Suites {
			if plan, ok := a.readPlan(s.Name); ok {
				a.kselftest(s, plan, args)
				continue
			}
			a.suite(s, args)
		}
	}
	a.emit(event.Event{Type: event.Done})
}

func numCPU() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return 0
	}
	return set.Count()
}

// suite runs one suite binary, relaying its events and adding the kernel
// log each test produced.
func (a *agent) suite(s guest.Suite, args guest.BootArgs) {
	start := time.Now()
	name := s.Name
	bin := "/bin/" + name
	deadline := s.Deadline
	if deadline <= 0 {
		deadline = guest.DefaultDeadline
	}
	end := func(res event.Result, msg string) {
		a.emit(event.Event{Type: event.SuiteEnd, Suite: name, Result: res, Message: msg, DurationMS: time.Since(start).Milliseconds()})
	}
	// The suite declares its tests itself (its first event, a SuiteStart
	// with the tests this run selects); a binary that dies or is missing
	// before that gets an empty SuiteStart from here, so the host sees the
	// suite and its failure.
	declared := false
	endSuite := func(res event.Result, msg string) {
		if !declared {
			a.emit(event.Event{Type: event.SuiteStart, Suite: name})
			declared = true
		}
		end(res, msg)
	}
	argv := []string{"-duration=" + args.Duration.String(), fmt.Sprintf("-intensity=%d", args.Intensity),
		"-heartbeat=" + args.Heartbeat.String(), fmt.Sprintf("-scale=%g", args.Scale)}
	if s.Tests != "" {
		argv = append(argv, "-run="+s.Tests)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		endSuite(event.Fail, err.Error())
		return
	}
	// The suite waits on ack after each test start until the agent has
	// noted the kernel log position and the host has the event, so a
	// test that crashes the kernel at once is still blamed, and its kernel
	// log lines are its own.
	ackR, ackW, err := os.Pipe()
	if err != nil {
		pr.Close()
		pw.Close()
		endSuite(event.Fail, err.Error())
		return
	}
	defer ackW.Close()
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	cmd.ExtraFiles = []*os.File{pw, ackR}
	cmd.Env = append(os.Environ(), suite.EventsFDEnv+"=3", suite.AckFDEnv+"=4", "GOTRACEBACK=all")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		ackR.Close()
		endSuite(event.Fail, fmt.Sprintf("start %s: %v", bin, err))
		return
	}
	pw.Close()
	ackR.Close()
	var running *event.Event
	var kmsgStart uint64
	// A test that outruns its own deadline stops the suite at once: the
	// host learns which test hung without waiting for the suite's end.
	var testKilled atomic.Pointer[string]
	testTimer := time.AfterFunc(time.Hour, func() {})
	testTimer.Stop()
	defer testTimer.Stop()
	rd := event.NewReader(pr)
	rd.Garbage = func(line string) { fmt.Fprintf(a.log, "%s: bad event line: %q\n", name, line) }
	rd.Oversize = func(n int) {
		a.emit(event.Event{Type: event.Log, Suite: name, Message: fmt.Sprintf("dropped an event line of %d bytes (limit %d)", n, event.MaxLine)})
	}
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		switch e.Type {
		case event.SuiteStart:
			if declared {
				continue // only the first declaration counts
			}
			declared = true
		case event.TestStart:
			kmsgStart = kmsgLastSeq()
			cur := e
			cur.Time = time.Now()
			running = &cur
			if args.TestDeadline > 0 {
				testTimer.Stop()
				testTimer = time.AfterFunc(args.TestDeadline, func() {
					testKilled.Store(&cur.Test)
					syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				})
			}
			a.emit(e)
			a.drain()
			ackW.Write([]byte{1})
			continue
		case event.TestEnd:
			testTimer.Stop()
			e.Kmsg = kmsgSince(kmsgStart)
			running = nil
		}
		a.emit(e)
	}
	werr := cmd.Wait()
	testTimer.Stop()
	pr.Close()
	switch {
	case testKilled.Load() != nil && running != nil:
		msg := fmt.Sprintf("test %s outran its deadline of %s: suite %s stopped", running.Test, args.TestDeadline, name)
		a.emit(event.Event{Type: event.TestEnd, Suite: name, Test: running.Test, Result: event.Timeout,
			Message: msg, Kmsg: kmsgSince(kmsgStart), DurationMS: time.Since(running.Time).Milliseconds()})
		endSuite(event.Timeout, msg)
	case ctx.Err() != nil:
		msg := fmt.Sprintf("suite %s killed after its %s deadline", name, deadline)
		if running != nil {
			a.emit(event.Event{Type: event.TestEnd, Suite: name, Test: running.Test, Result: event.Timeout,
				Message: msg, Kmsg: kmsgSince(kmsgStart), DurationMS: time.Since(running.Time).Milliseconds()})
		}
		endSuite(event.Timeout, msg)
	case running != nil:
		msg := fmt.Sprintf("suite exited during test %s: %v", running.Test, werr)
		a.emit(event.Event{Type: event.TestEnd, Suite: name, Test: running.Test, Result: event.Fail,
			Message: msg, Kmsg: kmsgSince(kmsgStart), DurationMS: time.Since(running.Time).Milliseconds()})
		endSuite(event.Fail, msg)
	case werr != nil:
		endSuite(event.Fail, fmt.Sprintf("suite exited: %v", werr))
	default:
		endSuite(event.Pass, "")
	}
}

// kmsgRecords reads every record currently in the kernel log buffer. It
// uses raw syscalls: an os.File would hand the non-blocking fd to Go's
// poller and park on EAGAIN instead of returning at the end of the buffer.
func kmsgRecords(fn func(seq uint64, msg string)) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EPIPE { // overwritten while reading: go on
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		head, msg, ok := strings.Cut(string(buf[:n]), ";")
		if !ok {
			continue
		}
		fields := strings.Split(head, ",")
		if len(fields) < 2 {
			continue
		}
		seq, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		// Continuation lines (" KEY=value") carry dictionary data, not text.
		first, _, _ := strings.Cut(msg, "\n")
		fn(seq, first)
	}
}

func kmsgLastSeq() uint64 {
	var last uint64
	kmsgRecords(func(seq uint64, _ string) { last = seq })
	return last
}

func kmsgSince(after uint64) []string {
	var out []string
	kmsgRecords(func(seq uint64, msg string) {
		if seq > after {
			out = append(out, msg)
		}
	})
	if len(out) > 500 {
		out = append(out[:250], append([]string{"... (kernel log lines elided) ..."}, out[len(out)-250:]...)...)
	}
	return out
}

// shell gives a developer a u-root shell on the console (kharness boot).
func shell(log io.Writer) {
	fmt.Fprintln(log, "kharness-agent: shell mode; suites are in /bin, exit the shell to power off")
	for _, sh := range []string{"/bin/gosh", "/bbin/gosh", "/bin/sh"} {
		if _, err := os.Stat(sh); err != nil {
			continue
		}
		cmd := exec.Command(sh)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		cmd.Env = append(os.Environ(), "PATH=/bin:/bbin", "HOME=/tmp")
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(log, "kharness-agent: %s: %v\n", sh, err)
		}
		return
	}
	fmt.Fprintln(log, "kharness-agent: no shell in the image")
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// powerOff ends the VM. Without ACPI a halt leaves QEMU running, so the
// agent reboots and QEMU's -no-reboot turns that into an exit.
func powerOff(log io.Writer) {
	unix.Sync()
	fmt.Fprintln(log, "kharness-agent: powering off")
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	for {
		time.Sleep(time.Hour)
	}
}
