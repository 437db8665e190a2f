package splat

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// want is one expected report. first and last must be contained in the
// first and last lines of Text.
type want struct {
	kind        Kind
	title       string
	line        int
	fatal       bool
	first, last string
}

func checkReport(t *testing.T, r Report, w want) {
	t.Helper()
	if r.Kind != w.kind || r.Title != w.title || r.Line != w.line || r.Fatal != w.fatal {
		t.Errorf("got {%s %q line %d fatal %v}, want {%s %q line %d fatal %v}",
			r.Kind, r.Title, r.Line, r.Fatal, w.kind, w.title, w.line, w.fatal)
	}
	lines := strings.Split(r.Text, "\n")
	if first := lines[0]; !strings.Contains(first, w.first) {
		t.Errorf("%s: Text starts with %q, want it to contain %q", r.Title, first, w.first)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, w.last) {
		t.Errorf("%s: Text ends with %q, want it to contain %q", r.Title, last, w.last)
	}
	if len(lines) > maxLines {
		t.Errorf("%s: Text has %d lines, more than %d", r.Title, len(lines), maxLines)
	}
}

func describe(rs []Report) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s line %d fatal %v %q\n", r.Kind, r.Line, r.Fatal, r.Title)
	}
	return b.String()
}

// TestStreaming feeds every log line by line: the result must equal Parse,
// Feed must return a report exactly on header lines, and the pointers it
// returned must end up with the final text.
func TestStreaming(t *testing.T) {
	for _, path := range corpusFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := readCorpusFile(path)
			if err != nil {
				t.Fatal(err)
			}
			log := f.body
			p := NewParser()
			var got []*Report
			for i, l := range strings.Split(strings.TrimSuffix(string(log), "\n"), "\n") {
				if r := p.Feed(l); r != nil {
					if r.Line != i+1 {
						t.Errorf("Feed returned report of line %d on line %d", r.Line, i+1)
					}
					got = append(got, r)
				}
			}
			all := p.Reports()
			if want := Parse(log); !reflect.DeepEqual(all, want) {
				t.Fatalf("streaming:\n%sbatch:\n%s", describe(all), describe(want))
			}
			if len(got) != len(all) {
				t.Fatalf("Feed returned %d reports, Reports has %d", len(got), len(all))
			}
			for i, r := range got {
				if *r != all[i] {
					t.Errorf("report %d: pointer from Feed is stale: %q vs %q", i, r.Title, all[i].Title)
				}
			}
		})
	}
}

