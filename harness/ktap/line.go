package ktap

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// clean removes what a serial console adds: the CR of CRLF, NUL padding,
// terminal escape sequences and other control bytes. Text before a CR in
// the middle of a line was overwritten on a terminal, so only what follows
// the last one is kept. Tabs are kept.
func clean(s string) string {
	s = strings.TrimRight(s, "\r\x00")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			i += escapeLen(s[i+1:])
		case isControl(rune(c)):
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// escapeLen is the length of the escape sequence after an ESC: a CSI
// sequence "[" parameters final-byte, or a single character.
func escapeLen(s string) int {
	if s == "" {
		return 0
	}
	if s[0] != '[' {
		return 1
	}
	for i := 1; i < len(s); i++ {
		if s[i] >= 0x40 && s[i] <= 0x7e {
			return i + 1
		}
	}
	return len(s)
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// stripConsole removes the prefixes the kernel puts before a message: a
// /dev/kmsg record header "6,123,456,-;" (with optional ",caller=T1"), or
// any of the syslog level "<6>", the time "[    1.234567]" and the caller
// "[    T1]" / "[    C0]", followed by one space. What follows is the
// message with its own indentation.
func stripConsole(s string) string {
	if rest, ok := kmsgPrefix(s); ok {
		return rest
	}
	i := 0
	if j := syslogLevel(s); j > 0 {
		i = j
	}
	if j := bracket(s[i:], isTime); j > 0 {
		i += j
	}
	if j := bracket(s[i:], isCaller); j > 0 {
		i += j
	}
	if i == 0 {
		return s
	}
	s = s[i:]
	return strings.TrimPrefix(s, " ")
}

// kmsgPrefix recognises "level,seq,usec,flags[,key=value...];".
func kmsgPrefix(s string) (string, bool) {
	semi := strings.IndexByte(s, ';')
	if semi < 0 {
		return s, false
	}
	f := strings.SplitN(s[:semi], ",", 4)
	if len(f) < 4 || !digits(f[0]) || !digits(f[1]) || !digits(f[2]) {
		return s, false
	}
	return s[semi+1:], true
}

// syslogLevel returns the length of a leading "<N>", or 0.
func syslogLevel(s string) int {
	if !strings.HasPrefix(s, "<") {
		return 0
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 || !digits(s[1:end]) {
		return 0
	}
	return end + 1
}

// bracket returns the length of a leading "[ ...]" whose trimmed content
// satisfies ok, or 0.
func bracket(s string, ok func(string) bool) int {
	if !strings.HasPrefix(s, "[") {
		return 0
	}
	end := strings.IndexByte(s, ']')
	if end < 0 || !ok(strings.TrimLeft(s[1:end], " ")) {
		return 0
	}
	return end + 1
}

func isTime(s string) bool {
	sec, frac, ok := strings.Cut(s, ".")
	return ok && digits(sec) && digits(frac)
}

func isCaller(s string) bool {
	return len(s) > 1 && (s[0] == 'T' || s[0] == 'C') && digits(s[1:])
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// indentation splits leading blanks (spaces and tabs, one column each)
// from the text.
func indentation(s string) (int, string) {
	t := strings.TrimLeft(s, " \t")
	return len(s) - len(t), t
}

// truncate cuts s to at most n bytes on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// kind is what a line is.
type kind int

const (
	unknownLine kind = iota
	blankLine
	versionLine
	planLine
	resultLine
	subtestLine
	metadataLine
	bailOutLine
	diagLine
)

// line is one classified line, without indentation.
type line struct {
	kind   kind
	indent int
	text   string // the line without its indentation
	full   string // the line with its indentation

	version string // versionLine: "KTAP version 1"
	vmajor  int    // versionLine: 1, 2, 13, 14; -1 if not a number
	ktap    bool   // versionLine: KTAP rather than TAP

	plan Plan // planLine

	res result // resultLine

	name string // subtestLine: the name; metadataLine: the key

	value string // metadataLine: the value; bailOutLine: the reason
}

// result is a parsed result line.
type result struct {
	ok        bool
	skipWord  bool // KTAP v2 "skip N name"
	number    int
	desc      string
	directive string // upper-cased known directive, or ""
	reason    string
}

// classify parses one cleaned, prefix-free line.
func classify(s string) line {
	ind, t := indentation(s)
	t = strings.TrimRight(t, " \t")
	l := line{indent: ind, text: t, full: s[:ind] + t}
	switch {
	case t == "":
		l.kind = blankLine
	case parseVersion(t, &l):
		l.kind = versionLine
	case parsePlan(t, &l.plan):
		l.kind = planLine
	case parseResult(t, &l.res):
		l.kind = resultLine
	case strings.HasPrefix(t, "Bail out!"):
		l.kind = bailOutLine
		l.value = strings.TrimSpace(t[len("Bail out!"):])
	case t[0] == '#':
		if name, ok := parseSubtest(t); ok {
			l.kind, l.name = subtestLine, name
		} else if k, v, ok := parseMetadata(t); ok {
			l.kind, l.name, l.value = metadataLine, k, v
		} else if len(t) == 1 || t[1] == ' ' || t[1] == '\t' {
			// "# text", as the spec writes diagnostics. The kernel's own
			// "#PF: ..." oops lines stay unknown lines.
			l.kind = diagLine
		}
	}
	return l
}

// parseVersion recognises "KTAP version N" and "TAP version N".
func parseVersion(t string, l *line) bool {
	var rest string
	switch {
	case strings.HasPrefix(t, "KTAP version "):
		l.ktap, rest = true, t[len("KTAP version "):]
	case strings.HasPrefix(t, "TAP version "):
		rest = t[len("TAP version "):]
	default:
		return false
	}
	if rest == "" || strings.ContainsAny(rest, " \t") {
		return false
	}
	l.version = t
	l.vmajor = -1
	if n, err := strconv.Atoi(rest); err == nil {
		l.vmajor = n
	}
	return true
}

// parsePlan recognises "1..N" with an optional "# directive reason".
func parsePlan(t string, p *Plan) bool {
	rest, ok := strings.CutPrefix(t, "1..")
	if !ok {
		return false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	if err != nil || n > maxPlan {
		return false
	}
	rest = strings.TrimLeft(rest[end:], " \t")
	if rest != "" && rest[0] != '#' {
		return false
	}
	*p = Plan{Count: n}
	if rest != "" {
		d, reason := parseDirective(rest[1:])
		if d == "SKIP" {
			p.Directive = d
		}
		p.Reason = reason
	}
	return true
}

// maxPlan bounds plan counts and test numbers so arithmetic on them cannot
// overflow.
const maxPlan = 1 << 30

// parseResult recognises "ok N ...", "not ok N ..." and "skip N ...". The
// number is required, so kernel lines that merely start with "ok" are not
// taken for results.
func parseResult(t string, r *result) bool {
	var rest string
	switch {
	case strings.HasPrefix(t, "ok "):
		r.ok, rest = true, t[3:]
	case strings.HasPrefix(t, "not ok "):
		rest = t[7:]
	case strings.HasPrefix(t, "skip "):
		r.ok, r.skipWord, rest = true, true, t[5:]
	default:
		return false
	}
	rest = strings.TrimLeft(rest, " \t")
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	if err != nil || n > maxPlan {
		return false
	}
	rest = rest[end:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' && rest[0] != '#' {
		return false // "ok 1st try" is not a result line
	}
	r.number = n
	desc, dir, hasDir := splitHash(rest)
	desc = strings.TrimSpace(desc)
	if d, ok := strings.CutPrefix(desc, "-"); ok && (d == "" || d[0] == ' ' || d[0] == '\t') {
		desc = strings.TrimSpace(d) // TAP's "ok 1 - description"
	}
	r.desc = desc
	if hasDir {
		r.directive, r.reason = parseDirective(dir)
	}
	return true
}

// splitHash splits a result line's text at its first "#" that is not
// escaped as "\#", unescaping "\#" and "\\" in the description (TAP 14).
func splitHash(s string) (desc, after string, found bool) {
	if !strings.Contains(s, `\`) {
		desc, after, found = strings.Cut(s, "#")
		return desc, after, found
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '#' || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i++
		case c == '#':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "", false
}

// directiveStatus maps a recognised directive keyword to its status.
func directiveStatus(word string) (Status, bool) {
	switch word {
	case "SKIP":
		return Skip, true
	case "TODO":
		return Todo, true
	case "XFAIL":
		return XFail, true
	case "XPASS":
		return XPass, true
	case "TIMEOUT":
		return Timeout, true
	case "ERROR":
		return Error, true
	}
	return "", false
}

// parseDirective splits the text after "#" into a known directive keyword
// (upper-cased) and the reason. The keyword is the first word, matched
// case-insensitively; "SKIP" may be followed by letters ("SKIPPED") as TAP
// harnesses allow. Text without a known keyword is all reason.
func parseDirective(s string) (directive, reason string) {
	s = strings.TrimSpace(s)
	end := 0
	for end < len(s) && isLetter(s[end]) {
		end++
	}
	word := strings.ToUpper(s[:end])
	if _, ok := directiveStatus(word); !ok {
		if !strings.HasPrefix(word, "SKIP") {
			return "", s
		}
		word = "SKIP"
	}
	reason = strings.TrimSpace(s[end:])
	if r, ok := strings.CutPrefix(reason, ":"); ok {
		reason = strings.TrimSpace(r)
	}
	return word, reason
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// parseSubtest recognises "# Subtest: name" (KUnit, TAP 14) and a bare
// "# Subtest".
func parseSubtest(t string) (string, bool) {
	rest := strings.TrimLeft(t[1:], " \t")
	rest, ok := strings.CutPrefix(rest, "Subtest")
	if !ok {
		return "", false
	}
	if rest == "" {
		return "", true
	}
	name, ok := strings.CutPrefix(rest, ":")
	if !ok {
		return "", false
	}
	return strings.TrimSpace(name), true
}

// parseMetadata recognises KTAP v2 metadata, "#:prefix_type: value".
func parseMetadata(t string) (key, value string, ok bool) {
	rest, ok := strings.CutPrefix(t, "#:")
	if !ok {
		return "", "", false
	}
	key, value, ok = strings.Cut(rest, ":")
	if !ok || key == "" || strings.ContainsAny(key, " \t") {
		return "", "", false
	}
	return key, strings.TrimSpace(value), true
}

// isTotals recognises the counters kselftest ("# Totals: pass:1 fail:0
// xfail:0 xpass:0 skip:0 error:0") and KUnit print when a group is done.
func isTotals(t string) bool {
	return strings.HasPrefix(t, "# Totals: pass:")
}
