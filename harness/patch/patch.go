// Package patch finds, validates and applies patch sets to a kernel tree.
//
// A patch set is a directory: a quilt "series" file decides the order when
// present, otherwise every *.patch, *.diff, *.mbox and *.eml file is taken in
// name order. One file may carry several patches (an mbox or
// `git format-patch --stdout`), and each becomes its own Patch so failures
// and git history point at a single change.
//
// Everything that can be checked without a kernel tree is checked by Load, so
// a broken set fails in milliseconds with file:line instead of minutes into a
// run; Apply then only fails for patches that do not fit the tree.
package patch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/bluekeyes/go-gitdiff/gitdiff"
	"github.com/hashicorp/go-multierror"

	"github.com/kharness/kharness/harness/outcome"
)

// Patch is one change, ready to be applied on its own.
type Patch struct {
	Set     string   // set name
	File    string   // path of the file it came from (as given, e.g. "patches/kmap-local/0001-x.patch")
	Index   int      // position within that file for multi-patch files (0-based), else 0
	Subject string   // from the mail header, else the file name
	Author  string   // "Name <mail>" when known
	Paths   []string // kernel files touched (new and old names)
	Data    []byte   // the patch text exactly as it will be applied

	// line is the 1-based line of File where Data starts, so hunks found in
	// Data can be reported at their place in the file. 0 means 1.
	line int
}

// Set is a loaded, validated patch set.
type Set struct {
	Name, Dir string
	Patches   []Patch
}

// SeriesFile is the quilt series file name that fixes the order of a set.
const SeriesFile = "series"

// patchExts are the file name extensions taken when there is no series file.
var patchExts = []string{".patch", ".diff", ".mbox", ".eml"}

func isPatchName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range patchExts {
		if ext == e {
			return true
		}
	}
	return false
}

// Problem is one thing wrong with a patch set, located so it can be fixed
// without guessing. Load returns all of them at once, wrapped in a
// *multierror.Error.
type Problem struct {
	File string // as given, e.g. "patches/kmap-local/series"
	Line int    // 1-based; 0 when the problem is the whole file
	Msg  string
}

func (p *Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Discover lists every set under root, recursively, sorted. A directory is a
// set when it holds a series file or at least one patch file; directories
// that only group other sets (patches/mutants/) are not. Hidden directories
// (.git, quilt's .pc) are skipped.
func Discover(root string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// A set linked in from elsewhere (a developer's series) counts;
			// it is not descended into, so links cannot loop.
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				return nil
			}
			ok, err := isSetDir(p)
			if err != nil || !ok {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		ok, err := isSetDir(p)
		if err != nil {
			return err
		}
		if ok {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("discover patch sets: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

func isSetDir(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if e.Name() == SeriesFile || isPatchName(e.Name()) {
			return true, nil
		}
	}
	return false, nil
}

// Load reads and validates the set name under root. Problems with the
// patches are returned together (see Problem) wrapped as outcome.PatchFail; a
// set that does not exist is an outcome.ConfigError.
func Load(root, name string) (*Set, error) {
	clean := path.Clean(filepath.ToSlash(name))
	if name == "" || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, outcome.Errorf(outcome.ConfigError, "patch set %q: not a name relative to %s", name, root)
	}
	dir := filepath.Join(root, filepath.FromSlash(clean))
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, outcome.Errorf(outcome.ConfigError, "patch set %q: %s does not exist", name, dir)
		}
		return nil, fmt.Errorf("patch set %q: %w", name, err)
	}
	if !st.IsDir() {
		return nil, outcome.Errorf(outcome.ConfigError, "patch set %q: %s is not a directory", name, dir)
	}
	set := &Set{Name: clean, Dir: dir}

	var problems *multierror.Error
	add := func(file string, line int, format string, args ...any) {
		problems = multierror.Append(problems, &Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}

	files, err := setFiles(root, dir, add)
	if err != nil {
		return nil, fmt.Errorf("patch set %q: %w", name, err)
	}
	if files == nil && problems == nil {
		return nil, outcome.Errorf(outcome.ConfigError, "patch set %q: %s has no %s file and no %s files", name, dir, SeriesFile, strings.Join(patchExts, "/"))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			add(f, 0, "%v", err)
			continue
		}
		set.Patches = append(set.Patches, parseFile(set.Name, f, data, add)...)
	}
	if problems != nil {
		problems.ErrorFormat = formatProblems(set.Name)
		return nil, &outcome.Error{Outcome: outcome.PatchFail, Err: problems}
	}
	return set, nil
}

