package splat

import (
	"regexp"
	"strings"
)

// fnSource says where the function for a title's " in F" comes from when
// the header does not name it.
type fnSource int

const (
	fnNone       fnSource = iota
	fnRIP                 // the first "RIP: 0010:F+0x.." / "EIP: F+0x.." line
	fnTrace               // the first frame of the Call Trace that is not plumbing
	fnRIPOrTrace          // whichever of the two comes first
	fnAt                  // lockdep's ", at: F+0x.." or "[<addr>] F+0x.."
	fnRCUAt               // lockdep-RCU's "kernel/x.c:12 suspicious ... usage!"
)

// opener is the line the kernel prints just before some headers, which
// belongs in the report's Text.
type opener int

const (
	openNone opener = iota
	openCut         // "------------[ cut here ]------------", possibly with WARN() text after it
	openRule        // "=====...", right before the header
)

// header is what one header line tells about the report it starts.
type header struct {
	kind      Kind
	base      string // title, before " in F"
	fn        string // F when the header itself names it
	fallback  string // title when no F is ever found ("" means base)
	src       fnSource
	fatal     bool
	wantsOops bool   // an "Oops:" line soon after is part of this report
	isOops    bool   // this is such an "Oops:" line
	open      opener // what may precede the header
	marker    bool   // ends with "---[ end ...", not after its call trace
	ruleEnds  bool   // a "=====" line after the header ends it
	kasanRW   bool   // the next line says Read or Write
}

func (h header) title() string {
	if h.fn != "" {
		return h.base + " in " + h.fn
	}
	if h.fallback != "" {
		return h.fallback
	}
	return h.base
}

var (
	panicRe     = regexp.MustCompile(`^Kernel panic - not syncing: ?(.*)$`)
	kasanRe     = regexp.MustCompile(`^BUG: KASAN: ([\w-]+)(?: in (\S+))?`)
	kfenceRe    = regexp.MustCompile(`^BUG: KFENCE: (.+?)(?: in (\S+))?\s*$`)
	ubsanTrapRe = regexp.MustCompile(`^UBSAN: (.+?) at (\S+\+0x[0-9a-f]+/0x[0-9a-f]+)`)
	ubsanRe     = regexp.MustCompile(`^UBSAN: (.+?) in (\S+?)(?::\d+)*\s*$`)
	lockdepRe   = regexp.MustCompile(`^(WARNING|INFO|BUG): (possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state|possible irq lock inversion dependency detected|\S+-safe -> \S+-unsafe lock order detected|chain_key collision|Nested lock was not taken|bad unlock balance detected!|bad contention detected!|held lock freed!?|.+ still has locks held!|lock held when returning to user space!|suspicious RCU usage\.?|MAX_\w+ too low!|looking up invalid subclass|key .+ has not been registered!|trying to register non-static key\.?)`)
	waitCtxRe   = regexp.MustCompile(`^\[ BUG: (Invalid wait context) \]`)
	hungRe      = regexp.MustCompile(`^INFO: task .+:-?\d+ blocked for more than \d+ seconds\.`)
	rcuRe       = regexp.MustCompile(`^(?:rcu: )?INFO: rcu\w* (?:self-)?detected (?:expedited )?stalls?\b`)
	softRe      = regexp.MustCompile(`^(?:(?:NMI )?watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!`)
	hardRe      = regexp.MustCompile(`^(?:(?:NMI )?watchdog: )?(?:Watchdog detected hard LOCKUP on cpu \d+|BUG: hard LOCKUP)`)
	faultRe     = regexp.MustCompile(`^BUG: (kernel NULL pointer dereference|unable to handle page fault|unable to handle kernel (?:NULL pointer dereference|paging request)|(?:\S+ )?stack guard page was hit)\b`)
	oopsRe      = regexp.MustCompile(`^Oops: (?:(.+?): )?[0-9a-f]{4} \[#\d+\]`)
	trapRe      = regexp.MustCompile(`^(general protection fault|invalid opcode|divide error|stack segment|double fault|int3|bounds|overflow|segment not present|invalid TSS|alignment check)(?:,[^:]*)?: [0-9a-f]{4} \[#\d+\]`)
	kbugRe      = regexp.MustCompile(`^kernel BUG at (\S+?)!?\s*$`)
	kbugSymRe   = regexp.MustCompile(`^Kernel BUG at (\S+) \[verbose debug info unavailable\]`)
	slubRe      = regexp.MustCompile(`^BUG (\S+) \((?:Not tainted|Tainted: [^)]*)\): (.+)$`)
	bugRe       = regexp.MustCompile(`^BUG: (.+)$`)
	warnRe      = regexp.MustCompile(`^WARNING: CPU: \d+ PID: -?\d+ at (.+)$`)
	warnAtRe    = regexp.MustCompile(`^(?:(\S+:\d+) )?(\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[.*\])?\s*$`)
	bannerRe    = regexp.MustCompile(`^Linux version \d+\.\d+\S* \(`)
)