func TestFeedPointerGrows(t *testing.T) {
	p := NewParser()
	p.Feed("[    1.000000] Run /init as init process")
	r := p.Feed("[    5.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008")
	if r == nil || r.Title != "BUG: kernel NULL pointer dereference" {
		t.Fatalf("header: got %+v", r)
	}
	p.Feed("[    5.000001] #PF: supervisor read access in kernel mode")
	if rr := p.Feed("[    5.000002] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI"); rr != nil {
		t.Errorf("the Oops line after a page-fault header started report %q", rr.Title)
	}
	p.Feed("[    5.000003] RIP: 0010:ext4_fill_super+0x3a/0x1c0")
	if r.Title != "BUG: kernel NULL pointer dereference in ext4_fill_super" {
		t.Errorf("title not refined from RIP: %q", r.Title)
	}
	if n := strings.Count(r.Text, "\n") + 1; n != 4 {
		t.Errorf("Text has %d lines, want 4:\n%s", n, r.Text)
	}
	p.Feed("[    5.000004] ---[ end trace 0000000000000000 ]---")
	p.Feed("[    5.000005] EXT4-fs (vda): mounted filesystem")
	if !strings.HasSuffix(r.Text, "---[ end trace 0000000000000000 ]---") {
		t.Errorf("Text does not end at the end marker:\n%s", r.Text)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		line string
		kind Kind // "" means not a header
	}{
		// Prefixes.
		{"Kernel panic - not syncing: sysrq triggered crash", Panic},
		{"[   25.264212] Kernel panic - not syncing: sysrq triggered crash", Panic},
		{"[    T1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009", Panic},
		{"[   25.264212][    C1] Kernel panic - not syncing: Hard LOCKUP", Panic},
		{"0,812,25264212,-;Kernel panic - not syncing: sysrq triggered crash", Panic},
		{"4,1130,25264212,-,caller=T92;WARNING: CPU: 0 PID: 92 at kernel/foo.c:12 bar+0x1/0x2", Warning},
		{"<4>[    3.1] WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 bar+0x1/0x2", Warning},
		{"\x1b[0m[   3.100000] \x00WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 bar+0x1/0x2\r", Warning},
		{"user junk\r[    3.100000] kernel BUG at mm/slub.c:450!", Bug},

		// Every kind.
		{"Oops: Oops: 0002 [#1] PREEMPT SMP NOPTI", Oops},
		{"Oops: general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN NOPTI", Oops},
		{"Oops: invalid opcode: 0000 [#1] PREEMPT SMP", Oops},
		{"Oops: divide error: 0000 [#1] PREEMPT SMP", Oops},
		{"general protection fault: 0000 [#1] SMP", Oops},
		{"invalid opcode: 0000 [#1] PREEMPT SMP", Oops},
		{"divide error: 0000 [#1] SMP", Oops},
		{"BUG: unable to handle page fault for address: ffffc90000a3f000", Oops},
		{"BUG: kernel NULL pointer dereference, address: 00000004", Oops},
		{"BUG: unable to handle kernel paging request at ffffffffc0201000", Oops},
		{"BUG: TASK stack guard page was hit at ffffc90000167ff8 (stack is ffffc90000168000..ffffc9000016c000)", Oops},
		{"kernel BUG at mm/highmem.c:321!", Bug},
		{"Kernel BUG at kunmap_high+0x9a/0xb0 [verbose debug info unavailable]", Bug},
		{"BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585", Bug},
		{"BUG: scheduling while atomic: swapper/0/0/0x00000002", Bug},
		{"BUG: using smp_processor_id() in preemptible [00000000] code: modprobe/93", Bug},
		{"BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!", Bug},
		{"BUG kmalloc-64 (Tainted: G    B             ): Object already free", Bug},
		{"WARNING: CPU: 0 PID: 1 at mm/highmem.c:623 kunmap_local_indexed+0x4f/0x130", Warning},
		{"WARNING: CPU: 1 PID: 0 at kernel/sched/core.c:123 foo+0x1/0x2 [mymod]", Warning},
		{"WARNING: possible circular locking dependency detected", Lockdep},
		{"WARNING: possible recursive locking detected", Lockdep},
		{"WARNING: inconsistent lock state", Lockdep},
		{"WARNING: possible irq lock inversion dependency detected", Lockdep},
		{"INFO: possible irq lock inversion dependency detected", Lockdep},
		{"WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected", Lockdep},
		{"WARNING: bad unlock balance detected!", Lockdep},
		{"WARNING: held lock freed!", Lockdep},
		{"BUG: held lock freed!", Lockdep},
		{"WARNING: kworker/0:1/23 still has locks held!", Lockdep},
		{"WARNING: suspicious RCU usage", Lockdep},
		{"WARNING: lock held when returning to user space!", Lockdep},
		{"BUG: MAX_LOCKDEP_KEYS too low!", Lockdep},
		{"INFO: trying to register non-static key.", Lockdep},
		{"[ BUG: Invalid wait context ]", Lockdep},
		{"BUG: KASAN: slab-out-of-bounds in foo+0x1/0x2", KASAN},
		{"BUG: KASAN: invalid-access", KASAN},
		{"BUG: KFENCE: use-after-free read in test_use_after_free_read+0xb3/0x143", KFENCE},
		{"UBSAN: shift-out-of-bounds in lib/khtest.c:42:13", UBSAN},
		{"UBSAN: array-index-out-of-bounds in drivers/foo/bar.c:1234:5", UBSAN},
		{"UBSAN: array index out of bounds at khtest_index+0x2c/0x40 [khtest]", UBSAN},
		{"INFO: task kworker/u4:1:45 blocked for more than 122 seconds.", HungTask},
		{"rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", RCUStall},
		{"rcu: INFO: rcu_sched self-detected stall on CPU", RCUStall},
		{"rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-.... } 21004 jiffies s: 1365 root: 0x2/.", RCUStall},
		{"INFO: rcu_sched detected stalls on CPUs/tasks:", RCUStall},
		{"watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]", SoftLockup},
		{"NMI watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [a.out:99]", SoftLockup},
		{"watchdog: Watchdog detected hard LOCKUP on cpu 1", HardLockup},
		{"NMI watchdog: Watchdog detected hard LOCKUP on cpu 0", HardLockup},

		// Not splats.
		{"", ""},
		{"[    0.000000] ", ""},
		{"[    0.000000] Linux version 6.12.117 (kharness@build) (gcc 14.2.0) #1 SMP", ""},
		{"Booting the kernel (entry_offset: 0x0000000000000000).", ""},
		{"[    0.098630] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!", ""},
		{"[    0.098630] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!", ""},
		{"WARNING: kharness-agent: debugfs not mounted", ""},
		{"WARNING: at fake.c:1", ""},
		{"  WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 bar+0x1/0x2", ""},
		{"[    0.5] debug_vm_pgtable: [debug_vm_pgtable         ]: Validating architecture page table helpers", ""},
		{"[    0.3] NMI watchdog: Perf NMI watchdog permanently disabled", ""},
		{"[    0.3] NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.", ""},
		{"[    0.1] x86/bugs: return thunk changed", ""},
		{"[    1.1] Warning: unable to open an initial console.", ""},
		{"[    0.1] ... MAX_LOCKDEP_KEYS:        8192", ""},
		{"[   25.3] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---", ""},
		{"[   25.3] ---[ end trace 0000000000000000 ]---", ""},
		{"[   25.3] ------------[ cut here ]------------", ""},
		{"[   63.5] rcu: INFO: Stall ended before state dump start", ""},
		{"[   63.5] rcu: \tUnless rcu_preempt kthread gets sufficient CPU time, OOM is now expected behavior.", ""},
		{"[   63.5] INFO: lockdep is turned off.", ""},
		{"[   14.9] KASAN: null-ptr-deref in range [0x0000000000000008-0x000000000000000f]", ""},
		{"[   14.9] sysrq: Trigger a crash", ""},
		{"[   14.9] Oops: this is not a die() line", ""},
		{"[   48.2] CPU#0 Utilization every 4s during lockup:", ""},
	}
	for _, tc := range tests {
		k, ok := Classify(tc.line)
		if ok != (tc.kind != "") || k != tc.kind {
			t.Errorf("Classify(%q) = %q, %v; want %q", tc.line, k, ok, tc.kind)
		}
	}
}

