// Package known reads known-issues.yaml: failures people have looked at,
// each with a reason, a link and an expiry date, so that the nightly does
// not report the same failure as a regression night after night, and an
// entry nobody renews stops hiding anything. The format is small and
// strict (an unknown key, a wrong type or a bad regexp is an error at its
// file:line:col, all reported together) so that it can also serve as a
// test denylist (kselftest) later.
//
//	issues:
//	  - id: uffd-move-i386-oops
//	    tests: ["uffd:^move$"]      # suite or suite:regexp, anchored like -run
//	    crash: "^BUG: Bad page"     # regexp over the crash title
//	    targets: [i386-highmem]
//	    cells: ["uffd-*"]           # shell patterns over cell names
//	    reason: the negative mapcount oopses before the check
//	    link: https://example.org/bug/1
//	    expires: 2027-03-31
//	    intermittent: true
package known

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/kharness/kharness/harness/guest"
)

// DateLayout is how expiry dates are written.
const DateLayout = "2006-01-02"

// Issue is one entry.
type Issue struct {
	ID string
	// Tests are "suite" or "suite:regexp" patterns; empty matches any test.
	Tests []string
	// Crash matches the title of the crash that failed the test.
	Crash string
	// Targets and Cells narrow the entry; empty means all.
	Targets []string
	Cells   []string
	Reason  string
	Link    string
	// Expires is the first day the entry no longer applies.
	Expires time.Time
	// Intermittent marks a failure that comes and goes: its failures are
	// expected now and then, its passes are not a fix.
	Intermittent bool
	// Line is where the entry starts in its file.
	Line int

	tests []testPattern
	crash *regexp.Regexp
}

type testPattern struct {
	suite string
	re    *regexp.Regexp // nil: the whole suite
}

// Subject is the failure an issue may match.
type Subject struct {
	Suite, Test, Target, Cell, Crash string
}

// Set is a loaded file.
type Set struct {
	Path   string
	Issues []*Issue
}

// Load reads path. A missing file is an empty set.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return &Set{Path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known issues: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes data as if read from file.
func Parse(file string, data []byte) (*Set, error) {
	s := &Set{Path: file}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return s, nil
		}
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	p := &parser{file: file}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "want a mapping with the key issues")
		return nil, p.errs
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "issues":
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "issues: want a list of entries")
				continue
			}
			for _, e := range v.Content {
				if is := p.issue(e); is != nil {
					s.Issues = append(s.Issues, is)
				}
			}
		default:
			p.errorf(k, "unknown key %q (want issues)", k.Value)
		}
	}
	ids := map[string]int{}
	for _, is := range s.Issues {
		if prev, dup := ids[is.ID]; dup {
			p.errs = multierror.Append(p.errs, fmt.Errorf("%s:%d: id %q already used at line %d", file, is.Line, is.ID, prev))
		}
		ids[is.ID] = is.Line
	}
	if p.errs != nil {
		return nil, p.errs
	}
	return s, nil
}

type parser struct {
	file string
	errs *multierror.Error
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = multierror.Append(p.errs, fmt.Errorf("%s:%d:%d: %s", p.file, n.Line, n.Column, fmt.Sprintf(format, args...)))
}

func (p *parser) count() int {
	if p.errs == nil {
		return 0
	}
	return len(p.errs.Errors)
}

func (p *parser) scalar(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s: want a single value", key)
		return "", false
	}
	return n.Value, true
}

func (p *parser) list(n *yaml.Node, key string) []string {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: want a list", key)
		return nil
	}
	var out []string
	for _, c := range n.Content {
		if v, ok := p.scalar(c, key); ok {
			out = append(out, v)
		}
	}
	return out
}

