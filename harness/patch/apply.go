package patch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bluekeyes/go-gitdiff/gitdiff"

	gitrun "github.com/kharness/kharness/harness/internal/git"
	"github.com/kharness/kharness/harness/outcome"
)

// ApplyError is returned (wrapped as outcome.PatchFail) when a patch does not apply.
type ApplyError struct {
	Set, PatchFile string
	PatchIndex     int
	Subject        string
	File           string // kernel file that failed, e.g. "mm/highmem.c"
	Hunk           int    // 1-based hunk number within that file's diff
	HunkHeader     string // "@@ -620,7 +620,7 @@ void kunmap_local_indexed(...)"
	HunkText       string // the hunk body
	Line           int    // line in the patch file where that hunk starts
	AlreadyApplied bool   // the patch reverse-applies cleanly: it is already in the tree
	Output         string // git's own message
}

func (e *ApplyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "patch %s/%s (#%d %q)", e.Set, filepath.Base(e.PatchFile), e.PatchIndex, e.Subject)
	if e.AlreadyApplied {
		fmt.Fprintf(&b, " is already applied to the tree (%s)", e.PatchFile)
		return b.String()
	}
	b.WriteString(" does not apply")
	if e.File != "" {
		fmt.Fprintf(&b, ": %s", e.File)
	}
	if e.Hunk > 0 {
		fmt.Fprintf(&b, " hunk #%d", e.Hunk)
		if e.Line > 0 {
			fmt.Fprintf(&b, " at %s:%d", e.PatchFile, e.Line)
		}
		fmt.Fprintf(&b, "\n%s\n%s", e.HunkHeader, strings.TrimRight(e.HunkText, "\n"))
	} else {
		fmt.Fprintf(&b, " (%s)", e.PatchFile)
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		b.WriteString("\ngit apply:\n  ")
		b.WriteString(strings.ReplaceAll(out, "\n", "\n  "))
	}
	return b.String()
}

// Identity and dates used when a patch has no mail header. The date is a
// constant so the same patches on the same base always give the same
// commit ids, which makes trees comparable across runs and hosts.
const (
	defaultName  = gitrun.Name
	defaultEmail = gitrun.Email
	defaultDate  = gitrun.Date
)

// Apply applies the sets in order to the git work tree at dir (a checkout whose HEAD is the pristine base),
// committing each patch as its own commit (author/subject from the header when present, else a generated
// one) so that `git log` in the tree shows what was applied. It stops at the first failure.
//
// Each patch is tried with `git apply --3way --index` when it carries blob
// ids (so a patch for a slightly different base can still merge), else with
// plain `git apply --index`. A patch that fails leaves no trace: the tree is
// reset to the last good commit, so patches before it stay committed. dir
// must be the top of its own work tree and have no local changes to tracked
// files. Progress and git's messages go to log (may be nil).
//
// Errors: *ApplyError wrapped as outcome.PatchFail when a patch does not
// apply or is already in the tree; outcome.Interrupted when ctx is
// cancelled; anything else (no git, not a repository) is infrastructure.
func Apply(ctx context.Context, dir string, sets []*Set, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	if err := ctx.Err(); err != nil {
		return ctxErr(err)
	}
	g, err := newGit(ctx, dir, log)
	if err != nil {
		return err
	}
	for _, s := range sets {
		for i := range s.Patches {
			p := s.Patches[i]
			if p.Set == "" {
				p.Set = s.Name
			}
			if err := ctx.Err(); err != nil {
				return ctxErr(err)
			}
			if err := g.apply(ctx, &p); err != nil {
				return err
			}
		}
	}
	return nil
}

func ctxErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return &outcome.Error{Outcome: outcome.Interrupted, Err: fmt.Errorf("applying patches: %w", err)}
	}
	return fmt.Errorf("applying patches: %w", err)
}

// gitTree runs git in one work tree with a fixed identity and environment.
type gitTree struct {
	dir string
	log io.Writer
}

