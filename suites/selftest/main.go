// Command selftest is a test-only suite that makes the guest fail in each
// way the harness must tell apart: a failing test, a kernel WARNING, a
// panic, a guest that goes silent, and a test that runs until stopped.
// Its lkdtm-* tests provoke one real kernel splat each (lkdtm.go) for the
// splat classifier's corpus. It is never part of "all" (suite.yaml
// default: false); the harness's end-to-end tests select single tests
// with "selftest:NAME".
package main

import (
	"os"
	"path/filepath"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/suite"
)

func main() {
	if typ := os.Getenv(lkdtmChildEnv); typ != "" {
		lkdtmChild(typ)
	}
	// stuck and die come first: the e2e tests check that the test after
	// them is reported as never run.
	tests := []suite.Test{
		{Name: "stuck", Run: stuck},
		{Name: "die", Run: die},
		{Name: "pass", Run: func(t *suite.T) { t.Metric("answer", 42) }},
		{Name: "fail", Run: func(t *suite.T) { t.Errorf("deliberate failure") }},
		{Name: "skip", Run: func(t *suite.T) { t.Skipf("deliberate skip") }},
		{Name: "warn", Run: lkdtm("WARNING")},
		{Name: "oops", Run: lkdtm("EXCEPTION")},
		{Name: "panic", Run: sysrqCrash},
		{Name: "hang", Run: hang},
		{Name: "sleep", Run: sleep},
	}
	suite.Main("selftest", append(tests, lkdtmTests()...)...)
}

// stuck never returns, but the guest stays alive (its heartbeat goes on):
// only the per-test deadline the agent enforces can end it.
func stuck(t *suite.T) {
	r, _, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	var b [1]byte
	r.Read(b[:]) // nobody writes
	t.Errorf("read from a pipe nobody writes returned")
}

// die kills the suite process in the middle of a test, as a segfault
// would: the tests after it never report. The Go runtime catches a
// SIGSEGV sent by kill (and exits 2 with a goroutine dump), so the
// signal's disposition goes back to the kernel's default first: the
// process is then killed by the signal itself, as by a real fault in C.
func die(t *suite.T) {
	var dfl [4]uint64 // struct sigaction, all zero: SIG_DFL, no flags
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGSEGV), uintptr(unsafe.Pointer(&dfl[0])), 0, 8, 0, 0); e != 0 {
		t.Fatalf("rt_sigaction(SIGSEGV, SIG_DFL): %v", e)
	}
	unix.Kill(os.Getpid(), unix.SIGSEGV)
	time.Sleep(time.Minute)
	t.Errorf("SIGSEGV did not kill the suite")
}

// lkdtm provokes a real kernel splat through LKDTM's debugfs file.
func lkdtm(what string) func(t *suite.T) {
	return func(t *suite.T) {
		const path = "/sys/kernel/debug/provoke-crash/DIRECT"
		if err := os.WriteFile(path, []byte(what), 0); err != nil {
			t.Fatalf("write %s to %s: %v", what, path, err)
		}
		t.Logf("LKDTM %s triggered and returned", what)
	}
}

func sysrqCrash(t *suite.T) {
	t.Logf("triggering sysrq-c")
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
		t.Fatalf("sysrq-trigger: %v", err)
	}
	t.Errorf("sysrq-c returned: the kernel did not crash")
}

// hang starves the whole guest: one SCHED_FIFO spinner per CPU with RT
// throttling off, so neither the agent nor the console print anything.
func hang(t *suite.T) {
	if err := os.WriteFile("/proc/sys/kernel/sched_rt_runtime_us", []byte("-1"), 0); err != nil {
		t.Logf("cannot disable RT throttling: %v", err)
	}
	// Since 6.12 a deadline server runs CFS tasks 50 ms a second even under
	// RT hogs (the agent's heartbeat would go on): turn it off per CPU.
	servers, _ := filepath.Glob("/sys/kernel/debug/sched/fair_server/cpu*/runtime")
	for _, f := range servers {
		if err := os.WriteFile(f, []byte("0"), 0); err != nil {
			t.Logf("cannot turn off the fair server (%s): %v", f, err)
		}
	}
	t.Logf("starving all CPUs with SCHED_FIFO spinners")
	for cpu := 0; cpu < runtime.NumCPU(); cpu++ {
		go func(cpu int) {
			runtime.LockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			unix.SchedSetaffinity(0, &set)
			unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 1 /* SCHED_FIFO */, Priority: 99}, 0)
			for {
			}
		}(cpu)
	}
	time.Sleep(time.Hour)
}

func sleep(t *suite.T) {
	for t.Running() {
		time.Sleep(100 * time.Millisecond)
	}
}
