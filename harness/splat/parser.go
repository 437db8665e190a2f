package splat

import (
	"regexp"
	"strings"
)

// maxLines caps a report's Text; longer splats are cut, not lost.
const maxLines = 150

// bodyLimit is how many lines a splat without an end marker may run before
// its first Call Trace while taking any line. Past it, only lines that look
// like crash-dump output (registers, "CPU: N UID:", lock lists, "rcu: ...")
// continue it, so a one-line "BUG: Bad rss-counter state" does not swallow
// the boot log after it. Reports framed by "=====" (lockdep, SLUB) explain
// themselves at length before their stack and are exempt.
const bodyLimit = 20

// lookback is how many earlier lines are searched for a header's opener;
// a WARN() message sits between "cut here" and the WARNING line.
const lookback = 10

const cutHere = "------------[ cut here ]------------"

// Parser is a streaming parser: the host feeds console lines as they
// arrive. It is not safe for concurrent use.
type Parser struct {
	n        int            // lines fed so far
	prefixed bool           // the log has shown printk prefixes (see package doc)
	sighted  map[*rule]bool // rules with second set whose header was seen once
	hist     []ref          // recent kernel lines, for openers
	reports  []*Report
	cur      *splat // the report still taking lines, or nil
}

// ref is one remembered line.
type ref struct {
	no      int
	text    string
	content string
	header  bool
	owner   *splat
}

type phase int

const (
	inBody  phase = iota // between the header and the first Call Trace
	inTrace              // within a Call Trace
	inTail               // after a trace: only crash-dump lines continue it
)

// splat is the parsing state of the open report.
type splat struct {
	r       *Report
	h       header
	lines   []string
	nos     []int
	pending []string // blank lines kept back until more text follows
	pendNos []int
	phase   phase
	body    int  // lines in inBody
	seen    int  // lines after the header
	sawOops bool // an "Oops:" line was taken in
	guess   bool // the title's F is a questionable frame ("? f+0x1/0x2"), until a reliable one shows
	rawRIP  bool // the RIP is no function (a jump into data): fnRIP takes the trace's
	prose   bool // may run past bodyLimit before its stack
	locks   bool // "Showing all locks held" was seen: a hung task ends at "====="
	trace   bool // a "Call Trace:" was seen
	nmi     bool // within <NMI> ... </NMI>
	fnDone  bool
}

// NewParser returns a parser at the start of a log.
func NewParser() *Parser { return &Parser{sighted: map[*rule]bool{}} }

// Feed takes one line (without its newline; CR, NUL and escape sequences
// are tolerated). When the line is a header it returns the new report, else
// nil. The pointer stays valid and is updated by later Feed calls: Text
// grows until the report ends, and Title gains its " in F" or KASAN access
// type from the lines after the header. Kind, Line and Fatal are final
// when the header is returned, so a caller may start its crash handling
// then. Reports gives the same data as copies.
func (p *Parser) Feed(line string) *Report {
	p.n++
	text := clean(line)
	content, pre := split(text)
	if pre {
		p.prefixed = true
	} else if p.prefixed {
		return nil // user-space output between kernel lines
	}
	h, isHdr := classify(content)
	if !isHdr {
		if sh, ok := match(content, true); ok {
			h, isHdr = sh, p.sighted[sh.r]
			p.sighted[sh.r] = true
		}
	}
	if isHdr && p.cur != nil && p.absorbs(h) {
		isHdr = false
	}
	var ret *Report
	var owner *splat // the report that took the line
	if isHdr {
		owner = p.start(h, text)
		ret = owner.r
	} else if s := p.cur; s != nil {
		if p.add(text, content) {
			owner = s
		}
	}
	p.remember(ref{no: p.n, text: text, content: content, header: isHdr, owner: owner})
	return ret
}

// Reports returns all reports so far, in log order, with their text
// completed as far as fed.
func (p *Parser) Reports() []Report {
	out := make([]Report, len(p.reports))
	for i, r := range p.reports {
		out[i] = *r
	}
	return out
}

