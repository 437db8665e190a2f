package splat

import (
	"regexp"
	"strings"
)

// A rule is one class of splat: the header line that starts it, the title
// and kind of the report, how bad it is, and where the report's text
// starts and ends. Adding a class is one entry in rules (and a log in
// testdata; see HACKING.md, "Add a splat class").
type rule struct {
	kind Kind
	// severity ranks the kind for Most when no report is fatal. Every
	// rule of a kind gives the same value (TestRules checks).
	severity int
	// fatal: the kernel cannot go on once this header is printed.
	fatal bool
	// re matches the header, on the line without its printk prefix.
	re *regexp.Regexp
	// title names the report from re's submatches: base is the title
	// before " in F", fn is F when the header names it, fallback the
	// title when F is never found ("" means base). nil means base = fixed.
	title func(m []string) (base, fn, fallback string)
	fixed string
	// fn says where F comes from when the header does not name it.
	fn fnSource
	// skip lists functions F looks past, besides the plumbing every rule
	// skips (scheduler, locks, report machinery, entry code): the checker
	// that reported the bug rather than its caller. A trailing "*" makes
	// a name a prefix.
	skip []string
	// open is what precedes the header and belongs to the report.
	open opener
	// end is how the report ends.
	end ending
	// wantsOops: the die() "Oops:" line printed soon after this header
	// is part of this report; isOops: the header is such a line.
	wantsOops, isOops bool
	// kasanRW: the line after the header says Read or Write, which the
	// title gains.
	kasanRW bool
	// followUp: a report of this rule printed right after another one is
	// that one's consequence ("Fatal exception" after an Oops), so Most
	// names the earlier report.
	followUp bool
	// second: the header is a splat only the second time a log shows it
	// (a reboot's banner). Classify, which is stateless, never matches it.
	second bool
}

// fnSource says where the function for a title's " in F" comes from when
// the header does not name it.
type fnSource int

const (
	fnNone       fnSource = iota
	fnRIP                 // the first "RIP: 0010:F+0x.." / "EIP: F+0x.." line; the trace's first frame if the RIP is a bare address
	fnTrace               // the first frame of the Call Trace that is not skipped
	fnRIPOrTrace          // whichever of the two comes first
	fnAt                  // lockdep's ", at: F+0x.." or "[<addr>] F+0x.."
	fnRCUAt               // lockdep-RCU's "kernel/x.c:12 suspicious ... usage!" (a place, not a function)
)

// opener is the line the kernel prints just before some headers, which
// belongs in the report's Text.
type opener int

const (
	openNone  opener = iota
	openCut          // "------------[ cut here ]------------", possibly with WARN() text after it
	openRule         // "=====...", right before the header
	openFault        // what the page-fault handler says first: "kernel tried to execute NX-protected page", "unable to execute userspace code (SMEP?)"
)

// ending says how a report's text ends.
type ending int

const (
	// endFlow: when lines stop looking like crash-dump output after the
	// call trace (registers, "CPU: N UID:", lock lists, "rcu: ..."), or
	// after bodyLimit lines without a trace (see Parser.flow).
	endFlow ending = iota
	// endFlowLocks: as endFlow, and at the "=====" that closes the
	// "Showing all locks held" list a hung-task report prints.
	endFlowLocks
	// endMarker: at "---[ end trace ...]---" or "---[ end Kernel panic
	// ...]---"; everything before it belongs to the report.
	endMarker
	// endRule: at the "=====" after the header (KASAN, KFENCE), or an
	// end marker.
	endRule
)

