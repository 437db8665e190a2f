package splat

import (
	"regexp"
	"strings"
)

// header is what one header line tells about the report it starts.
type header struct {
	r        *rule
	base     string // title, before " in F"
	fn       string // F when known
	fallback string // title when no F is ever found ("" means base)
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

// match tries the rules on a line already stripped of its prefix; second
// says whether rules that need a second sighting take part.
func match(s string, second bool) (header, bool) {
	if s == "" || s[0] == ' ' || s[0] == '\t' {
		return header{}, false
	}
	for _, r := range rules {
		if r.second && !second {
			continue
		}
		m := r.re.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		h := header{r: r, base: r.fixed}
		if r.title != nil {
			h.base, h.fn, h.fallback = r.title(m)
		}
		return h, true
	}
	return header{}, false
}

// classify recognises a header in a line already stripped of its prefix.
func classify(s string) (header, bool) { return match(s, false) }

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