func (p *Parser) remember(r ref) {
	if len(p.hist) == lookback+1 {
		copy(p.hist, p.hist[1:])
		p.hist = p.hist[:lookback]
	}
	p.hist = append(p.hist, r)
}

// absorbs says whether header h continues the open report: the "Oops:"
// line that die() prints after a page-fault or "kernel BUG at" header.
func (p *Parser) absorbs(h header) bool {
	s := p.cur
	if !h.r.isOops || !s.h.r.wantsOops || s.sawOops || s.seen >= 20 {
		return false
	}
	s.sawOops = true
	s.r.Fatal = true
	return true
}

func (p *Parser) start(h header, text string) *splat {
	pre := p.opener(h.r.open)
	if p.cur != nil {
		if len(pre) > 0 {
			p.cur.dropFrom(pre[0].no)
		}
		p.close()
	}
	r := &Report{Kind: h.r.kind, Title: h.title(), Line: p.n, Fatal: h.r.fatal}
	s := &splat{r: r, h: h, fnDone: h.fn != "" || h.r.fn == fnNone}
	// Reports framed by "=====" (lockdep, SLUB) explain themselves at
	// length before their stack; "BUG: MAX_LOCKDEP_KEYS too low!" is short.
	s.prose = h.r.open == openRule && len(pre) > 0
	for _, l := range pre {
		s.lines = append(s.lines, l.text)
		s.nos = append(s.nos, l.no)
	}
	s.lines = append(s.lines, text)
	s.nos = append(s.nos, p.n)
	r.Text = strings.Join(s.lines, "\n")
	p.reports = append(p.reports, r)
	p.cur = s
	if h.r.second { // a banner is the whole report
		p.close()
	}
	return s
}

// opener finds the lines before a header that belong to it. Lines of a
// finished report are never taken; lines at the end of the open one are
// (a "cut here" is not part of the splat before it).
func (p *Parser) opener(o opener) []ref {
	switch o {
	case openCut:
		for i := len(p.hist) - 1; i >= 0; i-- {
			l := p.hist[i]
			if l.header || (l.owner != nil && l.owner != p.cur) {
				return nil
			}
			if strings.TrimSpace(l.content) == cutHere {
				// A VM_BUG_ON_PAGE's dump_page() comes first and says
				// which condition failed.
				for i > 0 && pageDumpRe.MatchString(p.hist[i-1].content) && !p.hist[i-1].header &&
					(p.hist[i-1].owner == nil || p.hist[i-1].owner == p.cur) {
					i--
				}
				return p.hist[i:]
			}
		}
	case openFault:
		if n := len(p.hist); n > 0 {
			l := p.hist[n-1]
			if !l.header && (l.owner == nil || l.owner == p.cur) && faultNoteRe.MatchString(l.content) {
				return p.hist[n-1:]
			}
		}
	case openRule:
		if n := len(p.hist); n > 0 {
			l := p.hist[n-1]
			if !l.header && (l.owner == nil || l.owner == p.cur) && isRule(l.content) {
				return p.hist[n-1:]
			}
		}
	}
	return nil
}

func (p *Parser) close() {
	if s := p.cur; s != nil {
		s.pending, s.pendNos = nil, nil
		p.cur = nil
	}
}

// dropFrom gives back the open report's lines from log line no on.
func (s *splat) dropFrom(no int) {
	i := len(s.nos)
	for i > 0 && s.nos[i-1] >= no {
		i--
	}
	if i == 0 { // never drop the header
		i = 1
	}
	s.lines, s.nos = s.lines[:i], s.nos[:i]
	s.pending, s.pendNos = nil, nil
	s.r.Text = strings.Join(s.lines, "\n")
}

