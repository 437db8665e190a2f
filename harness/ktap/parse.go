package ktap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Default limits (see Options).
const (
	DefaultMaxDiagnostics = 200
	DefaultMaxLineBytes   = 4096
)

// maxDepth bounds nesting: deeper groups are read as diagnostics.
const maxDepth = 32

// maxMetadata bounds metadata entries per test; further ones are kept as
// diagnostics.
const maxMetadata = 64

// Options configure a Parser. The zero value is ready to use.
type Options struct {
	// OnTest, if set, is called once for every test when its result is
	// final: at its result line, or when it is found Crashed. Subtests come
	// before their parent. path is the test's path as Flatten gives it. The
	// test must not be modified; it does not change after the call.
	OnTest func(path string, t *Test)
	// MaxDiagnostics is how many diagnostic lines each test keeps: the first
	// half and the last half; the others are counted in Dropped. 0 means
	// DefaultMaxDiagnostics, a negative value no limit.
	MaxDiagnostics int
	// MaxLineBytes is where longer lines are cut. 0 means
	// DefaultMaxLineBytes.
	MaxLineBytes int
}

// Parser reads KTAP/TAP a line at a time. It is not safe for concurrent use.
type Parser struct {
	opts     Options
	lineNo   int
	root     *Test    // holds the top-level tests and lines outside any test
	stack    []*block // open groups; stack[0] is the top level
	docs     int
	version  string // first version line
	plan     *Plan  // first document's top-level plan
	sawTAP   bool   // a version, plan or result line was seen
	bailOut  string
	bailed   bool
	deferred []emission
	result   *Result // set by Finish
}

// block is an open group of tests: the top level or a test's subtests.
type block struct {
	owner   *Test
	indent  int
	v2      bool // within a KTAP version 2 document
	plan    *Plan
	next    int   // the number the next result line should have
	results int   // result lines read
	fresh   bool  // nothing but a version line or header yet: diagnostics go to the owner
	pending *Test // the test being reported at this level, before its result line
	totals  bool  // a "# Totals:" line followed the last result
}

// state is a test's parsing state until the test is final.
type state struct {
	diag    diagBuf
	named   bool            // the name is known: later names must agree
	started bool            // it began (header or subtests) and is in its parent's Subtests
	grouped bool            // it has (had) a group of subtests
	names   map[string]bool // path elements of its subtests so far
}

type emission struct {
	ancestors []*Test
	t         *Test
}