func formatProblems(set string) multierror.ErrorFormatFunc {
	return func(errs []error) string {
		var b strings.Builder
		if len(errs) == 1 {
			fmt.Fprintf(&b, "patch set %s: %v", set, errs[0])
			return b.String()
		}
		fmt.Fprintf(&b, "patch set %s: %d problems:", set, len(errs))
		for _, e := range errs {
			fmt.Fprintf(&b, "\n  %v", e)
		}
		return b.String()
	}
}

// setFiles returns the patch files of dir in apply order. It returns nil
// (and no problem) when dir is not a set at all.
func setFiles(root, dir string, add func(string, int, string, ...any)) ([]string, error) {
	series := filepath.Join(dir, SeriesFile)
	data, err := os.ReadFile(series)
	switch {
	case err == nil:
		return parseSeries(root, dir, series, data, add), nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents { // ReadDir sorts by name
		if isPatchName(e.Name()) && !e.IsDir() {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	return files, nil
}

// parseSeries follows quilt's format. Only -p1 is accepted because that is
// what git apply assumes; silently applying a -p0 or -R patch as -p1 would
// touch the wrong files or undo a change.
func parseSeries(root, dir, series string, data []byte, add func(string, int, string, ...any)) []string {
	files := []string{}
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		name, opts := fields[0], fields[1:]
		bad := false
		for _, o := range opts {
			if o != "-p1" {
				add(series, n, "unsupported quilt option %q for %s (only -p1 is supported)", o, name)
				bad = true
			}
		}
		if bad {
			continue
		}
		rel := filepath.FromSlash(name)
		if filepath.IsAbs(rel) {
			add(series, n, "%s: patch names must be relative to the set directory", name)
			continue
		}
		full := filepath.Join(dir, rel)
		if r, err := filepath.Rel(root, full); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			add(series, n, "%s: outside the patches root %s", name, root)
			continue
		}
		if prev, ok := seen[full]; ok {
			add(series, n, "%s is listed twice (first at %s:%d)", name, series, prev)
			continue
		}
		seen[full] = n
		st, err := os.Stat(full)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			add(series, n, "%s does not exist", name)
			continue
		case err != nil:
			add(series, n, "%v", err)
			continue
		case st.IsDir():
			add(series, n, "%s is a directory", name)
			continue
		}
		files = append(files, full)
	}
	if err := sc.Err(); err != nil {
		add(series, 0, "%v", err)
	}
	return files
}

// mboxFrom matches an mbox separator line: git format-patch writes
// "From <sha> Mon Sep 17 00:00:00 2001", mail tools write
// "From sender Thu Jan  1 00:00:00 1970". The date part keeps "From " at the
// start of a commit message from being taken as a separator.
var mboxFrom = regexp.MustCompile(`^From \S+ +[A-Z][a-z]{2} +[A-Z][a-z]{2} +\d{1,2} +\d{1,2}:\d{2}(:\d{2})? `)

// segment is one message of a file.
type segment struct {
	data []byte
	line int // 1-based line in the file where data starts
}

