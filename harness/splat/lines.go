package splat

import (
	"regexp"
	"strconv"
	"strings"
)

// clean removes what a serial console adds around kernel text: NUL
// padding, CR of CRLF line ends, terminal escape sequences and other
// control bytes; and undoes the \xNN escapes of /dev/kmsg records. A CR in the middle of a line overwrote what came before
// it on a terminal, so only the text after the last one is kept.
func clean(s string) string {
	if strings.Contains(s, `\x`) {
		s = unescapeKmsg(s)
	}
	s = strings.TrimRight(s, "\r\x00")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
		return s
	}
	s = ansiRe.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// kmsgEscRe is how /dev/kmsg writes a byte it will not print as is: a
// control character (a tab is "\x09"), a backslash or a byte >= 0x7f.
var kmsgEscRe = regexp.MustCompile(`\\x(?:[01][0-9a-f]|5c|[7-9a-f][0-9a-f])`)

// unescapeKmsg undoes /dev/kmsg's escapes, so a record reads as the
// console printed it (the caller then drops control characters).
func unescapeKmsg(s string) string {
	return kmsgEscRe.ReplaceAllStringFunc(s, func(e string) string {
		b, _ := strconv.ParseUint(e[2:], 16, 8)
		return string([]byte{byte(b)})
	})
}

var ansiRe = regexp.MustCompile(`\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])`)

// prefixRe matches the prefixes printk puts before a message: the syslog
// level "<6>", the time "[   12.345678]", the caller "[    T1]" (both may
// appear, glued), followed by one space; or the /dev/kmsg record header
// "6,1234,5678901,-;" (optionally with ",caller=T1").
var prefixRe = regexp.MustCompile(`^(?:\d+,\d+,\d+,[^;]*;|(?:<\d{1,3}>)?(?:\[ *\d+\.\d+\])?(?:\[ *[TC]\d+\])? ?)`)

// split strips the printk prefix from a cleaned line and says whether
// there was one.
func split(s string) (content string, prefixed bool) {
	m := prefixRe.FindString(s)
	if m == "" || m == " " {
		return s, false
	}
	return s[len(m):], true
}

// isBlank is a line with nothing but a prefix.
func isBlank(content string) bool { return strings.TrimSpace(content) == "" }