// parseLines joins lines into a log with console timestamps.
func parseLines(lines ...string) []Report {
	var b strings.Builder
	for i, l := range lines {
		fmt.Fprintf(&b, "[%5d.%06d] %s\n", 10+i/1000, i%1000, l)
	}
	return Parse([]byte(b.String()))
}

func TestTitles(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []want
	}{
		{"WARN with message", []string{
			"Run /init as init process",
			cutHere,
			"khtest: refcount is 0 on put",
			"WARNING: CPU: 0 PID: 1 at lib/khtest.c:88 khtest_put+0x3c/0x50",
			"Modules linked in:",
			"RIP: 0010:khtest_put+0x3c/0x50",
			"Call Trace:", " <TASK>", " ? __warn+0x84/0x130", " khtest_run+0x11/0x20", " </TASK>",
			"---[ end trace 0000000000000000 ]---",
			"Run /sbin/init as init process",
		}, []want{{Warning, "WARNING in khtest_put", 4, false, cutHere, "---[ end trace"}}},
		{"WARNING without a symbol falls back to RIP", []string{
			cutHere,
			"WARNING: CPU: 1 PID: 7 at 0xffffffffc0001234",
			"RIP: 0010:khtest_timer+0x9/0x20 [khtest]",
			"---[ end trace 0000000000000000 ]---",
		}, []want{{Warning, "WARNING in khtest_timer", 2, false, cutHere, "---[ end trace"}}},
		{"kernel BUG with its Oops, then panic", []string{
			cutHere,
			"kernel BUG at mm/highmem.c:321!",
			"Oops: invalid opcode: 0000 [#1] PREEMPT SMP",
			"CPU: 0 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.117 #1",
			"EIP: kunmap_high+0x9a/0xb0",
			"Call Trace:", " kunmap+0x2c/0x40", " khtest_run+0x11/0x20",
			"---[ end trace 0000000000000000 ]---",
			"EIP: kunmap_high+0x9a/0xb0",
			"Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
			"---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b ]---",
		}, []want{
			{Bug, "kernel BUG in kunmap_high", 2, true, cutHere, "---[ end trace"},
			{Panic, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b", 11, true, "Kernel panic", "---[ end Kernel panic"},
		}},
		{"general protection fault under KASAN", []string{
			"Oops: general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN NOPTI",
			"KASAN: null-ptr-deref in range [0x0000000000000008-0x000000000000000f]",
			"CPU: 1 UID: 0 PID: 150 Comm: insmod Not tainted 6.12.117 #1",
			"RIP: 0010:khtest_list_walk.isra.0+0x2b/0x90 [khtest]",
			"---[ end trace 0000000000000000 ]---",
		}, []want{{Oops, "general protection fault in khtest_list_walk", 1, true, "Oops: general protection fault", "---[ end trace"}}},
		{"UBSAN takes its function from the trace", []string{
			cutHere,
			"UBSAN: shift-out-of-bounds in lib/khtest.c:42:13",
			"shift exponent 64 is too large for 64-bit type 'long unsigned int'",
			"CPU: 0 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.117 #1",
			"Call Trace:", " <TASK>", " dump_stack_lvl+0x5d/0x80", " __ubsan_handle_shift_out_of_bounds+0x10c/0x200",
			" khtest_shift+0x1e/0x30", " </TASK>",
			"---[ end trace ]---",
		}, []want{{UBSAN, "UBSAN: shift-out-of-bounds in khtest_shift", 2, false, cutHere, "---[ end trace ]---"}}},
		{"UBSAN trap takes in its Oops", []string{
			"UBSAN: array index out of bounds at khtest_index+0x2c/0x40 [khtest]",
			"Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
			"RIP: 0010:khtest_index+0x2c/0x40 [khtest]",
			"---[ end trace 0000000000000000 ]---",
		}, []want{{UBSAN, "UBSAN: array index out of bounds in khtest_index", 1, true, "UBSAN: array index", "---[ end trace"}}},
		{"KFENCE", []string{
			"==================================================================",
			"BUG: KFENCE: use-after-free read in test_use_after_free_read+0xb3/0x143",
			"",
			"Use-after-free read at 0x000000004fbd7ec1 (in kfence-#79):",
			" test_use_after_free_read+0xb3/0x143",
			"==================================================================",
			"khtest: next",
		}, []want{{KFENCE, "KFENCE: use-after-free read in test_use_after_free_read", 2, false, "=====", "====="}}},
		{"hard lockup", []string{
			"watchdog: Watchdog detected hard LOCKUP on cpu 1",
			"Modules linked in: khtest_spin(O)",
			"CPU: 1 UID: 0 PID: 141 Comm: khtest_spin Tainted: G           O       6.12.117 #1",
			"RIP: 0010:khtest_irqoff_spin+0x12/0x20 [khtest_spin]",
			"Call Trace:", " <NMI>", " ? watchdog_hardlockup_check+0x1a4/0x1c0", " </NMI>", " <TASK>",
			" kthread+0xe1/0x110", " </TASK>",
			"Kernel panic - not syncing: Hard LOCKUP",
		}, []want{
			{HardLockup, "Watchdog detected hard LOCKUP in khtest_irqoff_spin", 1, false, "Watchdog detected hard LOCKUP on cpu 1", "</TASK>"},
			{Panic, "Kernel panic - not syncing: Hard LOCKUP", 12, true, "Kernel panic", "Hard LOCKUP"},
		}},
		{"generic BUGs drop volatile details", []string{
			"BUG: using smp_processor_id() in preemptible [00000000] code: modprobe/93",
			"caller is debug_smp_processor_id+0x17/0x20",
			"CPU: 0 UID: 0 PID: 93 Comm: modprobe Not tainted 6.12.117 #1",
			"Call Trace:", " <TASK>", " dump_stack_lvl+0x5d/0x80", " check_preemption_disabled+0xd6/0xe0",
			" khtest_percpu_poke+0x11/0x40 [khtest]", " </TASK>",
			"BUG: scheduling while atomic: swapper/0/0/0x00000002",
			"Modules linked in:",
			"Preemption disabled at:",
			"[<ffffffff8112a3b0>] khtest_atomic_sleep+0x10/0x40",
			"CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Not tainted 6.12.117 #1",
			"Call Trace:", " <TASK>", " dump_stack_lvl+0x5d/0x80", " __schedule_bug+0x5a/0x70",
			" __schedule+0x9f1/0xbd0", " schedule+0x27/0xf0", " msleep+0x2d/0x40", " khtest_atomic_sleep+0x1c/0x40",
			" </TASK>",
			"khtest: done",
			"BUG: spinlock bad magic on CPU#1, khtest/99",
			" lock: 0xffff888004a3c0d8, .magic: 00000000, .owner: <none>/-1, .owner_cpu: 0",
			"CPU: 1 UID: 0 PID: 99 Comm: khtest Not tainted 6.12.117 #1",
			"Call Trace:", " <TASK>", " dump_stack_lvl+0x5d/0x80", " do_raw_spin_lock+0x8f/0xb0",
			" _raw_spin_lock+0x2c/0x40", " khtest_badlock+0x12/0x30", " </TASK>",
		}, []want{
			{Bug, "BUG: using smp_processor_id() in preemptible code in khtest_percpu_poke", 1, false, "BUG: using", "</TASK>"},
			{Bug, "BUG: scheduling while atomic in khtest_atomic_sleep", 10, false, "BUG: scheduling", "</TASK>"},
			{Bug, "BUG: spinlock bad magic on CPU in khtest_badlock", 25, false, "BUG: spinlock", "</TASK>"},
		}},
		{"questionable frames name the function only without reliable ones", []string{
			"INFO: task khtest:90 blocked for more than 10 seconds.",
			"task:khtest state:D stack:0 pid:90 tgid:90 ppid:1 flags:0x00004000",
			"Call Trace:", " <TASK>", " ? __schedule+0x1f0/0x5a0", " ? khtest_guess+0x10/0x20", " ? khtest_later+0x1/0x2", " </TASK>",
			"khtest: next",
			"INFO: task khtest:91 blocked for more than 10 seconds.",
			"Call Trace:", " <TASK>", " ? khtest_guess+0x10/0x20", " khtest_wait+0x15/0x40", " ? khtest_later+0x1/0x2", " </TASK>",
			"khtest: next",
			cutHere,
			"refcount_t: underflow; use-after-free.",
			"WARNING: CPU: 1 PID: 92 at lib/refcount.c:28 refcount_warn_saturate+0x4a/0x110",
			"RIP: 0010:refcount_warn_saturate+0x4a/0x110",
			"Call Trace:", " <TASK>", " ? __warn+0x81/0x120", " ? refcount_warn_saturate+0x4a/0x110",
			" ? khtest_put+0x22/0x30", " </TASK>",
			"---[ end trace 0000000000000000 ]---",
		}, []want{
			{HungTask, "INFO: task hung in khtest_guess", 1, false, "INFO: task", "</TASK>"},
			{HungTask, "INFO: task hung in khtest_wait", 10, false, "INFO: task", "</TASK>"},
			{Warning, "WARNING: refcount bug in khtest_put", 20, false, cutHere, "---[ end trace"},
		}},
		{"lockdep RCU usage names its place", []string{
			"",
			"=============================",
			"WARNING: suspicious RCU usage",
			"6.12.117 #1 Not tainted",
			"-----------------------------",
			"lib/khtest.c:51 suspicious rcu_dereference_check() usage!",
			"",
			"other info that might help us debug this:",
			"",
			"stack backtrace:",
			"CPU: 0 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.117 #1",
			"Call Trace:", " <TASK>", " dump_stack_lvl+0x5d/0x80", " lockdep_rcu_suspicious+0x155/0x190",
			" khtest_rcu+0x5e/0x70", " </TASK>",
			"khtest: next",
		}, []want{{Lockdep, "WARNING: suspicious RCU usage at lib/khtest.c:51", 3, false, "=============================", "</TASK>"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := parseLines(tc.lines...)
			if len(rs) != len(tc.want) {
				t.Fatalf("got %d reports, want %d:\n%s", len(rs), len(tc.want), describe(rs))
			}
			for i, w := range tc.want {
				checkReport(t, rs[i], w)
			}
		})
	}
}

func TestMost(t *testing.T) {
	warn := []string{
		cutHere,
		"WARNING: CPU: 0 PID: 1 at lib/khtest.c:88 khtest_put+0x3c/0x50",
		"Call Trace:", " khtest_run+0x11/0x20",
	}
	filler := func(n int) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("khtest: step %d ok", i))
		}
		return s
	}
	cat := func(parts ...[]string) []string {
		var s []string
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	tests := []struct {
		name  string
		lines []string
		kind  Kind
		title string
		fatal bool
	}{
		{"panic_on_warn blames the WARNING", cat(warn,
			[]string{"Kernel panic - not syncing: kernel: panic_on_warn set ..."}),
			Warning, "WARNING in khtest_put", true},
		{"sysrq crash right after a WARNING is its own cause", cat(warn,
			[]string{"---[ end trace 0000000000000000 ]---", "sysrq: Trigger a crash", "Kernel panic - not syncing: sysrq triggered crash"}),
			Panic, "Kernel panic - not syncing: sysrq triggered crash", true},
		{"a panic long after a WARNING is not its fallout", cat(warn,
			[]string{"---[ end trace 0000000000000000 ]---"}, filler(40),
			[]string{"Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"}),
			Panic, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", true},
		{"soft lockup then softlockup_panic", []string{
			"watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [khtest_spin:141]",
			"RIP: 0010:khtest_spin_fn+0x18/0x30 [khtest_spin]",
			"Call Trace:", " <TASK>", " kthread+0xe1/0x110", " </TASK>",
			"Kernel panic - not syncing: softlockup: hung tasks",
		}, SoftLockup, "BUG: soft lockup in khtest_spin_fn", true},
		{"the first of two Oopses", []string{
			"BUG: kernel NULL pointer dereference, address: 0000000000000000",
			"Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI",
			"RIP: 0010:first_fn+0x1/0x2",
			"---[ end trace 0000000000000000 ]---",
			"Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#2] PREEMPT SMP NOPTI",
			"RIP: 0010:second_fn+0x1/0x2",
			"---[ end trace 0000000000000000 ]---",
			"Kernel panic - not syncing: Fatal exception",
		}, Oops, "BUG: kernel NULL pointer dereference in first_fn", true},
		{"without a fatal report, severity decides", cat(warn, []string{"---[ end trace 0000000000000000 ]---",
			"==================================================================",
			"BUG: KASAN: slab-out-of-bounds in khtest_oob+0x4e/0x70",
			"Write of size 1 at addr ffff888005a1e220 by task insmod/152",
			"==================================================================",
			"INFO: task khtest_waiter:131 blocked for more than 122 seconds.",
			"Call Trace:", " khtest_waiter_fn+0x25/0x60", " </TASK>",
		}), KASAN, "KASAN: slab-out-of-bounds Write in khtest_oob", false},
		{"a reboot alone", []string{
			"Linux version 6.12.117 (kharness@build) (gcc 14.2.0) #1 SMP",
			"Run /init as init process",
			"Linux version 6.12.117 (kharness@build) (gcc 14.2.0) #1 SMP",
		}, Reboot, "unexpected reboot", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := parseLines(tc.lines...)
			m, ok := Most(rs)
			if !ok || m.Kind != tc.kind || m.Title != tc.title || m.Fatal != tc.fatal {
				t.Errorf("Most = {%s %q fatal %v} %v, want {%s %q fatal %v}\nreports:\n%s",
					m.Kind, m.Title, m.Fatal, ok, tc.kind, tc.title, tc.fatal, describe(rs))
			}
		})
	}
	if _, ok := Most(nil); ok {
		t.Error("Most(nil) reported a report")
	}
}