func newGit(ctx context.Context, dir string, log io.Writer) (*gitTree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	g := &gitTree{dir: abs, log: log}
	top, err := g.run(ctx, nil, nil, "rev-parse", "--show-toplevel")
	if err != nil && ctx.Err() != nil {
		return nil, ctxErr(ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("patch: %s is not a git work tree: %v: %s", dir, err, strings.TrimSpace(top))
	}
	top = strings.TrimSpace(top)
	if real, err := filepath.EvalSymlinks(top); err == nil {
		top = real
	}
	// reset --hard acts on the whole work tree: refuse to run anywhere but
	// at its top, so a wrong dir can never reset someone else's checkout.
	if top != abs {
		return nil, fmt.Errorf("patch: %s is inside the work tree %s, not its top", dir, top)
	}
	if out, err := g.run(ctx, nil, nil, "rev-parse", "--verify", "-q", "HEAD^{commit}"); err != nil {
		return nil, fmt.Errorf("patch: %s has no HEAD commit to apply on: %v %s", dir, err, strings.TrimSpace(out))
	}
	// git apply --index needs the index to match the files it touches, and
	// local edits would end up in the first patch's commit.
	g.run(ctx, nil, nil, "update-index", "-q", "--refresh")
	if out, err := g.run(ctx, nil, nil, "diff-index", "--name-only", "HEAD", "--"); err != nil || strings.TrimSpace(out) != "" {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx.Err())
		}
		return nil, fmt.Errorf("patch: %s has local changes to tracked files, reset it to the base first: %v\n%s", dir, err, firstLines(out, 10))
	}
	return g, nil
}

// run runs git in the tree with stdin and extra environment, returning its
// combined output (package internal/git: the one git runner).
func (g *gitTree) run(ctx context.Context, stdin []byte, env []string, args ...string) (string, error) {
	return gitrun.Run(ctx, g.dir, gitrun.Opts{Stdin: stdin, Env: env}, args...)
}

// failed reports whether err means git ran and said no, as opposed to git
// not running at all.
func failed(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}

func (g *gitTree) logf(format string, args ...any) { fmt.Fprintf(g.log, format, args...) }

func (g *gitTree) logOutput(out string) {
	if out = strings.TrimSpace(out); out != "" {
		g.logf("    %s\n", strings.ReplaceAll(out, "\n", "\n    "))
	}
}

// apply applies and commits one patch.
func (g *gitTree) apply(ctx context.Context, p *Patch) error {
	pp, err := parse(p.Data)
	if err != nil {
		line, msg := gitdiffErrLine(err)
		return outcome.Errorf(outcome.PatchFail, "patch %s/%s (#%d): %s:%d: %s", p.Set, filepath.Base(p.File), p.Index, p.File, line+startLine(p)-1, msg)
	}
	name := fmt.Sprintf("%s/%s #%d %q", p.Set, filepath.Base(p.File), p.Index, p.Subject)
	threeWay := hasBlobIDs(pp.files)
	args := []string{"apply", "--index", "--whitespace=warn"}
	how := "plain"
	if threeWay {
		args = append(args, "--3way")
		how = "3-way"
	}
	g.logf("patch: applying %s (%s)\n", name, how)
	out, err := g.run(ctx, p.Data, nil, args...)
	g.logOutput(out)
	outputs := out
	if err != nil && threeWay && ctx.Err() == nil && failed(err) && strings.Contains(out, "with conflicts") {
		// A conflicting 3-way merge leaves markers behind; undo it and
		// let direct application have a go, which also names the hunk.
		// (When the blobs are missing git already fell back by itself.)
		if cerr := g.cleanup(ctx, pp.paths()); cerr != nil {
			return cerr
		}
		g.logf("patch: 3-way merge failed, trying direct application\n")
		out, err = g.run(ctx, p.Data, nil, "apply", "--index", "--whitespace=warn")
		g.logOutput(out)
		outputs = strings.TrimSpace(outputs) + "\n" + out
	}
	if err != nil {
		if cerr := g.cleanup(ctx, pp.paths()); cerr != nil {
			return cerr
		}
		if ctx.Err() != nil {
			return ctxErr(ctx.Err())
		}
		if !failed(err) {
			return fmt.Errorf("patch: running git apply: %w", err)
		}
		return &outcome.Error{Outcome: outcome.PatchFail, Err: g.diagnose(ctx, p, pp, strings.TrimSpace(outputs))}
	}

	// A 3-way apply of a change the tree already has merges to nothing.
	if out, err := g.run(ctx, nil, nil, "diff", "--cached", "--quiet"); err == nil {
		g.logf("patch: %s changes nothing: already applied\n", name)
		e := newApplyError(p)
		e.AlreadyApplied, e.Output = true, strings.TrimSpace(outputs)
		return &outcome.Error{Outcome: outcome.PatchFail, Err: e}
	} else if !failed(err) || ctx.Err() != nil {
		g.cleanup(ctx, pp.paths())
		if ctx.Err() != nil {
			return ctxErr(ctx.Err())
		}
		return fmt.Errorf("patch: git diff --cached: %w: %s", err, out)
	}

	msg, env := commitInfo(p, pp)
	out, err = g.run(ctx, []byte(msg), env, "commit", "-q", "--no-verify", "--cleanup=whitespace", "-F", "-")
	if err != nil {
		g.cleanup(ctx, pp.paths())
		if ctx.Err() != nil {
			return ctxErr(ctx.Err())
		}
		return fmt.Errorf("patch: committing %s: %w: %s", name, err, strings.TrimSpace(out))
	}
	return nil
}

