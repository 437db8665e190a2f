// Package splat finds kernel crash reports ("splats") in console or
// /dev/kmsg text and gives each a kind and a title that stays the same from
// run to run. The harness uses it to turn a guest log into a verdict and to
// tell a new crash from one it has already seen; the design follows
// syzkaller's pkg/report, scaled down to the x86 formats of Linux 6.12.
//
// Decisions callers must know:
//
//   - A bare "WARNING: ..." is not a splat. Only the __warn() format
//     "WARNING: CPU: N PID: N at ..." and the lockdep headers count, so
//     boot-time advisories such as "Spectre V2 : WARNING: Unprivileged eBPF
//     is enabled ..." and user programs printing "WARNING:" are ignored.
//   - Once a log has shown printk prefixes ("[   1.234567] ", "[    T1] ",
//     "6,12,345,-;"), lines without one are taken for user-space output
//     sharing the console: they cannot start a splat and are left out of
//     Text. Logs without any prefix (printk.time=0) are read in full.
//   - A prefix must start the line: a kernel line glued to the end of a
//     user line is not recognised.
//   - Classify is stateless and never says Reboot; only a Parser, which has
//     seen the first "Linux version" banner, reports a second one.
//   - An "Oops:" line that belongs to a "BUG: kernel NULL pointer
//     dereference" or "kernel BUG at" header is part of that report, while a
//     "Kernel panic - not syncing" is always a report of its own (see Most).
//   - Text keeps each line as logged, timestamps included, without NULs,
//     CRs and terminal escape sequences. Trailing blank lines are dropped.
//   - Title may be completed after the header: the function comes from the
//     RIP:/EIP: line, the call trace or lockdep's ", at:" line, and a KASAN
//     title gains Read/Write from the line after the header.
package splat

import (
	"strings"
)

// Kind is the class of a splat.
type Kind string

// The kinds of splat. The comment gives the header that starts each.
const (
	Panic      Kind = "panic"       // "Kernel panic - not syncing: ..."
	Oops       Kind = "oops"        // "Oops: ...", "BUG: unable to handle page fault/kernel NULL pointer dereference", "general protection fault", "invalid opcode", "divide error"
	Bug        Kind = "bug"         // "kernel BUG at file:line!", "BUG: sleeping function called from invalid context", "BUG: scheduling while atomic", other "BUG: ..."
	Warning    Kind = "warning"     // "WARNING: CPU: 0 PID: 1 at mm/highmem.c:623 func+0x..."
	Lockdep    Kind = "lockdep"     // "WARNING: possible circular locking dependency detected", "WARNING: inconsistent lock state", "BUG: held lock freed", ...
	KASAN      Kind = "kasan"       // "BUG: KASAN: ..."
	KFENCE     Kind = "kfence"      // "BUG: KFENCE: ..."
	UBSAN      Kind = "ubsan"       // "UBSAN: ..."
	HungTask   Kind = "hung-task"   // "INFO: task X:123 blocked for more than N seconds."
	RCUStall   Kind = "rcu-stall"   // "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "... self-detected stall on CPU"
	SoftLockup Kind = "soft-lockup" // "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:1]"
	HardLockup Kind = "hard-lockup" // "watchdog: Watchdog detected hard LOCKUP on cpu 1"
	Reboot     Kind = "reboot"      // a second "Linux version ..." banner in one log; callers treat it as a crash
)

// Report is one splat found in a log.
type Report struct {
	Kind  Kind   `json:"kind"`
	Title string `json:"title"` // one line, free of timestamps, addresses, PIDs, CPU numbers and offsets
	Text  string `json:"text"`  // the splat as logged, from its opener ("cut here", "=====") to its end marker
	Line  int    `json:"line"`  // 1-based line of the header in the log
	Fatal bool   `json:"fatal"` // the kernel cannot go on: panic, oops, kernel BUG at, reboot
}

// severity ranks kinds for Most when no report is fatal.
func severity(k Kind) int {
	switch k {
	case Panic:
		return 100
	case Oops:
		return 90
	case Bug:
		return 80
	case KASAN:
		return 75
	case KFENCE:
		return 70
	case HardLockup:
		return 60
	case SoftLockup:
		return 55
	case RCUStall:
		return 50
	case HungTask:
		return 45
	case Lockdep:
		return 40
	case UBSAN:
		return 35
	case Warning:
		return 30
	case Reboot:
		return 20
	}
	return 0
}

// Most returns the report that best names what went wrong in rs, which
// must be in log order (as Parse and Reports give them).
//
// When some report is fatal, the earliest fatal one wins, because later
// ones are usually fallout of the first. A Panic or Reboot that merely
// follows another report (its message is not a stand-alone cause such as
// "sysrq triggered crash", and the other report ended at most 30 lines
// before it) hands the verdict to that report: "Fatal exception" after an
// Oops, "softlockup: hung tasks" after a soft lockup, "panic_on_warn set"
// after a WARNING. The returned copy then has Fatal set, since its crash
// was fatal. With no fatal report, the most severe kind wins and the
// earliest breaks ties.
func Most(rs []Report) (Report, bool) {
	if len(rs) == 0 {
		return Report{}, false
	}
	for i, r := range rs {
		if !r.Fatal {
			continue
		}
		if (r.Kind == Panic || r.Kind == Reboot) && i > 0 && followsUp(rs[i-1], r) {
			c := rs[i-1]
			c.Fatal = true
			return c, true
		}
		return r, true
	}
	best := 0
	for i, r := range rs {
		if severity(r.Kind) > severity(rs[best].Kind) {
			best = i
		}
	}
	return rs[best], true
}

// standalonePanics are panic messages that are their own cause, so a
// nearby earlier report must not take the blame.
var standalonePanics = []string{
	"sysrq triggered crash",
	"VFS: Unable to mount root",
	"No working init found",
	"Requested init",
	"Out of memory",
	"System is deadlocked on memory",
}

// followUpGap is how many log lines may separate the end of a report from
// the panic it caused; an Oops's register summary takes about fifteen.
const followUpGap = 30

func followsUp(prev, r Report) bool {
	if prev.Kind == Panic || prev.Kind == Reboot {
		return false
	}
	if r.Kind == Panic {
		for _, s := range standalonePanics {
			if strings.Contains(r.Title, s) {
				return false
			}
		}
	}
	return r.Line-endLine(prev) <= followUpGap
}

// endLine estimates the log line where r ends from its Text: lines before
// the header (openers) are not counted, lines left out of Text make the
// estimate early, which only makes Most more cautious.
func endLine(r Report) int {
	lines := strings.Split(r.Text, "\n")
	hdr := 0
	for i, l := range lines {
		if k, ok := Classify(l); ok && k == r.Kind {
			hdr = i
			break
		}
	}
	return r.Line + len(lines) - 1 - hdr
}

// Classify says whether one line is a splat header and of which kind. The
// line may carry console or /dev/kmsg prefixes. It never returns Reboot
// (that needs to know the log's first banner; see Parser).
func Classify(line string) (Kind, bool) {
	content, _ := split(clean(line))
	h, ok := classify(content)
	if !ok {
		return "", false
	}
	return h.kind, true
}

// Parse is the batch form of Parser over a whole log.
func Parse(log []byte) []Report {
	p := NewParser()
	if s := strings.TrimSuffix(string(log), "\n"); s != "" {
		for _, l := range strings.Split(s, "\n") {
			p.Feed(l)
		}
	}
	return p.Reports()
}