// TestUserOutput: once the console shows kernel prefixes, unprefixed lines
// are user space. They start nothing and stay out of a splat's Text.
func TestUserOutput(t *testing.T) {
	log := strings.Join([]string{
		"[    1.000000] Run /init as init process",
		"BUG: not the kernel",
		"[    2.000000] ------------[ cut here ]------------",
		"test 3 of 7: ok",
		"[    2.000001] WARNING: CPU: 0 PID: 1 at lib/khtest.c:88 khtest_put+0x3c/0x50",
		"test 4 of 7: ok",
		"[    2.000002] ---[ end trace 0000000000000000 ]---",
	}, "\n")
	rs := Parse([]byte(log))
	if len(rs) != 1 || rs[0].Kind != Warning || rs[0].Line != 5 {
		t.Fatalf("got\n%s", describe(rs))
	}
	if strings.Contains(rs[0].Text, "test ") || strings.Count(rs[0].Text, "\n") != 2 {
		t.Errorf("Text has user output or lacks kernel lines:\n%s", rs[0].Text)
	}

	// Without printk.time every line is taken at its word.
	rs = Parse([]byte("Run /init as init process\nBUG: scheduling while atomic: sh/1/0x00000002\nCall Trace:\n khtest_fn+0x1/0x2\n"))
	if len(rs) != 1 || rs[0].Title != "BUG: scheduling while atomic in khtest_fn" {
		t.Errorf("unprefixed log: got\n%s", describe(rs))
	}
}