// rules are tried in order on every line; the first match wins, so a
// specific form ("BUG: KASAN: ...", a WARNING in lib/refcount.c) comes
// before the generic one that would also match it ("BUG: ...",
// "WARNING: ...").
var rules = []*rule{
	// Panics. A panic that names its own cause is not a consequence.
	{kind: Panic, severity: 100, fatal: true, end: endMarker,
		re:    regexp.MustCompile(`^Kernel panic - not syncing: ?((?:sysrq triggered crash|VFS: Unable to mount root|No working init found|Requested init|Out of memory|System is deadlocked on memory).*)$`),
		title: panicTitle},
	{kind: Panic, severity: 100, fatal: true, end: endMarker, followUp: true,
		re:    regexp.MustCompile(`^Kernel panic - not syncing: ?(.*)$`),
		title: panicTitle},

	// Memory-safety detectors.
	{kind: KASAN, severity: 75, open: openRule, end: endRule, kasanRW: true,
		re:    regexp.MustCompile(`^BUG: KASAN: ([\w-]+)(?: in (\S+))?`),
		title: func(m []string) (string, string, string) { return "KASAN: " + m[1], symbol(m[2]), "" }},
	{kind: KFENCE, severity: 70, open: openRule, end: endRule,
		re:    regexp.MustCompile(`^BUG: KFENCE: (.+?)(?: in (\S+))?\s*$`),
		title: func(m []string) (string, string, string) { return "KFENCE: " + m[1], symbol(m[2]), "" }},
	// CONFIG_UBSAN_TRAP: the check was a ud1 and die() follows, so the
	// report is fatal from its header on.
	{kind: UBSAN, severity: 35, fatal: true, wantsOops: true, end: endMarker,
		re:    regexp.MustCompile(`^UBSAN: (.+?) at (\S+\+0x[0-9a-f]+/0x[0-9a-f]+)`),
		title: func(m []string) (string, string, string) { return "UBSAN: " + m[1], symbol(m[2]), "" }},
	{kind: UBSAN, severity: 35, open: openCut, end: endMarker, fn: fnTrace,
		re: regexp.MustCompile(`^UBSAN: (.+?) in (\S+?)(?::\d+)*\s*$`),
		title: func(m []string) (string, string, string) {
			return "UBSAN: " + m[1], "", "UBSAN: " + m[1] + " in " + srcPath(m[2])
		}},

	// Lockdep. Its reports are framed by "=====" and name the place in
	// their lock listings.
	{kind: Lockdep, severity: 40, open: openRule, fn: fnRCUAt,
		re:    regexp.MustCompile(`^(WARNING|INFO|BUG): (suspicious RCU usage)\.?`),
		title: func(m []string) (string, string, string) { return m[1] + ": " + m[2], "", "" }},
	{kind: Lockdep, severity: 40, open: openRule, fn: fnAt,
		re:    regexp.MustCompile(`^(WARNING|INFO|BUG): (possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state|possible irq lock inversion dependency detected|\S+-safe -> \S+-unsafe lock order detected|chain_key collision|Nested lock was not taken|bad unlock balance detected!|bad contention detected!|held lock freed!?|.+ still has locks held!|lock held when returning to user space!|MAX_\w+ too low!|looking up invalid subclass|key .+ has not been registered!|trying to register non-static key\.?)`),
		title: lockdepTitle},
	{kind: Lockdep, severity: 40, open: openRule, fn: fnAt,
		re:    regexp.MustCompile(`^\[ BUG: (Invalid wait context) \]`),
		title: func(m []string) (string, string, string) { return "BUG: " + m[1], "", "" }},

	// Stalls and lockups.
	{kind: HungTask, severity: 45, fn: fnTrace, end: endFlowLocks, fixed: "INFO: task hung",
		re: regexp.MustCompile(`^INFO: task .+:-?\d+ blocked for more than \d+ seconds\.`)},
	{kind: RCUStall, severity: 50, fn: fnRIPOrTrace, fixed: "INFO: rcu detected stall",
		re: regexp.MustCompile(`^(?:rcu: )?INFO: rcu\w* (?:self-)?detected (?:expedited )?stalls?\b`)},
	{kind: SoftLockup, severity: 55, fn: fnRIPOrTrace, fixed: "BUG: soft lockup",
		re: regexp.MustCompile(`^(?:(?:NMI )?watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!`)},
	{kind: HardLockup, severity: 60, fn: fnRIPOrTrace, fixed: "Watchdog detected hard LOCKUP",
		re: regexp.MustCompile(`^(?:(?:NMI )?watchdog: )?(?:Watchdog detected hard LOCKUP on cpu \d+|BUG: hard LOCKUP)`)},

	// Faults and traps: die() with its "Oops:" line.
	{kind: Oops, severity: 90, fatal: true, wantsOops: true, end: endMarker, fn: fnRIP,
		fixed: "BUG: stack guard page was hit",
		re:    regexp.MustCompile(`^BUG: (?:\S+ )?stack guard page was hit\b`)},
	{kind: Oops, severity: 90, fatal: true, wantsOops: true, open: openFault, end: endMarker, fn: fnRIP,
		re:    regexp.MustCompile(`^BUG: (kernel NULL pointer dereference|unable to handle page fault|unable to handle kernel (?:NULL pointer dereference|paging request))\b`),
		title: func(m []string) (string, string, string) { return "BUG: " + m[1], "", "" }},
	{kind: Oops, severity: 90, fatal: true, isOops: true, end: endMarker, fn: fnRIP,
		re:    regexp.MustCompile(`^Oops: (?:(.+?): )?[0-9a-f]{4} \[#\d+\]`),
		title: oopsTitle},
	{kind: Oops, severity: 90, fatal: true, isOops: true, end: endMarker, fn: fnRIP,
		re:    regexp.MustCompile(`^(general protection fault|invalid opcode|divide error|stack segment|double fault|int3|bounds|overflow|segment not present|invalid TSS|alignment check)(?:,[^:]*)?: [0-9a-f]{4} \[#\d+\]`),
		title: oopsTitle},

	// BUG() and the checks built on it.
	{kind: Bug, severity: 80, fatal: true, wantsOops: true, open: openCut, end: endMarker, fn: fnRIP,
		re: regexp.MustCompile(`^kernel BUG at (\S+?)!?\s*$`),
		title: func(m []string) (string, string, string) {
			return "kernel BUG", "", "kernel BUG at " + srcPath(m[1])
		}},
	{kind: Bug, severity: 80, fatal: true, wantsOops: true, open: openCut, end: endMarker,
		re:    regexp.MustCompile(`^Kernel BUG at (\S+) \[verbose debug info unavailable\]`),
		title: func(m []string) (string, string, string) { return "kernel BUG", symbol(m[1]), "" }},
	// SLUB's consistency checks: "BUG kmalloc-64 (Not tainted): Object already free".
	{kind: Bug, severity: 80, open: openRule,
		re: regexp.MustCompile(`^BUG (\S+) \((?:Not tainted|Tainted: [^)]*)\): (.+)$`),
		title: func(m []string) (string, string, string) {
			return "BUG: " + m[1] + ": " + sanitizeBug(m[2]), "", ""
		}},
	{kind: Bug, severity: 80, fn: fnRIPOrTrace,
		re: regexp.MustCompile(`^BUG: (.+)$`),
		title: func(m []string) (string, string, string) {
			if d := sanitizeBug(m[1]); d != "" {
				return "BUG: " + d, "", ""
			}
			return "BUG", "", ""
		}},

	// WARN() and the checks built on it, most specific first.
	{kind: Warning, severity: 30, open: openCut, end: endMarker, fn: fnTrace,
		fixed: "WARNING: refcount bug", skip: []string{"refcount_*", "__refcount_*"},
		re: regexp.MustCompile(`^WARNING: CPU: \d+ PID: -?\d+ at (?:\.\./)*lib/refcount\.c:\d+ `)},
	{kind: Warning, severity: 30, open: openCut, end: endMarker, fn: fnTrace,
		fixed: "BUG: corrupted list", skip: []string{"__list_*", "list_*"},
		re: regexp.MustCompile(`^WARNING: CPU: \d+ PID: -?\d+ at (?:\.\./)*lib/list_debug\.c:\d+ `)},
	{kind: Warning, severity: 30, open: openCut, end: endMarker, fn: fnRIP,
		re:    regexp.MustCompile(`^WARNING: CPU: \d+ PID: -?\d+ at (.+)$`),
		title: warnTitle},

	// A second "Linux version" banner: the machine rebooted.
	{kind: Reboot, severity: 20, fatal: true, followUp: true, second: true, fixed: "unexpected reboot",
		re: regexp.MustCompile(`^Linux version \d+\.\d+\S* \(`)},
}