// splitMessages cuts an mbox into messages. Files that do not start with a
// separator line are a single patch, whatever they contain.
func splitMessages(data []byte) []segment {
	lines := bytes.SplitAfter(data, []byte("\n"))
	first := 0
	for first < len(lines) && len(bytes.TrimSpace(lines[first])) == 0 {
		first++
	}
	if first == len(lines) || !mboxFrom.Match(lines[first]) {
		return []segment{{data: data, line: 1}}
	}
	var segs []segment
	start, off := first, 0
	for i := 0; i < first; i++ {
		off += len(lines[i])
	}
	startOff := off
	for i := first; i < len(lines); i++ {
		if i > start && mboxFrom.Match(lines[i]) {
			segs = append(segs, segment{data: data[startOff:off], line: start + 1})
			start, startOff = i, off
		}
		off += len(lines[i])
	}
	return append(segs, segment{data: data[startOff:], line: start + 1})
}

// coverLetter matches the subject of a format-patch cover letter, which has
// no diff and is skipped rather than reported.
var coverLetter = regexp.MustCompile(`\[[^]]*\b0+/\d+\]`)

// parseFile splits and validates one patch file, reporting problems via add.
func parseFile(set, file string, data []byte, add func(string, int, string, ...any)) []Patch {
	if len(bytes.TrimSpace(data)) == 0 {
		add(file, 0, "empty patch file")
		return nil
	}
	segs := splitMessages(data)
	var out []Patch
	for _, s := range segs {
		if len(bytes.TrimSpace(s.data)) == 0 {
			continue
		}
		p, skip, probs := parsePatch(s.data, s.line)
		if skip {
			continue
		}
		for _, pr := range probs {
			add(file, pr.Line, "%s", pr.Msg)
		}
		if len(probs) > 0 {
			continue
		}
		p.Set, p.File, p.Index = set, file, len(out)
		if p.Subject == "" {
			p.Subject = filepath.Base(file)
		}
		out = append(out, *p)
	}
	return out
}

// parsed is what Load and Apply need to know about one patch.
type parsed struct {
	files  []*gitdiff.File
	layout []fileLayout         // same order as files, when it could be worked out
	header *gitdiff.PatchHeader // nil when there is no usable header
	date   string               // author date in git's raw format, or ""
}

// parsePatch parses one patch (already split from its file) that starts at
// line first of its file. skip is set for messages that carry no change on
// purpose (cover letters). Problems carry file lines, not File names.
func parsePatch(data []byte, first int) (p *Patch, skip bool, probs []Problem) {
	if first < 1 {
		first = 1
	}
	pp, err := parse(data)
	if err != nil {
		line, msg := gitdiffErrLine(err)
		switch {
		case strings.Contains(msg, "miscounts lines"):
			line = hunkAtOrBefore(data, line)
		case strings.Contains(msg, "invalid line operation") && line > 1 && startsHeader(data, line):
			// A short hunk ran into the next header: blame the short one.
			line = hunkAtOrBefore(data, line-1)
			msg = "malformed patch: hunk has fewer lines than its @@ header says"
		}
		if line > 0 {
			line += first - 1
		} else {
			line = first
		}
		return nil, false, []Problem{{Line: line, Msg: msg}}
	}
	subject, author := "", ""
	if h := pp.header; h != nil {
		subject = h.Title
		if h.Author != nil {
			author = identity(h.Author)
		}
	}
	if len(pp.files) == 0 {
		if coverLetter.MatchString(mailSubject(data)) {
			return nil, true, nil
		}
		return nil, false, []Problem{{Line: first, Msg: "not a patch: no diff found"}}
	}
	if enc := mailEncoding(data); enc != "" {
		probs = append(probs, Problem{Line: first, Msg: fmt.Sprintf("mail body is %s-encoded; git apply needs the decoded text (save it with b4 am, or git mailsplit + git mailinfo)", enc)})
	}
	var paths []string
	seen := map[string]bool{}
	for i, f := range pp.files {
		line := first
		var raw []string
		if i < len(pp.layout) {
			line = pp.layout[i].header + first - 1
			raw = pp.layout[i].rawNames
		}
		names := fileNames(f, pp.layoutOf(i))
		bad := ""
		for _, r := range raw {
			if bad == "" {
				bad = checkRawName(r)
			}
		}
		for _, n := range names {
			if bad == "" {
				bad = checkPath(n)
			}
			if !seen[n] {
				seen[n] = true
				paths = append(paths, n)
			}
		}
		if bad == "" && len(names) > 0 {
			bad = checkSymlink(f, names[len(names)-1])
		}
		if bad != "" { // one problem per file diff is enough to fix it
			probs = append(probs, Problem{Line: line, Msg: bad})
			continue
		}
		if f.IsBinary && f.BinaryFragment == nil {
			probs = append(probs, Problem{Line: line, Msg: fmt.Sprintf("%s: binary patch without data (regenerate with git format-patch --binary)", strings.Join(names, " -> "))})
		}
	}
	if len(probs) > 0 {
		return nil, false, probs
	}
	return &Patch{Subject: subject, Author: author, Paths: paths, Data: data, line: first}, false, nil
}

