package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/internal/standin"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/splat"
	"github.com/kharness/kharness/harness/target"
)

func TestArgs(t *testing.T) {
	for _, name := range target.Names() {
		tg, _ := target.Lookup(name)
		for _, accel := range []Accel{TCG, KVM} {
			s := Spec{Target: tg, Kernel: "/k/bzImage", Initrd: "/i.cpio", Accel: accel, Guest: guest.BootArgs{Mode: guest.ModeRun}}
			a := Args(s, "stdio", "socket,path=/s")
			join := strings.Join(a, " ")
			for _, w := range []string{"-no-reboot", "-accel " + string(accel), "-kernel /k/bzImage", "-initrd /i.cpio", "-chardev socket,path=/s,id=ev"} {
				if !strings.Contains(join, w) {
					t.Errorf("%s/%s: args lack %q: %s", name, accel, w, join)
				}
			}
			app := a[slices.Index(a, "-append")+1]
			for _, w := range []string{"panic=-1", "console=ttyS0", guest.BootArgs{Mode: guest.ModeRun}.Encode()[0]} {
				if !strings.Contains(app, w) {
					t.Errorf("%s: kernel args lack %q: %s", name, w, app)
				}
			}
			cpu := a[slices.Index(a, "-cpu")+1]
			if (accel == KVM) != (cpu == tg.KVMCPU) {
				t.Errorf("%s/%s: cpu %s", name, accel, cpu)
			}
		}
	}
}

func TestHighmemGuestHasHighmem(t *testing.T) {
	tg, _ := target.Lookup("i386-highmem")
	if tg.MemoryMB < 2048 {
		t.Errorf("i386-highmem has %d MiB: less than 2 GiB leaves little or no highmem", tg.MemoryMB)
	}
}

func TestReproducerQuotes(t *testing.T) {
	tg, _ := target.Lookup("x86_64")
	s := Spec{Target: tg, Kernel: "/a b/bzImage", Initrd: "/i", Accel: TCG, Cmdline: []string{"x='y'"}}
	r := Reproducer(s)
	if !strings.HasPrefix(r, "qemu-system-x86_64 ") || !strings.Contains(r, "'/a b/bzImage'") || !strings.Contains(r, `x='\''y'\''`) {
		t.Errorf("reproducer not shell-safe: %s", r)
	}
	if !strings.Contains(r, "file,path=events.jsonl") {
		t.Errorf("reproducer should write events to a file: %s", r)
	}
}

func TestProbeSector(t *testing.T) {
	for _, name := range target.Names() {
		tg, _ := target.Lookup(name)
		b := tg.KVMProbe
		if len(b) != 512 || b[510] != 0x55 || b[511] != 0xAA {
			t.Errorf("%s: no boot-sector KVM probe", name)
		}
	}
}

// qemu is the stand-in QEMU, built on first use; TestMain removes it.
var qemu standin.QEMU

func TestMain(m *testing.M) {
	code := m.Run()
	qemu.Cleanup()
	os.Exit(code)
}