func (s *splat) push(text string, no int) {
	for i, l := range s.pending {
		s.lines = append(s.lines, l)
		s.nos = append(s.nos, s.pendNos[i])
		s.r.Text += "\n" + l
	}
	s.pending, s.pendNos = s.pending[:0], s.pendNos[:0]
	s.lines = append(s.lines, text)
	s.nos = append(s.nos, no)
	s.r.Text += "\n" + text
}

func (s *splat) hold(text string, no int) {
	s.pending = append(s.pending, text)
	s.pendNos = append(s.pendNos, no)
}

var (
	ruleRe      = regexp.MustCompile(`^={10,}\s*$`)
	faultNoteRe = regexp.MustCompile(`^(?:kernel tried to execute NX-protected page|unable to execute userspace code)`)
	pageDumpRe  = regexp.MustCompile(`^(?:page: |page dumped because: |raw: |head: |memcg:|(?:\w+ )?flags: |aops:|folio: |pfn: )`)
	callTraceRe = regexp.MustCompile(`^\s*Call Trace:`)
	frameRe     = regexp.MustCompile(`^\s+(?:\? )?(?:[A-Za-z_.$][\w.$]*\+0x[0-9a-f]+/0x[0-9a-f]+|0x[0-9a-f]+)(?: \[[^\]]*\])?\s*$|^\s*\[<[0-9a-f]+>\] `)
	tagRe       = regexp.MustCompile(`^\s*</?[A-Z#_]+>\s*$`)
	regsRe      = regexp.MustCompile(`^(?:[A-Z][A-Z0-9]{1,5}:\s+(?:0x[0-9a-f]+|[0-9a-f]{4}|[A-Za-z_.$][\w.$]*\+0x)|Code: )`)
	rawRIPRe    = regexp.MustCompile(`^(?:RIP: [0-9a-f]{4}:|EIP: )(?:0x)?[0-9a-f]+\s*$`)
	ripRe       = regexp.MustCompile(`^(?:RIP: [0-9a-f]{4}:|EIP: )([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+`)
	atRe        = regexp.MustCompile(`, at: ([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x|^\[<[0-9a-f]+>\] ([A-Za-z_.$][\w.$]*)\+0x`)
	rcuAtRe     = regexp.MustCompile(`^(\S+:\d+) suspicious `)
	kasanRWRe   = regexp.MustCompile(`^(Read|Write)\b.* at addr `)

	// contRe is what may follow a finished call trace and still belong to
	// the splat: more stack dumps (other CPUs, the RCU kthread), lock
	// listings, RCU state and the panic epilogue.
	contRe = regexp.MustCompile(`^(?:` + strings.Join([]string{
		`CPU: \d+ (?:UID|PID):`,
		`Hardware name:`,
		`Workqueue:`,
		`Modules linked in:`,
		`Tainted: \[`,
		`task:\S.* state:`,
		`NMI backtrace for cpu`,
		`Task dump for CPU`,
		`Sending NMI from CPU`,
		`Showing all locks held`,
		`Showing busy workqueues`,
		`\d+ locks? held by`,
		`no locks held by`,
		` #\d+: `,
		`INFO: lockdep is turned off`,
		`={10,}\s*$`,
		`Kernel Offset:`,
		`---\[ end`,
		`rcu: `,
		`\t`,
		`Preemption disabled at:`,
		`\[<[0-9a-f]+>\] `,
		`irq event stamp:`,
		`hardirqs last`,
		`softirqs last`,
		`CPU#\d+ Utilization`,
		`Call Trace:`,
		`\s*</?[A-Z#_]+>\s*$`,
	}, "|") + `)`)
)

func isRule(content string) bool { return ruleRe.MatchString(content) }

func traceish(content string) bool {
	return frameRe.MatchString(content) || tagRe.MatchString(content) || regsRe.MatchString(content)
}