// TestBounded: a splat never grows past maxLines, and one without a stack
// dump does not take the boot log that follows.
func TestBounded(t *testing.T) {
	lines := []string{"INFO: task khtest:1 blocked for more than 122 seconds.", "Call Trace:"}
	for i := range 400 {
		lines = append(lines, fmt.Sprintf(" khtest_fn%d+0x1/0x2", i))
	}
	rs := parseLines(lines...)
	if len(rs) != 1 || strings.Count(rs[0].Text, "\n")+1 != maxLines {
		t.Errorf("long trace: got %d reports, %d lines", len(rs), strings.Count(rs[0].Text, "\n")+1)
	}

	lines = []string{"BUG: Bad rss-counter state mm:00000000c0ffee00 type:MM_ANONPAGES val:1"}
	for i := range 100 {
		lines = append(lines, fmt.Sprintf("khtest: step %d ok", i))
	}
	rs = parseLines(lines...)
	if len(rs) != 1 || rs[0].Title != "BUG: Bad rss-counter state" {
		t.Fatalf("got\n%s", describe(rs))
	}
	if n := strings.Count(rs[0].Text, "\n") + 1; n > bodyLimit+1 {
		t.Errorf("a BUG without stack took %d lines", n)
	}
}

// FuzzParse checks the invariants callers rely on for any input.
func FuzzParse(f *testing.F) {
	for _, path := range corpusFiles(f) {
		if c, err := readCorpusFile(path); err == nil {
			f.Add(c.body)
		}
	}
	f.Add([]byte("[ 1.0] Oops: Oops: 0000 [#1]\n[ 1.0] ------------[ cut here ]------------\n\r\x00\x1b["))
	f.Fuzz(func(t *testing.T, log []byte) {
		rs := Parse(log)
		n := strings.Count(strings.TrimSuffix(string(log), "\n"), "\n") + 1
		last := 0
		for _, r := range rs {
			if severity(r.Kind) == 0 {
				t.Errorf("unknown kind %q", r.Kind)
			}
			if r.Line <= last || r.Line > n {
				t.Errorf("line %d out of order or range (previous %d, log has %d)", r.Line, last, n)
			}
			last = r.Line
			if c := strings.Count(r.Text, "\n") + 1; c > maxLines {
				t.Errorf("Text has %d lines", c)
			}
			if strings.ContainsAny(r.Title, "\n\r") || r.Title == "" {
				t.Errorf("bad title %q", r.Title)
			}
		}
		if len(rs) > 0 {
			if _, ok := Most(rs); !ok {
				t.Error("Most found nothing")
			}
		}
	})
}

