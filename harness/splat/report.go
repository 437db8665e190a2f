// Package splat finds kernel crash reports ("splats") in console or
// /dev/kmsg text and gives each a kind and a title that stays the same from
// run to run. The harness uses it to turn a guest log into a verdict and to
// tell a new crash from one it has already seen; the design follows
// syzkaller's pkg/report, scaled down to the x86 formats of Linux 6.12.
//
// Each class of splat is one entry of the ordered rule table (rules.go):
// its header, kind, severity, fatality, title and where the title's
// function comes from, and how its text starts and ends. testdata/ is a
// corpus of logs, mostly captured from kharness boots, each carrying what
// the parser must say of it in a header (corpus_test.go).
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
//     CRs and terminal escape sequences, and with /dev/kmsg's escapes
//     ("\x09" for a tab) undone. Trailing blank lines are dropped.
//   - Title may be completed after the header: the function comes from the
//     RIP:/EIP: line, the call trace or lockdep's ", at:" line, and a KASAN
//     title gains Read/Write from the line after the header. A function
//     taken from a questionable frame ("? f+0x1/0x2", all there is without
//     frame pointers or ORC) gives way to the first reliable frame after it.
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

// severity ranks kinds for Most when no report is fatal (see rules).
func severity(k Kind) int { return severities[k] }

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
		// Every report before r is not fatal, so rs[i-1] is no panic.
		if i > 0 && ruleOf(r).followUp && r.Line-endLine(rs[i-1]) <= followUpGap {
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

// followUpGap is how many log lines may separate the end of a report from
// the panic it caused; an Oops's register summary takes about fifteen.
const followUpGap = 30

// ruleOf finds the rule that made r from its header line in Text, so a
// report read back from JSON works too; nil if none does.
func ruleOf(r Report) *rule {
	h, _ := headerOf(r)
	return h.r
}

// headerOf finds r's header line in Text: its header and index.
func headerOf(r Report) (header, int) {
	for i, l := range strings.Split(r.Text, "\n") {
		content, _ := split(clean(l))
		if h, ok := match(content, true); ok && h.r.kind == r.Kind {
			return h, i
		}
	}
	return header{r: &rule{}}, 0
}

// endLine estimates the log line where r ends from its Text: lines before
// the header (openers) are not counted, lines left out of Text make the
// estimate early, which only makes Most more cautious.
func endLine(r Report) int {
	_, hdr := headerOf(r)
	return r.Line + strings.Count(r.Text, "\n") - hdr
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
	return h.r.kind, true
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