// parse runs go-gitdiff on one patch and works out where each file and hunk
// is in the text, since go-gitdiff does not record positions.
func parse(data []byte) (*parsed, error) {
	files, preamble, err := gitdiff.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	pp := &parsed{files: files}
	pp.header, pp.date = parseHeader(preamble)
	lay := scanLayout(data, strings.Count(preamble, "\n"))
	if layoutMatches(lay, files) {
		pp.layout = lay
	}
	return pp, nil
}

func (pp *parsed) layoutOf(i int) *fileLayout {
	if i < len(pp.layout) {
		return &pp.layout[i]
	}
	return nil
}

// hunkAtOrBefore returns the line of the "@@" header at or before line.
// go-gitdiff's line for a miscounted hunk is only right when the hunk adds
// or removes nothing, and the header is where the fix goes anyway.
func hunkAtOrBefore(data []byte, line int) int {
	lines := strings.Split(string(data), "\n")
	for i := min(line, len(lines)) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "@@ -") {
			return i + 1
		}
	}
	return line
}

func startsHeader(data []byte, line int) bool {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return false
	}
	l := lines[line-1]
	return strings.HasPrefix(l, "@@ -") || strings.HasPrefix(l, "diff --git ") || strings.HasPrefix(l, "--- ")
}

var gitdiffLine = regexp.MustCompile(`^gitdiff: line (\d+): `)

// gitdiffErrLine splits go-gitdiff's "gitdiff: line N: msg" into N and msg.
func gitdiffErrLine(err error) (int, string) {
	msg := err.Error()
	if m := gitdiffLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, "malformed patch: " + msg[len(m[0]):]
	}
	return 0, "malformed patch: " + msg
}

func identity(id *gitdiff.PatchIdentity) string {
	switch {
	case id.Name != "" && id.Email != "":
		return fmt.Sprintf("%s <%s>", id.Name, id.Email)
	case id.Email != "":
		return "<" + id.Email + ">"
	}
	return id.Name
}

// mailHeader reads the RFC 822 header of a mail-style patch, or nil.
func mailHeader(data []byte) mail.Header {
	lines := bytes.SplitN(data, []byte("\n"), 2)
	body := data
	if mboxFrom.Match(lines[0]) && len(lines) == 2 {
		body = lines[1]
	}
	if !bytes.HasPrefix(body, []byte("From:")) && !bytes.HasPrefix(body, []byte("Subject:")) &&
		!bytes.HasPrefix(body, []byte("Date:")) && !bytes.HasPrefix(body, []byte("Message-I")) {
		return nil
	}
	m, err := mail.ReadMessage(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	return m.Header
}

func mailSubject(data []byte) string {
	if h := mailHeader(data); h != nil {
		return h.Get("Subject")
	}
	return ""
}

// mailEncoding returns a transfer encoding git apply cannot read, or "".
func mailEncoding(data []byte) string {
	h := mailHeader(data)
	if h == nil {
		return ""
	}
	if ct := strings.ToLower(h.Get("Content-Type")); strings.HasPrefix(ct, "multipart/") {
		return "MIME multipart"
	}
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); enc {
	case "quoted-printable", "base64":
		return enc
	}
	return ""
}

