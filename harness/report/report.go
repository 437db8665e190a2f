// Package report is the pipeline's last stage: from the history index it
// writes the nightly report people read, one self-contained index.html
// (html/template, inline CSS and SVG charts rendered in Go: the page makes
// no network request, so it works offline and from an artefact) and a
// summary.md for $GITHUB_STEP_SUMMARY. It shows the latest run's matrix,
// the open regressions with their first failing and last passing runs,
// flaky tests, each test's status strip over the last runs linked to the
// runs' logs, and trends of durations and of the suites' metrics.
package report

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/outcome"
)

// Options shape a report.
type Options struct {
	Title string
	// Runs is how many recent runs the strips and trends show.
	Runs int
	// Out is the directory index.html goes in; links to logs are relative
	// to it.
	Out string
	// CopyLogs copies the shown runs' cell logs under Out/logs, so that
	// the report directory can be published on its own (GitHub Pages).
	CopyLogs bool
	// KnownPath names the known-issues file in the report.
	KnownPath string
	Now       time.Time
	Policy    history.Policy
}

// Data is everything the templates show.
type Data struct {
	Title      string
	Generated  time.Time
	Latest     *history.RunInfo
	Runs       []history.RunInfo // the window, oldest first
	TotalRuns  int
	Matrix     Matrix
	Regs       []RegRow
	Fixed      []RegRow
	Suspects   []Row
	Flaky      []Row
	Strips     []Row // every tracked result, those with trouble first
	Charts     []Chart
	Expired    []Issue
	Stale      []Issue
	KnownRows  []Row
	Counts     map[string]int
	KnownPath  string
	Analysis   *history.Analysis `json:"-"`
	Outcome    outcome.Outcome
	OutcomeCSS string
}

// Matrix is the latest run's cell × suite table.
type Matrix struct {
	Suites []string
	Rows   []MatrixRow
}

// MatrixRow is one cell of the run.
type MatrixRow struct {
	Cell, Target, PatchSets string
	Outcome                 outcome.Outcome
	OutcomeCSS              string
	Reason                  string
	Cells                   []MatrixCell
	Log                     string
}

// MatrixCell is one suite of one cell.
type MatrixCell struct {
	Text, CSS, Title string
}

// Link is a run, linked to its logs where they can be reached.
type Link struct {
	Run  string
	Href string
}

// RegRow is one regression.
type RegRow struct {
	Key                 string
	FirstFail, LastPass Link
	Fixed               Link
	AgeRuns             int
	AgeDays             string
	Reopened            int
	Changed             string
	Message             string
	Strip               []Square
}

// Row is one tracked result with its strip.
type Row struct {
	Key         string
	State       string
	StateCSS    string
	Flaky       bool
	FlipRate    string
	PassOnRetry int
	Note        string
	Strip       []Square
}

// Square is one run of a strip.
type Square struct {
	Run, CSS, Title, Href, Text string
}

// Issue is a known issue that needs looking at.
type Issue struct {
	ID, Where, Reason, Link, Expires string
}

// Chart is one trend, as inline SVG.
type Chart struct {
	ID, Title, Note string
	SVG             string
}

// Build reads the index and lays the report out.
func Build(ctx context.Context, db *history.DB, ks *known.Set, opt Options) (*Data, error) {
	if opt.Runs <= 0 {
		opt.Runs = 20
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	if opt.Policy.Window == 0 {
		opt.Policy = history.DefaultPolicy
	}
	runs, obs, err := db.Load(ctx)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("report: the history index %s holds no run", db.Path)
	}
	cells, err := db.Cells(ctx)
	if err != nil {
		return nil, err
	}
	a := history.Analyze(history.Refs(runs), obs, ks, opt.Policy, opt.Now)
	d := &Data{Title: opt.Title, Generated: opt.Now.UTC(), TotalRuns: len(runs), Analysis: a, KnownPath: opt.KnownPath,
		Counts: map[string]int{}}
	if d.Title == "" {
		d.Title = "kharness nightly"
	}
	window := runs
	if len(window) > opt.Runs {
		window = window[len(window)-opt.Runs:]
	}
	d.Runs = window
	latest := runs[len(runs)-1]
	d.Latest = &latest
	d.Outcome, d.OutcomeCSS = latest.Outcome, outcomeCSS(latest.Outcome)
	l := &linker{out: opt.Out, copy: opt.CopyLogs, runs: map[string]history.RunInfo{}}
	for _, r := range runs {
		l.runs[r.ID] = r
	}
	d.Matrix = matrix(latest, cells, a, l)
	strip := func(t *history.Track) []Square { return squares(t, window, l) }
	for _, t := range a.Regressions() {
		d.Regs = append(d.Regs, regRow(t, runs, l, strip(t)))
	}
	for _, t := range a.In(history.StateFixed) {
		d.Fixed = append(d.Fixed, regRow(t, runs, l, strip(t)))
	}
	for _, t := range a.In(history.StateSuspect) {
		d.Suspects = append(d.Suspects, row(t, strip(t)))
	}
	for _, t := range a.Flaky() {
		d.Flaky = append(d.Flaky, row(t, strip(t)))
	}
	for _, t := range a.In(history.StateKnown) {
		r := row(t, strip(t))
		if t.Known != nil {
			r.Note = t.Known.ID + ": " + t.Known.Reason
		}
		d.KnownRows = append(d.KnownRows, r)
	}
	var trouble, fine []Row
	for _, t := range a.Tracks {
		d.Counts[string(t.State)]++
		r := row(t, strip(t))
		if t.State == history.StatePassing && !t.Flaky {
			fine = append(fine, r)
		} else {
			trouble = append(trouble, r)
		}
	}
	d.Strips = append(trouble, fine...)
	for _, is := range a.ExpiredIssues {
		d.Expired = append(d.Expired, issue(is, opt.KnownPath))
	}
	for _, is := range a.StaleIssues {
		d.Stale = append(d.Stale, issue(is, opt.KnownPath))
	}
	metrics, err := db.Metrics(ctx, metricNames()...)
	if err != nil {
		return nil, err
	}
	if d.Charts, err = trends(window, cells, obs, metrics); err != nil {
		return nil, err
	}
	if err := l.err; err != nil {
		return nil, err
	}
	return d, nil
}

