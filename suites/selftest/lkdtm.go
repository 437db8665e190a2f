package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/kmsg"
	"github.com/kharness/kharness/suites/suite"
	"github.com/kharness/kharness/suites/sysinfo"
)

// The lkdtm-* tests provoke one real kernel splat each through LKDTM, for
// the splat classifier's corpus of real console logs
// (harness/splat/testdata; see HACKING.md, "Add a splat class"). Each is
// named "lkdtm-" + the LKDTM crash type in lower case with dashes. Run one
// per boot: most of them end the kernel (oops=panic), the others leave it
// tainted or a CPU lost.
//
// Most types crash the kernel or return at once. The lockups never return,
// so they are provoked from a child process that stays stuck in the kernel
// while the test waits for the detector's report in the kernel log.
type lkdtmCase struct {
	typ string // LKDTM crash type
	// needs is the kconfig option without which nothing detects the bug
	// (the test skips instead of corrupting the kernel unseen).
	needs string
	arch  string      // only on this GOARCH
	knobs [][2]string // files to write first (path, value), e.g. a shorter hung-task timeout
	// await, when set, makes the provocation run in a child process that
	// never comes back; the test ends when the kernel log matches it.
	await string
	twice bool // the type acts on its second call (SPINLOCKUP); both run in children
}

const (
	lkdtmDirect = "/sys/kernel/debug/provoke-crash/DIRECT"
	// lkdtmChildEnv makes the binary a child that writes its value to
	// lkdtmDirect and never returns.
	lkdtmChildEnv = "KHARNESS_SELFTEST_LKDTM"
)

var lkdtmCases = []lkdtmCase{
	// Fatal: the kernel panics (panic(), or oops=panic).
	{typ: "PANIC"},
	{typ: "PANIC_STOP_IRQOFF"},
	{typ: "BUG"},
	{typ: "EXCEPTION"},
	{typ: "ACCESS_NULL"},
	{typ: "ACCESS_USERSPACE"},
	{typ: "EXEC_DATA"},
	{typ: "EXEC_NULL"},
	{typ: "EXEC_USERSPACE"},
	{typ: "WRITE_RO"},
	{typ: "WRITE_KERN"},
	{typ: "UNSET_SMEP", arch: "amd64"},
	{typ: "DOUBLE_FAULT", arch: "386"},
	{typ: "EXHAUST_STACK", needs: "CONFIG_VMAP_STACK"},
	{typ: "STACK_GUARD_PAGE_LEADING", needs: "CONFIG_VMAP_STACK"},
	{typ: "STACK_GUARD_PAGE_TRAILING", needs: "CONFIG_VMAP_STACK"},
	{typ: "VMALLOC_LINEAR_OVERFLOW"},
	{typ: "READ_BUDDY_AFTER_FREE", needs: "CONFIG_DEBUG_PAGEALLOC"},
	// Reported, and the kernel goes on.
	{typ: "WARNING"},
	{typ: "WARNING_MESSAGE"},
	{typ: "REFCOUNT_INC_OVERFLOW"},
	{typ: "REFCOUNT_DEC_NEGATIVE"},
	{typ: "CORRUPT_LIST_ADD", needs: "CONFIG_DEBUG_LIST"},
	{typ: "CORRUPT_LIST_DEL", needs: "CONFIG_DEBUG_LIST"},
	{typ: "SLAB_FREE_DOUBLE", needs: "CONFIG_SLUB_DEBUG"},
	{typ: "SLAB_FREE_CROSS", needs: "CONFIG_SLUB_DEBUG"},
	{typ: "SLAB_FREE_PAGE", needs: "CONFIG_SLUB_DEBUG"},
	{typ: "READ_AFTER_FREE", needs: "CONFIG_KASAN"},
	{typ: "WRITE_AFTER_FREE", needs: "CONFIG_KASAN"},
	{typ: "WRITE_BUDDY_AFTER_FREE", needs: "CONFIG_KASAN"},
	{typ: "SLAB_LINEAR_OVERFLOW", needs: "CONFIG_KASAN"},
	{typ: "ARRAY_BOUNDS", needs: "CONFIG_UBSAN_BOUNDS"},
	// Never return: the detectors report them while the child is stuck.
	{typ: "HUNG_TASK", knobs: [][2]string{{"/proc/sys/kernel/hung_task_timeout_secs", "10"}},
		await: `blocked for more than \d+ seconds`},
	{typ: "SOFTLOCKUP", await: `soft lockup - CPU#`},
	// Without a hard lockup detector nothing reports a CPU spinning with
	// interrupts off: under TCG not even RCU's stall warning, only the
	// tasks that wait for that CPU, minutes later.
	{typ: "HARDLOCKUP", needs: "CONFIG_HARDLOCKUP_DETECTOR", await: `hard LOCKUP`},
	{typ: "SPINLOCKUP", twice: true, await: `soft lockup - CPU#|spinlock recursion|detected stalls? on CPU`},
}