func panicTitle(m []string) (string, string, string) {
	return "Kernel panic - not syncing: " + strings.TrimSpace(sanitizePanic(m[1])), "", ""
}

func lockdepTitle(m []string) (string, string, string) {
	d := m[2]
	switch {
	case strings.HasSuffix(d, " still has locks held!"):
		d = "still has locks held!"
	case strings.HasPrefix(d, "key "):
		d = "key has not been registered!"
	}
	return m[1] + ": " + trimPunct(d), "", ""
}

// oopsTitle names a die() line by its description ("general protection
// fault"), or "Oops".
func oopsTitle(m []string) (string, string, string) {
	base, _, _ := strings.Cut(m[1], ",")
	if base = strings.TrimSpace(base); base == "" {
		base = "Oops"
	}
	return base, "", ""
}

var warnAtRe = regexp.MustCompile(`^(?:(\S+:\d+) )?(\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[.*\])?\s*$`)

// warnTitle names a WARNING by the function in its header ("at
// kernel/x.c:12 f+0x1/0x2"), else by its place.
func warnTitle(m []string) (string, string, string) {
	a := warnAtRe.FindStringSubmatch(m[1])
	if a == nil {
		return "WARNING", "", ""
	}
	fallback := ""
	if a[1] != "" {
		fallback = "WARNING at " + srcPath(a[1])
	}
	return "WARNING", symbol(a[2]), fallback
}

// severities maps each kind to its rules' severity.
var severities = func() map[Kind]int {
	m := map[Kind]int{}
	for _, r := range rules {
		m[r.kind] = r.severity
	}
	return m
}()

// skips says whether fn is one of the rule's skipped functions.
func (r *rule) skips(fn string) bool {
	for _, s := range r.skip {
		if p, ok := strings.CutSuffix(s, "*"); ok && strings.HasPrefix(fn, p) || s == fn {
			return true
		}
	}
	return false
}

// srcPath is a source file as the kernel tree names it: a kernel built
// in a separate directory (make O=) logs "../../lib/refcount.c".
func srcPath(p string) string {
	for strings.HasPrefix(p, "../") {
		p = p[3:]
	}
	return p
}