// classify recognises a header in a line already stripped of its prefix.
// The order matters: specific "BUG:"/"WARNING:" forms come before the
// generic ones.
func classify(s string) (header, bool) {
	if s == "" || s[0] == ' ' || s[0] == '\t' {
		return header{}, false
	}
	if m := panicRe.FindStringSubmatch(s); m != nil {
		msg := strings.TrimSpace(sanitizePanic(m[1]))
		return header{kind: Panic, base: "Kernel panic - not syncing: " + msg, fatal: true, marker: true}, true
	}
	if m := kasanRe.FindStringSubmatch(s); m != nil {
		return header{kind: KASAN, base: "KASAN: " + m[1], fn: symbol(m[2]), open: openRule, marker: true, ruleEnds: true, kasanRW: true}, true
	}
	if m := kfenceRe.FindStringSubmatch(s); m != nil {
		return header{kind: KFENCE, base: "KFENCE: " + m[1], fn: symbol(m[2]), open: openRule, marker: true, ruleEnds: true}, true
	}
	if m := ubsanTrapRe.FindStringSubmatch(s); m != nil {
		// CONFIG_UBSAN_TRAP: the check was a ud1 and die() follows, so the
		// report is fatal from its header on, which is when Feed returns it.
		return header{kind: UBSAN, base: "UBSAN: " + m[1], fn: symbol(m[2]), fatal: true, wantsOops: true, marker: true}, true
	}
	if m := ubsanRe.FindStringSubmatch(s); m != nil {
		base := "UBSAN: " + m[1]
		return header{kind: UBSAN, base: base, fallback: base + " in " + m[2], src: fnTrace, open: openCut, marker: true}, true
	}
	if m := lockdepRe.FindStringSubmatch(s); m != nil {
		d := m[2]
		switch {
		case strings.HasSuffix(d, " still has locks held!"):
			d = "still has locks held!"
		case strings.HasPrefix(d, "key "):
			d = "key has not been registered!"
		}
		h := header{kind: Lockdep, base: m[1] + ": " + trimPunct(d), src: fnAt, open: openRule}
		if strings.HasPrefix(d, "suspicious RCU usage") {
			h.src = fnRCUAt
		}
		return h, true
	}
	if m := waitCtxRe.FindStringSubmatch(s); m != nil {
		return header{kind: Lockdep, base: "BUG: " + m[1], src: fnAt, open: openRule}, true
	}
	if hungRe.MatchString(s) {
		return header{kind: HungTask, base: "INFO: task hung", src: fnTrace}, true
	}
	if rcuRe.MatchString(s) {
		return header{kind: RCUStall, base: "INFO: rcu detected stall", src: fnRIPOrTrace}, true
	}
	if softRe.MatchString(s) {
		return header{kind: SoftLockup, base: "BUG: soft lockup", src: fnRIPOrTrace}, true
	}
	if hardRe.MatchString(s) {
		return header{kind: HardLockup, base: "Watchdog detected hard LOCKUP", src: fnRIPOrTrace}, true
	}
	if m := faultRe.FindStringSubmatch(s); m != nil {
		base := m[1]
		if strings.HasSuffix(base, "stack guard page was hit") {
			base = "stack guard page was hit"
		}
		return header{kind: Oops, base: "BUG: " + base, src: fnRIP, fatal: true, wantsOops: true, marker: true}, true
	}
	if m := oopsRe.FindStringSubmatch(s); m != nil {
		return oopsHeader(m[1]), true
	}
	if m := trapRe.FindStringSubmatch(s); m != nil {
		return oopsHeader(m[1]), true
	}
	if m := kbugRe.FindStringSubmatch(s); m != nil {
		return header{kind: Bug, base: "kernel BUG", fallback: "kernel BUG at " + m[1], src: fnRIP, fatal: true, wantsOops: true, open: openCut, marker: true}, true
	}
	if m := kbugSymRe.FindStringSubmatch(s); m != nil {
		return header{kind: Bug, base: "kernel BUG", fn: symbol(m[1]), fatal: true, wantsOops: true, open: openCut, marker: true}, true
	}
	if m := slubRe.FindStringSubmatch(s); m != nil {
		return header{kind: Bug, base: "BUG: " + m[1] + ": " + sanitizeBug(m[2]), open: openRule}, true
	}
	if m := bugRe.FindStringSubmatch(s); m != nil {
		base := "BUG"
		if d := sanitizeBug(m[1]); d != "" {
			base += ": " + d
		}
		return header{kind: Bug, base: base, src: fnRIPOrTrace}, true
	}
	if m := warnRe.FindStringSubmatch(s); m != nil {
		h := header{kind: Warning, base: "WARNING", src: fnRIP, open: openCut, marker: true}
		if a := warnAtRe.FindStringSubmatch(m[1]); a != nil {
			h.fn = symbol(a[2])
			if a[1] != "" {
				h.fallback = "WARNING at " + a[1]
			}
		}
		return h, true
	}
	return header{}, false
}

