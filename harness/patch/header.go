package patch

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/bluekeyes/go-gitdiff/gitdiff"
)

// parseHeader reads the commit metadata in front of the diff. go-gitdiff
// handles format-patch mails and `git log -p` output but gives up on the
// whole header for one odd field (a Date with a "(CET)" comment, a quilt
// description that starts with Subject:), so net/mail is the fallback.
// date is in git's raw "<unix> <zone>" form, or "" when there is none.
func parseHeader(preamble string) (h *gitdiff.PatchHeader, date string) {
	if g, err := gitdiff.ParsePatchHeader(preamble); err == nil && g.Title != "" {
		h = g
		// go-gitdiff leaves RFC 2047 names encoded and turns "_" in
		// Q-encoded subjects into nothing useful.
		if strings.Contains(headerPart(preamble), "=?") {
			if fb := mailFallback(preamble); fb != nil {
				h.Title, h.Author = fb.Title, fb.Author
			}
		}
	} else {
		h = mailFallback(preamble)
	}
	if m := dateLine.FindStringSubmatch(headerPart(preamble)); m != nil {
		date = gitDate(strings.TrimSpace(m[1]))
	}
	return h, date
}

var (
	dateLine      = regexp.MustCompile(`(?m)^(?:Date|AuthorDate):[ \t]*(.+)$`)
	headerField   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*:`)
	subjectPrefix = regexp.MustCompile(`^(?i:\s*(?:(?:re|fwd?|aw):\s*|\[[^]]*\]\s*))*`)
)

// headerPart is the preamble up to the first blank line: the mail (or
// git log) header, not the message, which may quote other dates.
func headerPart(preamble string) string {
	s := strings.ReplaceAll(preamble, "\r\n", "\n")
	if i := strings.Index(s, "\n\n"); i >= 0 {
		return s[:i]
	}
	return s
}

func mailFallback(preamble string) *gitdiff.PatchHeader {
	text := strings.TrimLeft(preamble, "\r\n")
	if first, rest, ok := strings.Cut(text, "\n"); ok && mboxFrom.MatchString(first) {
		text = rest
	}
	if !headerField.MatchString(text) {
		return nil
	}
	msg, err := mail.ReadMessage(strings.NewReader(text))
	if err != nil {
		return nil
	}
	h := &gitdiff.PatchHeader{}
	subject := msg.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	h.Title = strings.TrimSpace(subjectPrefix.ReplaceAllString(subject, ""))
	if h.Title == "" {
		return nil
	}
	if from := msg.Header.Get("From"); from != "" {
		if dec, err := new(mime.WordDecoder).DecodeHeader(from); err == nil {
			from = dec
		}
		if id, err := gitdiff.ParsePatchIdentity(from); err == nil {
			h.Author = &id
		}
	}
	body, _ := io.ReadAll(msg.Body)
	b := "\n" + string(body)
	if i := strings.Index(b, "\n---\n"); i >= 0 {
		b = b[:i]
	}
	h.Body = strings.TrimSpace(b)
	return h
}

// gitDate converts a header date to git's raw format. Dates without a zone
// are read as UTC, never as the host's zone, so commit ids do not depend
// on where the harness runs. Unparseable dates give "".
func gitDate(s string) string {
	if t, err := mail.ParseDate(s); err == nil {
		return raw(t)
	}
	for _, layout := range []string{
		"2006-01-02 15:04:05 -0700",
		"2006-01-02T15:04:05-07:00",
		"Mon, 2 Jan 2006 15:04:05 -0700",
		"Mon Jan 2 15:04:05 2006 -0700",
		"2006-01-02T15:04:05Z07:00",
		"2006-01-02 15:04:05",
		"Mon Jan 2 15:04:05 2006",
		"2006-01-02",
	} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return raw(t)
		}
	}
	var unix int64
	var zone string
	if n, _ := fmt.Sscanf(s, "%d %s", &unix, &zone); n == 2 {
		if z, err := time.Parse("-0700", zone); err == nil {
			return raw(time.Unix(unix, 0).In(z.Location()))
		}
	}
	if n, _ := fmt.Sscanf(s, "%d", &unix); n == 1 && fmt.Sprint(unix) == s {
		return fmt.Sprintf("%d +0000", unix)
	}
	return ""
}

func raw(t time.Time) string { return fmt.Sprintf("%d %s", t.Unix(), t.Format("-0700")) }