// cleanup throws away a failed attempt: the index and tracked files go back
// to HEAD and files the patch created are removed. git clean is limited to
// the patch's own paths so nothing else in the tree (build output, local
// files) is ever deleted. It runs even when ctx is already cancelled.
func (g *gitTree) cleanup(ctx context.Context, paths []string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if out, err := g.run(cctx, nil, nil, "reset", "-q", "--hard", "HEAD"); err != nil {
		return fmt.Errorf("patch: git reset --hard in %s: %w: %s", g.dir, err, strings.TrimSpace(out))
	}
	var safe []string
	for _, p := range paths {
		if checkPath(p) == "" {
			safe = append(safe, p)
		}
	}
	if len(safe) == 0 {
		return nil
	}
	args := append([]string{"--literal-pathspecs", "clean", "-fdq", "--"}, safe...)
	if out, err := g.run(cctx, nil, nil, args...); err != nil {
		return fmt.Errorf("patch: git clean in %s: %w: %s", g.dir, err, strings.TrimSpace(out))
	}
	return nil
}

// paths lists the tree paths of every file diff; it is worked out from
// Data rather than taken from Patch.Paths so cleanup also covers patches
// that callers built themselves.
func (pp *parsed) paths() []string {
	var out []string
	for i, f := range pp.files {
		out = append(out, fileNames(f, pp.layoutOf(i))...)
	}
	return out
}

func newApplyError(p *Patch) *ApplyError {
	return &ApplyError{Set: p.Set, PatchFile: p.File, PatchIndex: p.Index, Subject: p.Subject}
}

var (
	gitPatchFailed = regexp.MustCompile(`(?m)^error: patch failed: (.+):(\d+)$`)
	gitFileError   = regexp.MustCompile(`(?m)^error: (.+?): (?:does not exist in index|already exists in (?:index|working directory)|does not match index|No such file or directory|patch does not apply|does not exist)$`)
)

// diagnose turns a failed apply into an ApplyError that names the file and
// hunk. The tree is clean (HEAD) when it is called.
func (g *gitTree) diagnose(ctx context.Context, p *Patch, pp *parsed, output string) *ApplyError {
	e := newApplyError(p)
	e.Output = output
	if _, err := g.run(ctx, p.Data, nil, "apply", "--check", "--reverse"); err == nil {
		e.AlreadyApplied = true
		return e
	}
	if fi, hi, name, ok := gitFailedHunk(pp, output); ok {
		fillHunk(e, p, pp, fi, hi, name)
		return e
	}
	only := ""
	if m := gitFileError.FindStringSubmatch(output); m != nil {
		only = m[1]
	} else if m := gitPatchFailed.FindStringSubmatch(output); m != nil {
		only = m[1]
	}
	if fi, hi, name, ok := checkHunks(g.dir, pp, only); ok {
		e.File = name
		if hi >= 0 {
			fillHunk(e, p, pp, fi, hi, name)
		}
		return e
	}
	e.File = only
	return e
}

// gitFailedHunk maps git's "error: patch failed: mm/highmem.c:629" to the
// hunk: git prints the old start line from the hunk's own header.
func gitFailedHunk(pp *parsed, output string) (fi, hi int, name string, ok bool) {
	m := gitPatchFailed.FindStringSubmatch(output)
	if m == nil {
		return 0, 0, "", false
	}
	line, _ := strconv.ParseInt(m[2], 10, 64)
	for fi, f := range pp.files {
		if !hasName(f, pp.layoutOf(fi), m[1]) {
			continue
		}
		for hi, fr := range f.TextFragments {
			if fr.OldPosition == line {
				return fi, hi, m[1], true
			}
		}
	}
	return 0, 0, "", false
}

func fillHunk(e *ApplyError, p *Patch, pp *parsed, fi, hi int, name string) {
	e.File, e.Hunk = name, hi+1
	if lay := pp.layoutOf(fi); lay != nil {
		h := lay.hunks[hi]
		e.HunkHeader, e.HunkText, e.Line = h.header, h.body, h.line+startLine(p)-1
		return
	}
	fr := pp.files[fi].TextFragments[hi]
	e.HunkHeader = strings.TrimRight(fr.Header(), "\n")
	_, e.HunkText, _ = strings.Cut(fr.String(), "\n")
}