// scripted boots the stand-in with script and short deadlines.
func scripted(t *testing.T, script string, tweak func(*Spec)) (*Result, []event.Event, string) {
	t.Helper()
	bin, err := qemu.Path()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp := filepath.Join(dir, "script")
	if err := os.WriteFile(sp, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	tg, _ := target.Lookup("x86_64")
	tg.QEMU = bin
	s := Spec{Target: tg, Kernel: "/k", Initrd: "/i", Accel: TCG, Dir: filepath.Join(dir, "cell"),
		Cmdline: []string{"fakeqemu.script=" + sp},
		Guest:   guest.BootArgs{Mode: guest.ModeRun, Suites: []guest.Suite{{Name: "s", Deadline: time.Second}}},
		Boot:    3 * time.Second, NoOutput: 1500 * time.Millisecond, Overall: 20 * time.Second,
		SuiteGrace: 500 * time.Millisecond, CrashGrace: 300 * time.Millisecond}
	if tweak != nil {
		tweak(&s)
	}
	var evs []event.Event
	var mu sync.Mutex
	r, err := Run(context.Background(), s, func(e event.Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r, evs, s.Dir
}

const (
	hello     = `event {"type":"hello","info":{"release":"6.12"}}`
	suiteS    = `event {"type":"suite-start","suite":"s","tests":["a","b"]}`
	startA    = `event {"type":"test-start","suite":"s","test":"a"}`
	endA      = `event {"type":"test-end","suite":"s","test":"a","result":"pass"}`
	suiteE    = `event {"type":"suite-end","suite":"s","result":"pass"}`
	done      = `event {"type":"done"}`
	bootLines = "console [    0.000000] Linux version 6.12.57 (kharness@kharness) (gcc 12) #1 SMP\nconsole [    0.100000] Run /init as init process\n"
)

// panicTail is a real panic's shape: the verdict must see all of it.
const panicTail = `console [   12.000000] sysrq: Trigger a crash
console [   12.000001] Kernel panic - not syncing: sysrq triggered crash
console [   12.000002] CPU: 1 UID: 0 PID: 77 Comm: selftest Not tainted 6.12.57 #1
console [   12.000003] Call Trace:
console [   12.000004]  <TASK>
console [   12.000005]  dump_stack_lvl+0x3c/0x50
console [   12.000006]  panic+0x10d/0x2f0
console [   12.000007]  sysrq_handle_crash+0x16/0x20
console [   12.000008]  </TASK>
console [   12.000009] Kernel Offset: disabled
console [   12.000010] Rebooting in 1 seconds..
console [   12.000011] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---
`

func longSuite(s *Spec) { s.Guest.Suites[0].Deadline = time.Hour }

// TestRunFaults drives boot.Run through the stand-in QEMU over every row
// of the fault table that concerns a boot.
func TestRunFaults(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		tweak     func(*Spec)
		want      outcome.Outcome
		watchdog  bool
		reason    string
		blameTest string
		events    int // at least this many events delivered
		check     func(t *testing.T, r *Result, dir string)
	}{
		{name: "healthy", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\n" + endA + "\n" + suiteE + "\n" + done + "\nexit 0\n",
			want: outcome.Pass, events: 6},
		{name: "panic mid-suite", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\n" + panicTail + "exit 0\n",
			want: outcome.KernelCrash, reason: "sysrq triggered crash", blameTest: "a", events: 3,
			check: func(t *testing.T, r *Result, dir string) {
				if r.Crash == nil || !strings.Contains(r.Crash.Text, "---[ end Kernel panic") {
					t.Errorf("crash report incomplete: %+v", r.Crash)
				}
			}},
		{name: "silent guest", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\nhang\n",
			tweak: longSuite, want: outcome.Timeout, watchdog: true, reason: "no events from the guest for", blameTest: "a", events: 3},
		{name: "noisy console, no events", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\nnoisy 0 rcu: INFO: rcu_preempt self-detected stall on CPU\n",
			tweak: longSuite, want: outcome.Timeout, watchdog: true, reason: "(the console kept printing)", blameTest: "a", events: 3},
		{name: "flood without newlines", script: bootLines + hello + "\n" + "console-raw 3000000\nhang\n",
			want: outcome.Timeout, watchdog: true, reason: "no events", events: 1,
			check: func(t *testing.T, r *Result, dir string) {
				if fi, err := os.Stat(filepath.Join(dir, "console.log")); err != nil || fi.Size() < 3000000 {
					t.Errorf("console.log lost the flood: %v", fi)
				}
			}},
		{name: "silent before hello", script: "hang\n", tweak: func(s *Spec) { s.Boot = time.Hour },
			want: outcome.Timeout, watchdog: true, reason: "no output on console or events"},
		{name: "no hello in time", script: bootLines + "noisy 0 [    1.0] still booting\n",
			want: outcome.BootFail, watchdog: true, reason: "no agent hello within"},
		{name: "qemu missing", tweak: func(s *Spec) { s.Target.QEMU = "/nonexistent/qemu-system-x86_64" },
			want: outcome.Infra, reason: "QEMU did not start"},
		{name: "qemu fails to start", script: "stderr qemu-system-x86_64: could not load kernel '/k': No such file or directory\nexit 1\n",
			want: outcome.Infra, reason: "QEMU exited with status 1: qemu-system-x86_64: could not load kernel"},
		{name: "qemu exits non-zero mid-run", script: bootLines + hello + "\n" + suiteS + "\nexit 1\n",
			want: outcome.Infra, reason: "QEMU exited with status 1", events: 2},
		{name: "qemu killed from outside (SIGTERM, exits 0)", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\nterm-from 4242\n",
			want: outcome.Infra, reason: "terminating on signal 15 from pid 4242", blameTest: "a", events: 3},
		{name: "qemu killed by a signal", script: bootLines + hello + "\n" + suiteS + "\nsignal KILL\n",
			want: outcome.Infra, reason: "QEMU was killed by killed", events: 2},
		{name: "powered off before done", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\nexit 0\n",
			want: outcome.KernelCrash, reason: "before the done sentinel", blameTest: "a", events: 3},
		{name: "powered off before hello", script: bootLines + "exit 0\n", want: outcome.BootFail, reason: "before the agent said hello"},
		{name: "oversized event line", script: bootLines + hello + "\nevent-big 5000000\n" + suiteS + "\n" + startA + "\n" + endA + "\n" + suiteE + "\n" + done + "\nexit 0\n",
			want: outcome.Pass, events: 6, check: func(t *testing.T, r *Result, dir string) {
				if len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "dropped an event line of") {
					t.Errorf("notes %q", r.Notes)
				}
			}},
		{name: "events file not writable", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\n" + endA + "\n" + suiteE + "\n" + done + "\nexit 0\n",
			tweak: func(s *Spec) {
				os.MkdirAll(s.Dir, 0o755)
				os.Symlink("/dev/full", filepath.Join(s.Dir, "events.jsonl"))
			},
			want: outcome.Infra, reason: "events.jsonl: write", events: 6, check: func(t *testing.T, r *Result, dir string) {
				if !strings.Contains(r.Reason, "no space left on device") {
					t.Errorf("reason %q does not say why", r.Reason)
				}
			}},
		{name: "suite outruns its deadline, guest alive", script: bootLines + hello + "\n" + suiteS + "\n" + startA + "\n" +
			strings.Repeat(`event {"type":"progress","suite":"s","test":"a","iterations":1}`+"\nsleep 200ms\n", 30) + "hang\n",
			want: outcome.Timeout, reason: "suite s still running 500ms after its 1s deadline", blameTest: "a", events: 4},
		{name: "overall deadline", script: bootLines + hello + "\n" + strings.Repeat(`event {"type":"log","message":"x"}`+"\nsleep 100ms\n", 100),
			tweak: func(s *Spec) { s.Overall = 2 * time.Second }, want: outcome.Timeout, watchdog: true, reason: "overall deadline of 2s exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r, evs, dir := scripted(t, tc.script, tc.tweak)
			if r.Outcome != tc.want || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("outcome %s (%q), want %s (%q)", r.Outcome, r.Reason, tc.want, tc.reason)
			}
			if r.Watchdog != tc.watchdog {
				t.Errorf("watchdog %v, want %v", r.Watchdog, tc.watchdog)
			}
			if r.BlameTest != tc.blameTest {
				t.Errorf("blamed %q, want %q", r.BlameTest, tc.blameTest)
			}
			if len(evs) < tc.events {
				t.Errorf("%d events delivered, want at least %d", len(evs), tc.events)
			}
			if tc.check != nil {
				tc.check(t, r, dir)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %s", d)
			}
			// Nothing left running: the pid QEMU had is gone.
			if b, err := os.ReadFile(filepath.Join(dir, "qemu.pid")); err == nil {
				var pid int
				fmt.Sscan(string(b), &pid)
				if pid > 0 && syscall.Kill(pid, 0) == nil {
					if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z ") {
						t.Errorf("QEMU (pid %d) still running", pid)
					}
				}
			}
		})
	}
}