// checkPath rejects names that would let a patch write outside the tree or
// into git's own data. git apply refuses most of these too, but only when
// the run gets that far; Load says so up front, with a line number.
func checkPath(name string) string {
	if name == "" {
		return "empty file name"
	}
	if strings.HasPrefix(name, "/") || filepath.IsAbs(name) {
		return fmt.Sprintf("%s: absolute path, outside the kernel tree", name)
	}
	clean := path.Clean(name)
	for _, c := range strings.Split(clean, "/") {
		if c == ".." {
			return fmt.Sprintf("%s: leaves the kernel tree", name)
		}
		if strings.EqualFold(c, ".git") {
			return fmt.Sprintf("%s: writes into .git", name)
		}
	}
	if clean == "." {
		return fmt.Sprintf("%s: names the tree itself", name)
	}
	return ""
}

// checkSymlink rejects a patch that makes a symlink pointing outside the
// tree: applying it is harmless, but the build or a later patch would
// follow it out of the work tree.
func checkSymlink(f *gitdiff.File, name string) string {
	if f.NewMode&0o170000 != 0o120000 || f.IsDelete {
		return ""
	}
	var target strings.Builder
	for _, frag := range f.TextFragments {
		for _, l := range frag.Lines {
			if l.Op == gitdiff.OpAdd {
				target.WriteString(strings.TrimSuffix(l.Line, "\n"))
			}
		}
	}
	t := target.String()
	if t == "" {
		return ""
	}
	if path.IsAbs(t) {
		return fmt.Sprintf("%s: symlink to %s, outside the kernel tree", name, t)
	}
	if j := path.Join(path.Dir(name), t); j == ".." || strings.HasPrefix(j, "../") {
		return fmt.Sprintf("%s: symlink to %s leaves the kernel tree", name, t)
	}
	return ""
}

// checkRawName looks at a traditional (---/+++) name before -p1 strips its
// first component, because "/etc/passwd" and "../x" only look harmless
// afterwards.
func checkRawName(raw string) string {
	if raw == "/dev/null" {
		return ""
	}
	if strings.HasPrefix(raw, "/") {
		return fmt.Sprintf("%s: absolute path, outside the kernel tree", raw)
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return fmt.Sprintf("%s: leaves the kernel tree", raw)
		}
	}
	return ""
}

// fileNames returns the tree paths a file diff touches, old name first.
// go-gitdiff strips a/ b/ from git headers but keeps traditional names as
// written, so those get git apply's default -p1 here.
func fileNames(f *gitdiff.File, lay *fileLayout) []string {
	var names []string
	addName := func(n string) {
		if n == "" || n == "/dev/null" {
			return
		}
		for _, o := range names {
			if o == n {
				return
			}
		}
		names = append(names, n)
	}
	if lay != nil && !lay.git {
		for _, r := range lay.rawNames {
			if r == "/dev/null" {
				continue
			}
			addName(stripP1(r))
		}
		return names
	}
	addName(f.OldName)
	addName(f.NewName)
	return names
}

func stripP1(name string) string {
	name = strings.TrimLeft(name, "/")
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return strings.TrimLeft(name[i+1:], "/")
	}
	return name
}

// Digest is the cache key input for a list of sets: a sha256 over the set
// names and the exact bytes of every patch, in apply order. File names are
// left out on purpose, renaming a patch does not change the tree it builds.
func Digest(sets []*Set) string {
	h := sha256.New()
	fmt.Fprintf(h, "kharness-patch-digest-v1\n%d\n", len(sets))
	for _, s := range sets {
		fmt.Fprintf(h, "set %d %s\n%d\n", len(s.Name), s.Name, len(s.Patches))
		for _, p := range s.Patches {
			fmt.Fprintf(h, "patch %d\n", len(p.Data))
			h.Write(p.Data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