func startLine(p *Patch) int {
	if p.line < 1 {
		return 1
	}
	return p.line
}

func hasName(f *gitdiff.File, lay *fileLayout, name string) bool {
	for _, n := range fileNames(f, lay) {
		if n == name {
			return true
		}
	}
	return false
}

// hasBlobIDs reports whether the patch carries "index" lines, without which
// git apply --3way has nothing to merge from.
func hasBlobIDs(files []*gitdiff.File) bool {
	for _, f := range files {
		if f.OldOIDPrefix != "" && strings.Trim(f.OldOIDPrefix, "0") != "" {
			return true
		}
	}
	return false
}

// checkHunks finds the first file/hunk of the patch that does not fit the
// files in dir, trying each hunk at its position and then further away like
// git does (exact context, any offset). It is used when git does not say
// which hunk failed, e.g. after a 3-way conflict or a missing file. hi is -1
// when the whole file is the problem (missing, or created but existing).
func checkHunks(dir string, pp *parsed, only string) (fi, hi int, name string, ok bool) {
	for fi, f := range pp.files {
		lay := pp.layoutOf(fi)
		names := fileNames(f, lay)
		if len(names) == 0 || (only != "" && !hasName(f, lay, only)) {
			continue
		}
		name := names[0]
		if checkPath(name) != "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if f.IsNew {
			if err == nil {
				return fi, -1, name, true
			}
			continue
		}
		if err != nil {
			return fi, -1, name, true
		}
		if h := firstBadHunk(string(data), f.TextFragments); h >= 0 {
			return fi, h, name, true
		}
	}
	return 0, 0, "", false
}

// firstBadHunk applies fragments to content in memory and returns the
// index of the first one whose old lines are nowhere in the file, or -1.
func firstBadHunk(content string, frags []*gitdiff.TextFragment) int {
	lines := strings.SplitAfter(content, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	delta := 0
	for k, fr := range frags {
		var old, repl []string
		for _, l := range fr.Lines {
			if l.Old() {
				old = append(old, l.Line)
			}
			if l.New() {
				repl = append(repl, l.Line)
			}
		}
		o := int(fr.OldPosition) - 1
		if fr.OldLines == 0 {
			o = int(fr.OldPosition)
		}
		want := o + delta
		pos := findBlock(lines, old, want)
		if pos < 0 {
			return k
		}
		lines = append(lines[:pos:pos], append(repl, lines[pos+len(old):]...)...)
		delta += pos - want + len(repl) - len(old)
	}
	return -1
}

func findBlock(lines, block []string, want int) int {
	match := func(at int) bool {
		if at < 0 || at+len(block) > len(lines) {
			return false
		}
		for i, b := range block {
			if lines[at+i] != b {
				return false
			}
		}
		return true
	}
	want = max(0, min(want, len(lines)))
	for d := 0; want-d >= 0 || want+d <= len(lines); d++ {
		if match(want - d) {
			return want - d
		}
		if d > 0 && match(want+d) {
			return want + d
		}
	}
	return -1
}

// commitInfo builds the commit message and the author/committer
// environment. Dates come from the patch (or a constant) and the committer
// is fixed, so commit ids depend only on the base and the patches.
func commitInfo(p *Patch, pp *parsed) (string, []string) {
	h := pp.header
	trailer := fmt.Sprintf("Kharness-Patch: %s/%s #%d", p.Set, filepath.Base(p.File), p.Index)
	var msg string
	if h != nil && h.Title != "" {
		msg = h.Message()
	} else {
		msg = fmt.Sprintf("%s: apply %s\n\nThe patch has no mail header; kharness generated this message.", p.Set, filepath.Base(p.File))
	}
	msg = strings.TrimRight(msg, "\n")
	if last := msg[strings.LastIndex(msg, "\n")+1:]; trailerLine.MatchString(last) && strings.Contains(msg, "\n\n") {
		msg += "\n" + trailer + "\n"
	} else {
		msg += "\n\n" + trailer + "\n"
	}
	date := defaultDate
	if pp.date != "" {
		date = pp.date
	}
	name, email := defaultName, defaultEmail
	if h != nil {
		if h.Author != nil && (h.Author.Name != "" || h.Author.Email != "") {
			name, email = h.Author.Name, h.Author.Email
			if name == "" {
				name = email
			}
		}
	}
	return msg, []string{
		"GIT_AUTHOR_NAME=" + name, "GIT_AUTHOR_EMAIL=" + email, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_DATE=" + date,
	}
}

var trailerLine = regexp.MustCompile(`^[A-Za-z0-9-]+: `)

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}