// oopsHeader builds the header of a die() line from its description.
func oopsHeader(str string) header {
	base, _, _ := strings.Cut(str, ",")
	base = strings.TrimSpace(base)
	if base == "" {
		base = "Oops"
	}
	return header{kind: Oops, base: base, src: fnRIP, fatal: true, isOops: true, marker: true}
}

var (
	offsetRe    = regexp.MustCompile(`\+0x[0-9a-f]+/0x[0-9a-f]+`)
	longHexRe   = regexp.MustCompile(`\b(?:0x)?[0-9a-f]{12,16}\b`)
	hexTokRe    = regexp.MustCompile(`\S*(?:0x[0-9a-f]+|[0-9a-f]{8,})\S*`)
	bracketRe   = regexp.MustCompile(`\s*\[[^\]]*\]`)
	cpuNumRe    = regexp.MustCompile(`CPU ?#?\d+`)
	keyValRe    = regexp.MustCompile(`\s[\w.-]+:\S`)
	spacesRe    = regexp.MustCompile(`\s{2,}`)
	suffixRe    = regexp.MustCompile(`(?:\.(?:isra|constprop|part|cold|llvm|lto_priv)(?:\.\d+)?)+$`)
	symbolOnlyR = regexp.MustCompile(`^[A-Za-z_.$][\w.$]*$`)
)

// sanitizePanic keeps a panic message readable but drops what changes from
// boot to boot (code offsets, pointers, CPU numbers).
func sanitizePanic(s string) string {
	s = offsetRe.ReplaceAllString(s, "")
	s = longHexRe.ReplaceAllString(s, "")
	s = cpuNumRe.ReplaceAllString(s, "CPU")
	return spacesRe.ReplaceAllString(s, " ")
}

// sanitizeBug turns the text after "BUG: " into a stable title: the
// details after ": ", ", ", " - ", " at ", " in process " or the first
// "key:value" name the task, address or place and are dropped, like
// anything bracketed or hex.
func sanitizeBug(s string) string {
	cut := len(s)
	for _, sep := range []string{": ", ", ", " - ", " at ", " in process "} {
		if i := strings.Index(s, sep); i >= 0 && i < cut {
			cut = i
		}
	}
	if loc := keyValRe.FindStringIndex(s); loc != nil && loc[0] < cut {
		cut = loc[0]
	}
	s = s[:cut]
	s = bracketRe.ReplaceAllString(s, "")
	s = hexTokRe.ReplaceAllString(s, "")
	s = cpuNumRe.ReplaceAllString(s, "CPU")
	s = spacesRe.ReplaceAllString(s, " ")
	return trimPunct(strings.TrimSpace(s))
}

func trimPunct(s string) string { return strings.TrimRight(s, "!.: ") }

// symbol turns "func+0x1f/0x40 [mod]" into "func", dropping the suffixes
// the compiler adds to clones, and returns "" for raw addresses.
func symbol(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "? ")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	if !symbolOnlyR.MatchString(s) || strings.HasPrefix(s, "0x") {
		return ""
	}
	return suffixRe.ReplaceAllString(s, "")
}