// TestConsoleTailNeverLost repeats the panic boot: every run must see the
// whole panic, up to its end marker (the old reader lost it 2 in 30).
func TestConsoleTailNeverLost(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 20
	}
	script := bootLines + hello + "\n" + suiteS + "\n" + startA + "\n" + panicTail + "exit 0\n"
	for i := 0; i < n; i++ {
		r, _, dir := scripted(t, script, nil)
		if r.Outcome != outcome.KernelCrash || r.Crash == nil || !strings.Contains(r.Crash.Text, "---[ end Kernel panic") {
			t.Fatalf("run %d: %s %q crash %+v", i, r.Outcome, r.Reason, r.Crash)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "console.log"))
		if !bytes.HasSuffix(b, []byte("sysrq triggered crash ]---\n")) {
			t.Fatalf("run %d: console.log ends %q", i, b[max(0, len(b)-80):])
		}
	}
}

// TestVerdictOrder: host faults are never guest outcomes, a crash beats a
// watchdog, an interruption beats everything.
func TestVerdictOrder(t *testing.T) {
	crash := &splat.Report{Kind: splat.Panic, Title: "Kernel panic - not syncing: x", Fatal: true}
	tests := []struct {
		f    Facts
		want outcome.Outcome
	}{
		{Facts{Hello: true, Done: true}, outcome.Pass},
		{Facts{Interrupted: "SIGINT", Crash: crash}, outcome.Interrupted},
		{Facts{StartErr: errors.New("x"), Hello: true}, outcome.Infra},
		{Facts{WriteErr: errors.New("ENOSPC"), Hello: true, Done: true}, outcome.Infra},
		{Facts{Hello: true, Crash: crash, Stopped: outcome.Timeout}, outcome.KernelCrash},
		{Facts{Crash: crash, ConsoleBytes: 10}, outcome.BootFail},
		{Facts{Hello: true, Stopped: outcome.Timeout, KilledByUs: true, ExitSignal: "killed"}, outcome.Timeout},
		{Facts{Hello: true, ExitSignal: "killed"}, outcome.Infra},
		{Facts{Hello: true, Terminated: "signal 15"}, outcome.Infra},
		{Facts{Hello: true, ExitCode: 1}, outcome.Infra},
		{Facts{ConsoleBytes: 0}, outcome.Infra},
		{Facts{ConsoleBytes: 100}, outcome.BootFail},
		{Facts{Hello: true}, outcome.KernelCrash},
	}
	for i, tc := range tests {
		if got, why, _ := Verdict(tc.f); got != tc.want {
			t.Errorf("%d: Verdict(%+v) = %s (%s), want %s", i, tc.f, got, why, tc.want)
		}
	}
}