// TestRules checks the table's invariants: each kind has one severity,
// every kind but Reboot (found only by a Parser) can be classified, and
// only Reboot's rule needs a second sighting.
func TestRules(t *testing.T) {
	sev := map[Kind]int{}
	for i, r := range rules {
		if s, ok := sev[r.kind]; ok && s != r.severity {
			t.Errorf("rule %d (%s): severity %d, another %s rule says %d", i, r.re, r.severity, r.kind, s)
		}
		sev[r.kind] = r.severity
		if r.severity <= 0 {
			t.Errorf("rule %d (%s): severity %d", i, r.re, r.severity)
		}
		if (r.title == nil) == (r.fixed == "") {
			t.Errorf("rule %d (%s): wants exactly one of title and fixed", i, r.re)
		}
		if r.second != (r.kind == Reboot) {
			t.Errorf("rule %d (%s): second = %v", i, r.re, r.second)
		}
		if r.isOops && r.wantsOops {
			t.Errorf("rule %d (%s): a die() line does not want another", i, r.re)
		}
	}
	for _, k := range []Kind{Panic, Oops, Bug, Warning, Lockdep, KASAN, KFENCE, UBSAN, HungTask, RCUStall, SoftLockup, HardLockup, Reboot} {
		if sev[k] == 0 {
			t.Errorf("kind %s has no rule", k)
		}
	}
	if k, ok := Classify("Linux version 6.12.118 (kharness@kharness) (gcc 12.2.0) #1 SMP"); ok {
		t.Errorf("Classify said %s for a banner", k)
	}
}

// TestKmsgEscapes: /dev/kmsg writes a tab as \x09 and a backslash as
// \x5c; the line reads as the console printed it.
func TestKmsgEscapes(t *testing.T) {
	for in, want := range map[string]string{
		`rcu: \x091-...!: (0 ticks this GP)`: "rcu: \t1-...!: (0 ticks this GP)",
		`path C:\x5cx and \x1b[0m colour`:    `path C:\x and  colour`,
		`caf\xc3\xa9 \x7f`:                   "café ",
		`plain \xZZ and \x41 stay`:           `plain \xZZ and \x41 stay`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