func lkdtmTests() []suite.Test {
	var ts []suite.Test
	for _, c := range lkdtmCases {
		t := suite.Test{Name: "lkdtm-" + strings.ReplaceAll(strings.ToLower(c.typ), "_", "-"), Run: c.run}
		if c.arch != "" {
			t.Arches = []string{c.arch}
		}
		ts = append(ts, t)
	}
	return ts
}

func (c lkdtmCase) run(t *suite.T) {
	if c.needs != "" {
		cfg, _, err := sysinfo.KernelConfig()
		if err != nil {
			t.Fatalf("%v", err)
		}
		if v := cfg[c.needs]; v != "y" {
			t.Skipf("LKDTM %s needs %s=y (the kernel has %q): nothing would report it", c.typ, c.needs, v)
		}
	}
	for _, k := range c.knobs {
		if err := os.WriteFile(k[0], []byte(k[1]), 0); err != nil {
			t.Fatalf("write %s to %s: %v", k[1], k[0], err)
		}
	}
	km, err := kmsg.Open()
	if err != nil {
		t.Fatalf("/dev/kmsg: %v", err)
	}
	defer km.Close()
	if c.await == "" {
		provoke(t, c.typ)
		t.Logf("LKDTM %s returned", c.typ)
		for _, l := range km.Lines(0) {
			if strings.Contains(l, "lkdtm: FAIL") {
				t.Errorf("%s", l)
			}
		}
		return
	}
	// The boot's last stop_machine (TSC recalibration, about a second
	// after the clocksource starts) would wait for the locked CPU and
	// turn any lockup into a soft lockup of the stopper.
	settle(10 * time.Second)
	if c.twice {
		// The first call returns to user space holding a spinlock:
		// whatever that child does next sleeps in atomic context.
		if err := spawnStuck(c.typ); err != nil {
			t.Fatalf("LKDTM %s: %v", c.typ, err)
		}
		time.Sleep(time.Second)
	}
	if err := spawnStuck(c.typ); err != nil {
		t.Fatalf("LKDTM %s: %v", c.typ, err)
	}
	re := regexp.MustCompile(c.await)
	limit := t.Params().Scaled(3 * time.Minute)
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, l := range km.Lines(time.Second) {
			if re.MatchString(l) {
				t.Logf("LKDTM %s reported: %s", c.typ, l)
				// Let the report finish before the agent reads the log
				// (lockup reports repeat: at most half a minute).
				for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && len(km.Lines(3*time.Second)) > 0; {
				}
				return
			}
		}
	}
	t.Errorf("LKDTM %s: no kernel report matching %q within %s", c.typ, c.await, limit)
}

// settle waits until the kernel has been up for d.
func settle(d time.Duration) {
	var info unix.Sysinfo_t
	if unix.Sysinfo(&info) == nil {
		if up := time.Duration(info.Uptime) * time.Second; up < d {
			time.Sleep(d - up)
		}
	}
}

func provoke(t *suite.T, typ string) {
	if err := os.WriteFile(lkdtmDirect, []byte(typ), 0); err != nil {
		t.Fatalf("write %s to %s: %v", typ, lkdtmDirect, err)
	}
}

// spawnStuck starts a child that provokes typ and stays in the kernel.
// It is never waited for; it must not hold the suite's event or ack
// descriptors, or the agent would wait for their end forever.
func spawnStuck(typ string) error {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	self, err := os.Executable() // so the child's name is the suite's, not "exe"
	if err != nil {
		return err
	}
	cmd := exec.Command(self)
	cmd.Env = []string{lkdtmChildEnv + "=" + typ}
	return cmd.Start()
}

// lkdtmChild is the child of spawnStuck. It runs on the last CPU: the
// first one is where the agent's power-off migrates, and a CPU spinning
// with preemption off would never let it in.
func lkdtmChild(typ string) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(runtime.NumCPU() - 1)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintf(os.Stderr, "selftest: LKDTM %s: sched_setaffinity: %v\n", typ, err)
	}
	if err := os.WriteFile(lkdtmDirect, []byte(typ), 0); err != nil {
		fmt.Fprintf(os.Stderr, "selftest: LKDTM %s: %v\n", typ, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "selftest: LKDTM %s returned\n", typ)
	os.Exit(1)
}