// NewParser returns a parser at the start of a stream.
func NewParser(opts Options) *Parser {
	if opts.MaxDiagnostics == 0 {
		opts.MaxDiagnostics = DefaultMaxDiagnostics
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	p := &Parser{opts: opts}
	p.root = p.newTest()
	p.stack = []*block{{owner: p.root, next: 1, fresh: true}}
	return p
}

// Parse reads r to its end and returns what it held. Lines longer than
// opts.MaxLineBytes are cut. On a read error it returns the result so far
// and the error.
func Parse(r io.Reader, opts Options) (*Result, error) {
	p := NewParser(opts)
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf) < p.opts.MaxLineBytes {
			buf = append(buf, chunk[:min(len(chunk), p.opts.MaxLineBytes-len(buf))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // the rest of a long line
		}
		if len(chunk) > 0 || len(buf) > 0 {
			p.Feed(string(bytes.TrimSuffix(buf, []byte("\n"))))
		}
		buf = buf[:0]
		if err == io.EOF {
			return p.Finish(), nil
		}
		if err != nil {
			return p.Finish(), fmt.Errorf("ktap: reading line %d: %w", p.lineNo+1, err)
		}
	}
}

// Feed takes the next line, without its newline. Lines fed after Finish are
// ignored.
func (p *Parser) Feed(raw string) {
	if p.result != nil {
		return
	}
	p.lineNo++
	// Cut before cleaning to bound the work; cut again after.
	s := clean(truncate(raw, 2*p.opts.MaxLineBytes))
	s = truncate(stripConsole(s), p.opts.MaxLineBytes)
	l := classify(s)
	if l.kind == resultLine && l.res.skipWord && !p.stack[p.levelFor(l.indent)].v2 {
		l.kind = unknownLine // "skip N" is a result only in KTAP v2
	}
	switch l.kind {
	case blankLine:
	case versionLine:
		p.onVersion(l)
	case planLine:
		p.onPlan(l)
	case resultLine:
		p.onResult(l)
	case subtestLine:
		p.onSubtest(l)
	case metadataLine:
		p.onMetadata(l)
	case bailOutLine:
		if !p.bailed {
			p.bailed, p.bailOut = true, l.value
		}
		p.addDiag(p.top(), l.text)
	case diagLine:
		b := p.stack[p.levelFor(l.indent)]
		if isTotals(l.text) {
			b.totals = true
		}
		p.addDiag(b, l.text)
	default:
		p.onUnknown(l)
	}
	p.emit()
}

// Finish ends the stream: tests still waiting for their result line are
// Crashed. It returns the result; later calls return the same one.
func (p *Parser) Finish() *Result {
	if p.result != nil {
		return p.result
	}
	for len(p.stack) > 0 {
		p.closeTop(true)
	}
	p.emit()
	p.deferred = nil
	root := p.root
	p.final(root)
	r := &Result{
		Version:     p.version,
		Plan:        p.plan,
		Documents:   p.docs,
		Tests:       root.Subtests,
		BailOut:     p.bailOut,
		Metadata:    root.Metadata,
		Diagnostics: root.Diagnostics,
		Dropped:     root.Dropped,
		Errors:      root.Errors,
	}
	if p.sawTAP && r.Documents == 0 {
		r.Documents = 1
	}
	if !p.sawTAP {
		r.Errors = append(r.Errors, "no KTAP or TAP output found")
	}
	p.result = r
	return r
}

func (p *Parser) newTest() *Test { return &Test{st: &state{}} }

func (p *Parser) top() *block { return p.stack[len(p.stack)-1] }

// levelFor is the index of the innermost group a line indented by indent
// belongs to.
func (p *Parser) levelFor(indent int) int {
	i := len(p.stack) - 1
	for i > 0 && p.stack[i].indent > indent {
		i--
	}
	return i
}

// where says at which line something was found, for errors.
func (p *Parser) where(eof bool) string {
	if eof {
		return "output ended"
	}
	return "line " + strconv.Itoa(p.lineNo)
}

func (p *Parser) errorf(t *Test, format string, args ...any) {
	t.Errors = append(t.Errors, fmt.Sprintf(format, args...))
}

// closeDeeper closes the groups indented deeper than indent.
func (p *Parser) closeDeeper(indent int) {
	for len(p.stack) > 1 && p.top().indent > indent {
		p.closeTop(false)
	}
}

// onVersion handles a version line.
func (p *Parser) onVersion(l line) {
	p.sawTAP = true
	p.closeDeeper(l.indent)
	b := p.top()
	switch {
	case b.indent < l.indent:
		if b = p.openGroup(b, l.indent); b == nil {
			p.addDiag(p.top(), l.text)
			return
		}
	case len(p.stack) == 1 && !b.fresh:
		p.newDocument()
	case len(p.stack) == 1:
		if p.docs > 0 {
			p.errorf(b.owner, "line %d: repeated version line %q", p.lineNo, l.version)
			return
		}
		p.docs = 1
	case b.fresh && b.owner.Version == "":
	case b.fresh:
		p.errorf(b.owner, "line %d: repeated version line %q", p.lineNo, l.version)
		return
	default:
		if b = p.restartGroup(); b == nil {
			p.addDiag(p.top(), l.text)
			return
		}
	}
	b.v2 = l.ktap && l.vmajor >= 2
	if len(p.stack) == 1 {
		if p.version == "" {
			p.version = l.version
		}
	} else {
		b.owner.Version = l.version
	}
	if !(l.ktap && (l.vmajor == 1 || l.vmajor == 2) || !l.ktap && (l.vmajor == 13 || l.vmajor == 14)) {
		p.errorf(b.owner, "line %d: unsupported version %q", p.lineNo, l.version)
	}
}

// newDocument closes the top-level group and starts a new one: a version
// line at the top level after results.
func (p *Parser) newDocument() {
	b := p.stack[0]
	p.finishBlock(b, false)
	*b = block{owner: p.root, next: 1, fresh: true}
	if p.docs == 0 {
		p.docs = 1 // the first document had no version line
	}
	p.docs++
}

// restartGroup handles a version or plan line at the indentation of an
// open group that already has results: the group's owner never printed
// its result line, and a new group begins for the next test.
func (p *Parser) restartGroup() *block {
	indent := p.top().indent
	p.closeTop(false)
	parent := p.top()
	if t := parent.pending; t != nil && t.st.started {
		p.crash(parent, t, p.where(false))
	}
	return p.openGroup(parent, indent)
}

// openGroup opens a group of subtests at indent for b's pending test,
// which begins. It returns nil when nesting is too deep.
func (p *Parser) openGroup(b *block, indent int) *block {
	if len(p.stack) >= maxDepth {
		return nil
	}
	t := b.pending
	if t != nil && t.st.grouped {
		p.crash(b, t, p.where(false)) // a second group: the first one's result line is missing
		t = nil
	}
	if t == nil {
		t = p.newTest()
		b.pending = t
	}
	p.start(b, t)
	t.st.grouped = true
	nb := &block{owner: t, indent: indent, next: 1, fresh: true, v2: b.v2}
	p.stack = append(p.stack, nb)
	return nb
}

// start marks b's pending test t as begun: it takes its place among its
// parent's subtests.
func (p *Parser) start(b *block, t *Test) {
	if !t.st.started {
		t.st.started = true
		b.owner.Subtests = append(b.owner.Subtests, t)
	}
	b.fresh = false
	p.fixElem(b, t)
}

// fixElem fixes t's path element once t is both named and among its
// parent's subtests, where it is the last (see Flatten).
func (p *Parser) fixElem(b *block, t *Test) {
	if t.elem != "" || !t.st.started || !t.st.named {
		return
	}
	o := b.owner.st
	if o.names == nil {
		o.names = map[string]bool{}
	}
	t.elem = pathElem(o.names, t, len(b.owner.Subtests))
}

// onPlan handles a plan line: the plan of the group at its indentation, a
// new group if deeper, a new group or document if that group is done.
func (p *Parser) onPlan(l line) {
	p.sawTAP = true
	p.closeDeeper(l.indent)
	b := p.top()
	switch {
	case b.indent < l.indent:
		b = p.openGroup(b, l.indent)
	case b.plan == nil:
	case b.results == 0 && (b.pending == nil || !b.pending.st.started):
		p.errorf(b.owner, "line %d: repeated plan 1..%d", p.lineNo, l.plan.Count)
		return
	case len(p.stack) == 1:
		p.newDocument()
	default:
		b = p.restartGroup()
	}
	if b == nil {
		p.addDiag(p.top(), l.text)
		return
	}
	plan := l.plan
	b.plan = &plan
	b.fresh = false
	if len(p.stack) > 1 {
		b.owner.Plan = &plan
	} else if p.plan == nil && p.docs <= 1 {
		p.plan = &plan
	}
}

// onResult handles a result line: the result of the test being reported
// at its indentation, after the groups indented deeper are closed.
func (p *Parser) onResult(l line) {
	p.sawTAP = true
	p.closeDeeper(l.indent)
	b := p.top()
	if b.indent < l.indent {
		// A bare subtest: results indented under a test without a version
		// line, plan or header.
		if b = p.openGroup(b, l.indent); b == nil {
			p.addDiag(p.top(), l.text)
			return
		}
	}
	r := l.res
	t := b.pending
	if t != nil && t.st.started && r.number == b.next+1 && (!t.st.named || t.Name != r.desc) {
		// The pending test's own result line is missing: this is the
		// result of the test after it.
		p.crash(b, t, p.where(false))
		t = nil
	}
	if t == nil {
		t = p.newTest()
	}
	b.pending = nil
	t.Number = r.number
	p.name(b, t, r.desc, true)
	t.OK = r.ok
	t.Directive, t.Reason = r.directive, r.reason
	t.Line = p.lineNo
	switch st, ok := directiveStatus(r.directive); {
	case ok:
		t.Result = st
	case r.skipWord:
		t.Result = Skip
	case r.ok:
		t.Result = Pass
	default:
		t.Result = Fail
	}
	if r.number != b.next {
		p.errorf(t, "line %d: test number %d out of order, expected %d", p.lineNo, r.number, b.next)
	}
	if t.Result == Pass {
		// ktap.rst: if one of the subtests fails, the parent should too.
		for _, s := range t.Subtests {
			if s.Result.Failed() {
				p.errorf(t, "line %d: ok, but subtest %d %q is %s", p.lineNo, s.Number, s.Name, s.Result)
				break
			}
		}
	}
	b.next = r.number + 1
	b.results++
	b.totals = false
	p.start(b, t)
	p.finish(t)
}

// name gives t, a test of group b, its name, or checks that it agrees
// with the one it has. fromResult names from a result line, whose empty
// name is a name too.
func (p *Parser) name(b *block, t *Test, name string, fromResult bool) {
	switch {
	case !t.st.named:
		t.Name = name
		t.st.named = fromResult || name != ""
		p.fixElem(b, t)
	case name != "" && name != t.Name:
		p.errorf(t, "line %d: named %q, was %q", p.lineNo, name, t.Name)
	}
}

// onSubtest handles a "# Subtest: name" header, which names a group's
// owner.
func (p *Parser) onSubtest(l line) {
	p.closeDeeper(l.indent)
	b := p.top()
	var t *Test
	switch {
	case b.indent == l.indent && b.fresh && len(p.stack) > 1:
		// KUnit: the header follows the group's version line.
		t = b.owner
		b = p.stack[len(p.stack)-2]
	case b.indent == l.indent:
		// TAP 14: the header at the parent's indentation, before the
		// indented subtests.
		t = b.pending
		if t != nil && t.st.started {
			p.crash(b, t, p.where(false))
			t = nil
		}
		if t == nil {
			t = p.newTest()
			b.pending = t
		}
		p.start(b, t)
	default:
		// A header indented like the subtests, without a version line.
		nb := p.openGroup(b, l.indent)
		if nb == nil {
			p.addDiag(p.top(), l.text)
			return
		}
		t = nb.owner
	}
	p.name(b, t, l.name, false)
}

// onMetadata handles a KTAP v2 "#:key: value" line, which goes where a
// diagnostic line would; "ktap_test" names that test.
func (p *Parser) onMetadata(l line) {
	i := p.levelFor(l.indent)
	b := p.stack[i]
	t := p.diagTarget(b)
	if len(t.Metadata) >= maxMetadata {
		p.addDiag(b, l.text)
		return
	}
	if t.Metadata == nil {
		t.Metadata = map[string]string{}
	}
	t.Metadata[l.name] = l.value
	if l.name == "ktap_test" && t != p.root {
		if t == b.owner {
			b = p.stack[i-1]
		}
		p.name(b, t, l.value, false)
	}
}

// onUnknown keeps a line that is not KTAP in the innermost open group: the
// kernel prints such lines at any indentation. Indentation beyond the
// group's is kept.
func (p *Parser) onUnknown(l line) {
	b := p.top()
	p.addDiag(b, l.full[min(l.indent, b.indent):])
}

// diagTarget is the test a diagnostic line at level b belongs to: b's
// owner before the group's plan and once the plan is complete, else the
// test being reported at b.
func (p *Parser) diagTarget(b *block) *Test {
	if b.fresh || b.pending == nil && b.plan != nil && b.results >= b.plan.Count {
		return b.owner
	}
	if b.pending == nil {
		b.pending = p.newTest()
	}
	return b.pending
}

func (p *Parser) addDiag(b *block, text string) {
	p.diagTarget(b).st.diag.add(text, p.opts.MaxDiagnostics)
}

// closeTop closes the innermost group; eof says the output ended.
func (p *Parser) closeTop(eof bool) {
	b := p.top()
	p.finishBlock(b, eof)
	p.stack = p.stack[:len(p.stack)-1]
}

// finishBlock settles a group that ends: its pending test, its plan. The
// owner itself is settled by the group around it.
func (p *Parser) finishBlock(b *block, eof bool) {
	promised := b.plan != nil && b.results < b.plan.Count && !p.bailed && !b.totals
	if t := b.pending; t != nil {
		switch {
		case t.st.started:
			p.crash(b, t, p.where(eof))
		case eof && promised:
			p.crash(b, t, p.where(eof))
		default:
			// Lines after the last result belong to the group's owner.
			b.pending = nil
			owner := b.owner.st
			for _, s := range t.st.diag.lines() {
				owner.diag.add(s, p.opts.MaxDiagnostics)
			}
			owner.diag.dropped += t.st.diag.dropped
			for k, v := range t.Metadata {
				if b.owner.Metadata == nil {
					b.owner.Metadata = map[string]string{}
				}
				b.owner.Metadata[k] = v
			}
		}
	} else if eof && promised {
		p.crash(b, p.newTest(), p.where(eof))
	}
	if b.plan != nil && b.results != b.plan.Count {
		p.errorf(b.owner, "plan 1..%d but %d results before %s", b.plan.Count, b.results, p.where(eof))
	}
}

// crash settles t, b's pending test, as Crashed.
func (p *Parser) crash(b *block, t *Test, where string) {
	if b.pending == t {
		b.pending = nil
	}
	t.Result = Crashed
	t.OK = false
	t.Number = b.next
	b.next++
	t.st.named = true
	p.errorf(t, "no result line before %s", where)
	p.start(b, t)
	p.fixElem(b, t)
	p.finish(t)
}

// finish makes t final and queues its OnTest call. t is a test of the
// innermost open group's owner.
func (p *Parser) finish(t *Test) {
	p.final(t)
	if p.opts.OnTest == nil {
		return
	}
	anc := make([]*Test, 0, len(p.stack)-1)
	for _, b := range p.stack[1:] {
		anc = append(anc, b.owner)
	}
	// t may belong to a group already popped (crashed owners): drop
	// ancestors from t down.
	for i, a := range anc {
		if a == t {
			anc = anc[:i]
			break
		}
	}
	p.deferred = append(p.deferred, emission{anc, t})
}

// final moves t's diagnostics into the Test and drops its parsing state.
func (p *Parser) final(t *Test) {
	t.Diagnostics = t.st.diag.lines()
	t.Dropped = t.st.diag.dropped
	t.st = nil
}

// emit makes the queued OnTest calls whose paths are known: a KTAP v1
// group without a header is named only by its result line, after its
// subtests.
func (p *Parser) emit() {
	n := 0
	for _, e := range p.deferred {
		path, ok := "", true
		for _, a := range e.ancestors {
			if a.elem == "" {
				ok = false
				break
			}
			path = joinPath(path, a.elem)
		}
		if !ok {
			break
		}
		p.opts.OnTest(joinPath(path, e.t.elem), e.t)
		n++
	}
	p.deferred = p.deferred[n:]
}

// diagBuf keeps the first and the last lines of a test's diagnostics.
type diagBuf struct {
	head    []string
	tail    []string // a ring once full
	next    int      // where the ring writes next
	dropped int
}

func (d *diagBuf) add(s string, max int) {
	if max < 0 {
		d.head = append(d.head, s)
		return
	}
	h := (max + 1) / 2
	if len(d.head) < h {
		d.head = append(d.head, s)
		return
	}
	t := max - h
	switch {
	case t == 0:
		d.dropped++
	case len(d.tail) < t:
		d.tail = append(d.tail, s)
	default:
		d.tail[d.next] = s
		d.next = (d.next + 1) % t
		d.dropped++
	}
}

func (d *diagBuf) lines() []string {
	if len(d.head)+len(d.tail) == 0 {
		return nil
	}
	out := make([]string, 0, len(d.head)+len(d.tail))
	out = append(out, d.head...)
	out = append(out, d.tail[d.next:]...)
	return append(out, d.tail[:d.next]...)
}