// add gives a non-header line to the open report and decides whether the
// report ends with it (marker lines are included) or before it. It says
// whether the line went into Text (blank lines kept back do not count).
func (p *Parser) add(text, content string) bool {
	s := p.cur
	s.seen++
	if strings.HasPrefix(content, "Showing all locks held") {
		s.locks = true
	}
	if strings.HasPrefix(content, "---[ end trace") || strings.HasPrefix(content, "---[ end Kernel panic") ||
		isRule(content) && (s.h.r.end == endRule || s.h.r.end == endFlowLocks && s.locks) {
		s.push(text, p.n)
		p.close()
		return true
	}
	blank := isBlank(content)
	taken := !blank
	if s.h.r.end >= endMarker || s.sawOops {
		if blank {
			s.hold(text, p.n)
		} else {
			s.push(text, p.n)
		}
	} else if !s.flow(text, content, blank, p.n) {
		p.close()
		return false
	}
	s.learn(content)
	if len(s.lines)+len(s.pending) >= maxLines {
		p.close()
	}
	return taken
}

// flow places a line of a report without an end marker; false means the
// report ended before the line.
func (s *splat) flow(text, content string, blank bool, no int) bool {
	switch s.phase {
	case inBody:
		if blank {
			s.hold(text, no)
			return true
		}
		s.push(text, no)
		s.body++
		if callTraceRe.MatchString(content) {
			s.phase = inTrace
		} else if !s.prose && s.body >= bodyLimit {
			s.phase = inTail
		}
		return true
	case inTrace:
		if !blank && traceish(content) {
			s.push(text, no)
			if strings.TrimSpace(content) == "</TASK>" {
				s.phase = inTail
			}
			return true
		}
		s.phase = inTail
	}
	// inTail
	if blank {
		s.hold(text, no)
		return true
	}
	if !contRe.MatchString(content) && !regsRe.MatchString(content) {
		return false
	}
	s.push(text, no)
	if callTraceRe.MatchString(content) {
		s.phase = inTrace
	}
	return true
}

// learn picks the title's missing pieces out of a body line.
func (s *splat) learn(content string) {
	if callTraceRe.MatchString(content) {
		s.trace = true
		s.nmi = false
	}
	switch strings.TrimSpace(content) {
	case "<NMI>":
		s.nmi = true
	case "</NMI>":
		s.nmi = false
	}
	if s.h.r.kasanRW && s.seen == 1 {
		if m := kasanRWRe.FindStringSubmatch(content); m != nil {
			s.h.base += " " + m[1]
			s.r.Title = s.h.title()
		}
	}
	if s.fnDone {
		return
	}
	fn, guess := "", false
	switch s.h.r.fn {
	case fnRIP:
		if fn = ripFn(content); fn == "" && rawRIPRe.MatchString(content) {
			s.rawRIP = true
		}
		if fn == "" && s.rawRIP {
			fn, guess = s.traceFn(content)
		}
	case fnTrace:
		fn, guess = s.traceFn(content)
	case fnRIPOrTrace:
		// A CPU caught spinning in a lock or a wait primitive is named
		// after the caller the trace shows.
		if fn = ripFn(content); fn == "" || plumbing(fn) || s.h.r.skips(fn) {
			fn, guess = s.traceFn(content)
		}
	case fnAt:
		if m := atRe.FindStringSubmatch(content); m != nil {
			fn = symbol(m[1] + m[2])
		}
	case fnRCUAt:
		if m := rcuAtRe.FindStringSubmatch(content); m != nil {
			s.fnDone = true
			s.r.Title = s.h.base + " at " + srcPath(m[1])
		}
		return
	}
	if fn == "" || guess && s.guess {
		return
	}
	// A questionable frame names the function only until a reliable one
	// shows: with the guess unwinder (no frame pointers, no ORC) every
	// frame is questionable, and the first one left is the best there is.
	s.fnDone, s.guess = !guess, guess
	s.h.fn = fn
	s.r.Title = s.h.title()
}