func (p *parser) issue(n *yaml.Node) *Issue {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "an issue is a mapping (id, tests, crash, targets, cells, reason, link, expires, intermittent)")
		return nil
	}
	is := &Issue{Line: n.Line}
	before := p.count()
	seen := map[string]bool{}
	var expires *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			p.errorf(k, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "id":
			is.ID, _ = p.scalar(v, k.Value)
		case "tests":
			is.Tests = p.list(v, k.Value)
			for _, t := range is.Tests {
				g := guest.ParseSuiteSpec(t)
				tp := testPattern{suite: g.Name}
				if g.Name == "" {
					p.errorf(v, "tests: %q names no suite (want suite or suite:regexp)", t)
					continue
				}
				if g.Tests != "" {
					re, err := guest.CompileTests(g.Tests)
					if err != nil {
						p.errorf(v, "tests: %v", err)
						continue
					}
					tp.re = re
				}
				is.tests = append(is.tests, tp)
			}
		case "crash":
			is.Crash, _ = p.scalar(v, k.Value)
			re, err := regexp.Compile(is.Crash)
			if err != nil {
				p.errorf(v, "crash: %v", err)
			}
			is.crash = re
		case "targets":
			is.Targets = p.list(v, k.Value)
		case "cells":
			is.Cells = p.list(v, k.Value)
			for _, c := range is.Cells {
				if _, err := path.Match(c, ""); err != nil {
					p.errorf(v, "cells: pattern %q: %v", c, err)
				}
			}
		case "reason":
			is.Reason, _ = p.scalar(v, k.Value)
		case "link":
			is.Link, _ = p.scalar(v, k.Value)
		case "expires":
			expires = v
			s, ok := p.scalar(v, k.Value)
			if !ok {
				continue
			}
			t, err := time.Parse(DateLayout, s)
			if err != nil {
				p.errorf(v, "expires: want a date YYYY-MM-DD, not %q", s)
			}
			is.Expires = t
		case "intermittent":
			if err := v.Decode(&is.Intermittent); err != nil || v.Tag != "!!bool" {
				p.errorf(v, "intermittent: want true or false, not %q", v.Value)
			}
		default:
			p.errorf(k, "unknown key %q (want id, tests, crash, targets, cells, reason, link, expires, intermittent)", k.Value)
		}
	}
	if is.ID == "" {
		p.errorf(n, "an issue needs an id")
	}
	if strings.TrimSpace(is.Reason) == "" {
		p.errorf(n, "issue %q needs a reason: why it fails, what is being done", is.ID)
	}
	if expires == nil {
		p.errorf(n, "issue %q needs an expiry date (expires: YYYY-MM-DD): a known issue nobody renews must stop hiding failures", is.ID)
	}
	if len(is.Tests) == 0 && is.Crash == "" {
		p.errorf(n, "issue %q matches everything: give tests or crash", is.ID)
	}
	if p.count() > before {
		return nil
	}
	return is
}

// Expired says whether the issue no longer applies on day now.
func (is *Issue) Expired(now time.Time) bool {
	y, m, d := now.UTC().Date()
	return !time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Before(is.Expires)
}

// Matches says whether the issue describes the subject (expiry aside).
func (is *Issue) Matches(s Subject) bool {
	if len(is.Targets) > 0 && !contains(is.Targets, s.Target) {
		return false
	}
	if len(is.Cells) > 0 {
		ok := false
		for _, c := range is.Cells {
			m, _ := path.Match(c, s.Cell)
			ok = ok || m
		}
		if !ok {
			return false
		}
	}
	if is.crash != nil && !is.crash.MatchString(s.Crash) {
		return false
	}
	if len(is.tests) == 0 {
		return true
	}
	for _, tp := range is.tests {
		if tp.suite == s.Suite && (tp.re == nil || tp.re.MatchString(s.Test)) {
			return true
		}
	}
	return false
}

// Match returns the first entry, in file order, that describes s and has
// not expired on day now.
func (set *Set) Match(s Subject, now time.Time) *Issue {
	if set == nil {
		return nil
	}
	for _, is := range set.Issues {
		if !is.Expired(now) && is.Matches(s) {
			return is
		}
	}
	return nil
}

// Expired lists the entries expired on day now, by id.
func (set *Set) Expired(now time.Time) []*Issue {
	if set == nil {
		return nil
	}
	var out []*Issue
	for _, is := range set.Issues {
		if is.Expired(now) {
			out = append(out, is)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
