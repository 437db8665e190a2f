// Command selftest is a test-only suite that makes the guest fail in each
// way the harness must tell apart: a failing test, a kernel WARNING, a
// panic, a guest that goes silent, and a test that runs until stopped.
// It is never part of "all" (suite.yaml default: false); the harness's
// end-to-end tests select single tests with "selftest:NAME".
package main

import (
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/suite"
)

func main() {
	suite.Main("selftest",
		suite.Test{Name: "pass", Run: func(t *suite.T) { t.Metric("answer", 42) }},
		suite.Test{Name: "fail", Run: func(t *suite.T) { t.Errorf("deliberate failure") }},
		suite.Test{Name: "skip", Run: func(t *suite.T) { t.Skipf("deliberate skip") }},
		suite.Test{Name: "warn", Run: lkdtm("WARNING")},
		suite.Test{Name: "oops", Run: lkdtm("EXCEPTION")},
		suite.Test{Name: "panic", Run: sysrqCrash},
		suite.Test{Name: "hang", Run: hang},
		suite.Test{Name: "sleep", Run: sleep},
	)
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