func ripFn(content string) string {
	if m := ripRe.FindStringSubmatch(content); m != nil {
		return symbol(m[1])
	}
	return ""
}

// traceFn returns the function a Call Trace line names, unless it is
// skipped, and whether the frame is questionable ("? f+0x1/0x2").
func (s *splat) traceFn(content string) (fn string, questionable bool) {
	if !s.trace || s.nmi || !frameRe.MatchString(content) {
		return "", false
	}
	c := strings.TrimSpace(content)
	if strings.HasPrefix(c, "[<") { // old "[<c1234567>] func+0x1/0x2"
		if i := strings.Index(c, "] "); i >= 0 {
			c = c[i+2:]
		}
	}
	c, questionable = strings.CutPrefix(c, "? ")
	fn = symbol(c)
	if fn == "" || plumbing(fn) || s.h.r.skips(fn) {
		return "", false
	}
	return fn, questionable
}

// plumbingNames and plumbingPrefixes are the frames a title should look
// past: stack dumpers, the scheduler, sleeping locks, report machinery and
// entry code. What remains is the code that was waiting or misbehaving.
var plumbingNames = map[string]bool{
	"schedule": true, "schedule_timeout": true, "schedule_preempt_disabled": true,
	"schedule_hrtimeout": true, "schedule_hrtimeout_range": true, "schedule_hrtimeout_range_clock": true,
	"io_schedule": true, "io_schedule_timeout": true, "context_switch": true,
	"preempt_schedule": true, "preempt_schedule_common": true, "preempt_schedule_irq": true,
	"preempt_schedule_notrace": true, "preempt_schedule_thunk": true,
	"down": true, "down_read": true, "down_write": true, "down_read_killable": true,
	"down_write_killable": true, "down_interruptible": true, "down_killable": true,
	"down_timeout": true, "down_read_interruptible": true,
	"mutex_lock": true, "mutex_lock_interruptible": true, "mutex_lock_killable": true,
	"mutex_lock_nested": true, "mutex_lock_interruptible_nested": true, "mutex_lock_killable_nested": true,
	"mutex_lock_io_nested": true, "panic": true, "kthread": true, "ret_from_fork": true,
	"ret_from_fork_asm": true, "show_stack": true, "sched_show_task": true,
	"msleep": true, "usleep_range_state": true, "ssleep": true,
	"rcu_barrier": true, "synchronize_rcu": true, "synchronize_rcu_expedited": true,
	"__synchronize_srcu": true, "synchronize_srcu": true, "bit_wait": true, "bit_wait_io": true,
	"stop_machine_yield": true, "cpu_relax": true,
}

var plumbingPrefixes = []string{
	"dump_stack", "__schedule", "__switch_to", "__might_", "___might_", "might_", "__cant_",
	"__mutex_lock", "__down", "rwsem_down", "__rwsem", "wait_for_completion", "__wait_for_common",
	"wait_for_common", "do_wait_for_common", "__wait_on_bit", "__flush_work", "flush_work", "__flush_workqueue", "out_of_line_wait_on_bit", "_raw_", "do_raw_",
	"queued_", "native_queued", "__pv_queued", "rt_mutex", "__rt_mutex", "rt_spin",
	"lock_acquire", "__lock_acquire", "lock_release", "__warn", "warn_slowpath", "report_bug",
	"handle_bug", "exc_", "asm_exc_", "asm_sysvec", "sysvec_", "__sysvec", "kasan_", "__kasan_",
	"ubsan_", "__ubsan_", "nmi_", "entry_", "do_syscall", "do_int80", "do_fast_syscall",
	"check_preemption_disabled", "debug_smp_processor_id", "__pfx_", "__schedule_bug", "hrtimer_",
	"schedule_debug",
}

func plumbing(fn string) bool {
	if plumbingNames[fn] {
		return true
	}
	for _, pre := range plumbingPrefixes {
		if strings.HasPrefix(fn, pre) {
			return true
		}
	}
	return false
}