func issue(is *known.Issue, path string) Issue {
	return Issue{ID: is.ID, Where: fmt.Sprintf("%s:%d", path, is.Line), Reason: is.Reason, Link: is.Link,
		Expires: is.Expires.Format(known.DateLayout)}
}

// linker makes links to a run's logs: relative to the report, or to a
// copy under the report's logs/ directory.
type linker struct {
	out  string
	copy bool
	runs map[string]history.RunInfo
	err  error
}

// log is the link to a file of a run's cell ("" when unreachable).
func (l *linker) log(runID, cellDir, file string) string {
	r, ok := l.runs[runID]
	if !ok || r.Dir == "" || cellDir == "" {
		return ""
	}
	src := filepath.Join(r.Dir, cellDir, file)
	if _, err := os.Stat(src); err != nil {
		return ""
	}
	if l.copy {
		rel := filepath.Join("logs", runID, cellDir, file)
		dst := filepath.Join(l.out, rel)
		if _, err := os.Stat(dst); err != nil {
			if err := copyFile(src, dst); err != nil && l.err == nil {
				l.err = fmt.Errorf("report: copy %s: %w", src, err)
			}
		}
		return filepath.ToSlash(rel)
	}
	out, err := filepath.Abs(l.out)
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(out, src)
	if err != nil {
		return ""
	}
	return filepath.ToSlash(rel)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// statusCSS is a status's colour class.
func statusCSS(s history.Status, expected bool) string {
	if expected {
		return "xfail"
	}
	return strings.ToLower(string(s))
}

func outcomeCSS(o outcome.Outcome) string {
	switch o {
	case outcome.Pass:
		return "pass"
	case outcome.ExpectedFail:
		return "xfail"
	case outcome.Infra, outcome.Interrupted, outcome.Incomplete, outcome.ConfigError:
		return "error"
	case outcome.AllSkipped, outcome.Skip:
		return "skip"
	}
	return "fail"
}

func stateCSS(s history.State) string {
	switch s {
	case history.StateRegressed, history.StateFailing:
		return "fail"
	case history.StateSuspect:
		return "miss"
	case history.StateKnown:
		return "xfail"
	case history.StateNew:
		return "skip"
	}
	return "pass"
}

func matrix(latest history.RunInfo, cells []history.CellInfo, a *history.Analysis, l *linker) Matrix {
	var m Matrix
	suites := map[string]bool{}
	type agg struct {
		n                       int
		pass, fail, skip, other int
		worst                   history.Status
		expected                bool
		fails                   []string
	}
	by := map[[2]string]*agg{}
	for _, t := range a.Tracks {
		if t.Key.Suite == history.KernelSuite {
			continue
		}
		for _, o := range t.Obs {
			if o.Run.ID != latest.ID {
				continue
			}
			k := [2]string{t.Key.CellID(), t.Key.Suite}
			g := by[k]
			if g == nil {
				g = &agg{worst: history.Skip}
				by[k] = g
			}
			g.n++
			switch o.Status {
			case history.Pass:
				g.pass++
				g.expected = g.expected || o.Expected
			case history.Fail:
				g.fail++
				g.fails = append(g.fails, t.Key.Test)
			case history.Skip:
				g.skip++
			default:
				g.other++
			}
			g.worst = history.Worst(g.worst, o.Status)
		}
	}
	var rows []history.CellInfo
	for _, c := range cells {
		if c.RunID != latest.ID {
			continue
		}
		rows = append(rows, c)
		for _, s := range c.Suites {
			name, _, _ := strings.Cut(s, ":")
			suites[name] = true
		}
	}
	for s := range suites {
		m.Suites = append(m.Suites, s)
	}
	sort.Strings(m.Suites)
	for _, c := range rows {
		r := MatrixRow{Cell: c.CellID, Target: c.Target, PatchSets: strings.Join(c.PatchSets, " + "), Outcome: c.Outcome,
			OutcomeCSS: outcomeCSS(c.Outcome), Reason: c.Reason, Log: l.log(latest.ID, c.Dir, "console.log")}
		if r.PatchSets == "" {
			r.PatchSets = "(none)"
		}
		for _, s := range m.Suites {
			listed := false
			for _, cs := range c.Suites {
				n, _, _ := strings.Cut(cs, ":")
				listed = listed || n == s
			}
			g := by[[2]string{c.CellID, s}]
			switch {
			case !listed:
				r.Cells = append(r.Cells, MatrixCell{Text: "–", CSS: "none"})
			case g == nil:
				r.Cells = append(r.Cells, MatrixCell{Text: "not run", CSS: outcomeCSS(c.Outcome), Title: firstLine(c.Reason)})
			case g.fail > 0:
				r.Cells = append(r.Cells, MatrixCell{Text: fmt.Sprintf("FAIL %d/%d", g.fail, g.n), CSS: "fail", Title: strings.Join(g.fails, ", ")})
			case g.worst == history.Error || g.worst == history.Miss:
				r.Cells = append(r.Cells, MatrixCell{Text: fmt.Sprintf("%s %d/%d", strings.ToLower(string(g.worst)), g.other, g.n), CSS: statusCSS(g.worst, false)})
			case g.expected:
				r.Cells = append(r.Cells, MatrixCell{Text: fmt.Sprintf("xfail %d/%d", g.pass, g.n), CSS: "xfail", Title: "failed as the cell's expectation says"})
			case g.pass == 0:
				r.Cells = append(r.Cells, MatrixCell{Text: fmt.Sprintf("skip %d/%d", g.skip, g.n), CSS: "skip"})
			case g.skip > 0:
				r.Cells = append(r.Cells, MatrixCell{Text: fmt.Sprintf("pass %d/%d (%d skip)", g.pass, g.n, g.skip), CSS: "pass"})
			default:
				r.Cells = append(r.Cells, MatrixCell{Text: fmt.Sprintf("pass %d/%d", g.pass, g.n), CSS: "pass"})
			}
		}
		m.Rows = append(m.Rows, r)
	}
	return m
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func squares(t *history.Track, window []history.RunInfo, l *linker) []Square {
	at := map[string]history.Obs{}
	for _, o := range t.Obs {
		at[o.Run.ID] = o
	}
	var out []Square
	for _, r := range window {
		o, ok := at[r.ID]
		if !ok {
			out = append(out, Square{Run: r.ID, CSS: "none", Title: r.ID + ": not in this run"})
			continue
		}
		s := Square{Run: r.ID, CSS: statusCSS(o.Status, o.Expected)}
		title := fmt.Sprintf("%s: %s", r.ID, o.Status)
		if o.Expected {
			title += " (expected failure)"
		}
		if o.Retry != "" {
			title += ", retry " + string(o.Retry)
			if o.Status == history.Fail && o.Retry == history.Pass {
				s.Text = "r"
			}
		}
		if o.Known != "" {
			title += ", known issue " + o.Known
			s.Text = "k"
		}
		if o.Verdict != "" {
			title += " — " + o.Verdict
		}
		if m := firstLine(o.Message); m != "" && o.Status != history.Pass {
			title += "\n" + m
		}
		s.Title = title
		s.Href = l.log(r.ID, o.CellDir, "console.log")
		out = append(out, s)
	}
	return out
}

func regRow(t *history.Track, runs []history.RunInfo, l *linker, strip []Square) RegRow {
	r := t.Regression
	link := func(o *history.Obs) Link {
		if o == nil {
			return Link{}
		}
		return Link{Run: o.Run.ID, Href: l.log(o.Run.ID, o.CellDir, "console.log")}
	}
	row := RegRow{Key: t.Key.String(), FirstFail: link(&r.FirstFail), LastPass: link(r.LastPass), Fixed: link(r.Fixed),
		Reopened: r.Reopened, Changed: strings.Join(r.Changed, "; "), Message: firstLine(r.LastFail.Message), Strip: strip}
	last := runs[len(runs)-1]
	row.AgeRuns = last.Seq - r.FirstFail.Run.Seq + 1
	days := last.Started.Sub(r.FirstFail.Run.Started).Hours() / 24
	row.AgeDays = fmt.Sprintf("%.0f d", math.Floor(days))
	if days < 1 {
		row.AgeDays = fmt.Sprintf("%.0f h", days*24)
	}
	return row
}

func row(t *history.Track, strip []Square) Row {
	return Row{Key: t.Key.String(), State: string(t.State), StateCSS: stateCSS(t.State), Flaky: t.Flaky,
		FlipRate: fmt.Sprintf("%.2f", t.FlipRate), PassOnRetry: t.PassOnRetry, Strip: strip}
}
