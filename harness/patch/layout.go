package patch

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/bluekeyes/go-gitdiff/gitdiff"
)

// fileLayout records where a file diff and its hunks sit in the patch text.
// go-gitdiff gives the parsed content but no positions, and errors are only
// useful with a line number a human can jump to.
type fileLayout struct {
	header   int      // 1-based line of "diff --git" or "--- "
	git      bool     // git header (names already without a/ b/)
	rawNames []string // traditional header names as written (---, +++)
	hunks    []hunkLayout
}

type hunkLayout struct {
	line   int    // 1-based line of the "@@" header
	header string // the "@@" line without its newline
	body   string // the hunk lines, as in the patch
}

var hunkHeader = regexp.MustCompile(`^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@`)

// scanLayout walks the lines after the preamble the same way go-gitdiff
// does: file headers start with "diff --git" or a "---"/"+++"/"@@" triple,
// and hunk bodies are consumed by their line counts, so "-- " or "--- "
// lines inside a hunk are never taken for headers.
func scanLayout(data []byte, skip int) []fileLayout {
	lines := strings.SplitAfter(string(data), "\n")
	var files []fileLayout
	cur := func() *fileLayout {
		if len(files) == 0 {
			return nil
		}
		return &files[len(files)-1]
	}
	gitDashes := false // the current git header already had its ---/+++
	for i := skip; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "diff --git "):
			files = append(files, fileLayout{header: i + 1, git: true})
			gitDashes = false
		case strings.HasPrefix(l, "--- ") && i+2 < len(lines) &&
			strings.HasPrefix(lines[i+1], "+++ ") && strings.HasPrefix(lines[i+2], "@@ -"):
			if f := cur(); f != nil && f.git && !gitDashes && len(f.hunks) == 0 {
				gitDashes = true
			} else {
				files = append(files, fileLayout{header: i + 1, rawNames: []string{
					traditionalName(l[4:]), traditionalName(lines[i+1][4:]),
				}})
			}
			i++
		case strings.HasPrefix(l, "@@ -"):
			f := cur()
			m := hunkHeader.FindStringSubmatch(l)
			if f == nil || m == nil {
				continue
			}
			oldN, newN := rangeLen(m[2]), rangeLen(m[4])
			j := i + 1
			for ; j < len(lines) && (oldN > 0 || newN > 0); j++ {
				switch b := lines[j]; {
				case b == "\n" || b == "" || b[0] == ' ':
					if b == "" {
						oldN, newN = 0, 0 // truncated; go-gitdiff reports it
						continue
					}
					oldN--
					newN--
				case b[0] == '-':
					oldN--
				case b[0] == '+':
					newN--
				case b[0] == '\\':
				default:
					oldN, newN = 0, 0
					j--
				}
			}
			if j < len(lines) && strings.HasPrefix(lines[j], "\\ ") {
				j++
			}
			f.hunks = append(f.hunks, hunkLayout{
				line:   i + 1,
				header: strings.TrimRight(l, "\r\n"),
				body:   strings.Join(lines[i+1:j], ""),
			})
			i = j - 1
		}
	}
	return files
}

func rangeLen(s string) int {
	if s == "" {
		return 1
	}
	n, _ := strconv.Atoi(s)
	return n
}

// traditionalName takes the name from a ---/+++ line: up to a tab (diff -u
// puts the timestamp there), unquoting git-style quoted names.
func traditionalName(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if strings.HasPrefix(s, `"`) {
		if end := strings.Index(s[1:], `"`); end >= 0 {
			if u, err := strconv.Unquote(s[:end+2]); err == nil {
				return u
			}
		}
	}
	if i := strings.IndexByte(s, '\t'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(s, " ")
}

// layoutMatches checks the scan against go-gitdiff's result; positions are
// only reported when both agree on the number of files and hunks.
func layoutMatches(lay []fileLayout, files []*gitdiff.File) bool {
	if len(lay) != len(files) {
		return false
	}
	for i, f := range files {
		if len(lay[i].hunks) != len(f.TextFragments) {
			return false
		}
	}
	return true
}
