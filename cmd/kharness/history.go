package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/outcome"
)

// DefaultHistoryDB is where the history index lives unless --db says.
const DefaultHistoryDB = "results/history.db"

// DefaultKnownIssues is the known-issues file history applies.
const DefaultKnownIssues = "known-issues.yaml"

func historyUsage(w io.Writer) {
	fmt.Fprint(w, `usage: kharness history COMMAND [flags]

  import [--rebuild] SRC...    index run directories, results/ roots, results.json or .json.gz records (idempotent)
  show [TEST...]               open regressions, suspects, flaky tests, known issues; or the history of matching tests
                               (TEST: a glob or substring of "cell.target suite/test")
  compare --base RUN --head RUN
                               regression / fixed / unstable / persistent_fail / new / missing / infra
  gate [--fail-on regression[,new-regression,suspect,flaky,failure]] [--run RUN]
                               exit 0 ok, 1 a policy violated, 2 incomplete (the host failed part of the run)

flags: --db FILE (default results/history.db), --known FILE (default known-issues.yaml), --json
`)
}

// historyFlags are what every history command reads.
type historyFlags struct {
	db, known string
	json      bool
}

func (h *historyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.db, "db", DefaultHistoryDB, "history index (SQLite)")
	fs.StringVar(&h.known, "known", DefaultKnownIssues, "known issues file")
	fs.BoolVar(&h.json, "json", false, "print JSON")
}

// analysis opens the index and runs the life cycle over it.
func (h *historyFlags) analysis(ctx context.Context) (*history.DB, []history.RunInfo, *history.Analysis, error) {
	if _, err := os.Stat(h.db); err != nil {
		return nil, nil, nil, outcome.Errorf(outcome.ConfigError, "history %s: %w (import runs first: kharness history import results/)", h.db, err)
	}
	db, err := history.Open(ctx, h.db)
	if err != nil {
		return nil, nil, nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	ks, err := known.Load(h.known)
	if err != nil {
		db.Close()
		return nil, nil, nil, outcome.Errorf(outcome.ConfigError, "%w", err)
	}
	runs, obs, err := db.Load(ctx)
	if err != nil {
		db.Close()
		return nil, nil, nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	return db, runs, history.Analyze(history.Refs(runs), obs, ks, history.DefaultPolicy, time.Now()), nil
}

func historyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		historyUsage(stderr)
		return outcome.ConfigError.ExitCode()
	}
	ctx, stop := signalContext(stderr, nil)
	defer stop()
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("history "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h historyFlags
	h.register(fs)
	switch sub {
	case "import":
		rebuild := fs.Bool("rebuild", false, "delete the index and import from scratch")
		if err := fs.Parse(rest); err != nil {
			return outcome.ConfigError.ExitCode()
		}
		if fs.NArg() == 0 {
			return fail(stderr, outcome.Errorf(outcome.ConfigError, "history import: name run directories or records"))
		}
		return historyImport(ctx, h, *rebuild, fs.Args(), stdout, stderr)
	case "show":
		runs := fs.Int("runs", 20, "runs to show per test")
		if err := fs.Parse(rest); err != nil {
			return outcome.ConfigError.ExitCode()
		}
		return historyShow(ctx, h, fs.Args(), *runs, stdout, stderr)
	case "compare":
		base := fs.String("base", "", "base run id (default: the run before head)")
		head := fs.String("head", "", "head run id (default: the latest)")
		if err := fs.Parse(rest); err != nil {
			return outcome.ConfigError.ExitCode()
		}
		return historyCompare(ctx, h, *base, *head, stdout, stderr)
	case "gate":
		var failOn []string
		fs.Var(&listFlag{vals: &failOn}, "fail-on", "policies: "+strings.Join(history.GatePolicies, ", "))
		run := fs.String("run", "", "the run to judge (default: the latest)")
		if err := fs.Parse(rest); err != nil {
			return outcome.ConfigError.ExitCode()
		}
		if len(failOn) == 0 {
			failOn = []string{"regression"}
		}
		return historyGate(ctx, h, *run, failOn, stdout, stderr)
	case "help", "-h", "--help":
		historyUsage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "kharness history: unknown command %q\n\n", sub)
	historyUsage(stderr)
	return outcome.ConfigError.ExitCode()
}

func historyImport(ctx context.Context, h historyFlags, rebuild bool, srcs []string, stdout, stderr io.Writer) int {
	start := time.Now()
	var db *history.DB
	var err error
	var ims []history.Imported
	if rebuild {
		db, err = history.Rebuild(ctx, h.db, srcs, nil)
	} else if db, err = history.Open(ctx, h.db); err == nil {
		ims, err = db.Import(ctx, srcs, nil)
	}
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	defer db.Close()
	n := map[string]int{}
	for _, im := range ims {
		n[im.Action]++
		if im.Action != "unchanged" {
			fmt.Fprintf(stdout, "%s %s\n", im.Action, im.Run)
		}
	}
	runs, err := db.Runs(ctx)
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	fmt.Fprintf(stdout, "history %s: %d added, %d replaced, %d unchanged; %d runs (%.2fs)\n", h.db, n["added"], n["replaced"], n["unchanged"], len(runs), time.Since(start).Seconds())
	return 0
}

// matchKey says whether a key matches a show pattern: a glob over its
// "cell.target suite/test" form or a substring of it.
func matchKey(k history.Key, pats []string) bool {
	if len(pats) == 0 {
		return true
	}
	s := k.String()
	for _, p := range pats {
		if ok, _ := path.Match(p, s); ok || strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func age(first history.RunRef, runs []history.RunInfo) string {
	if len(runs) == 0 {
		return ""
	}
	last := runs[len(runs)-1]
	n := last.Seq - first.Seq + 1
	d := last.Started.Sub(first.Started).Round(time.Hour)
	return fmt.Sprintf("%d run(s), %s", n, fmtDays(d))
}

func fmtDays(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return d.String()
}

func historyShow(ctx context.Context, h historyFlags, pats []string, nRuns int, stdout, stderr io.Writer) int {
	db, runs, a, err := h.analysis(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	defer db.Close()
	if len(pats) > 0 {
		var tracks []*history.Track
		for _, t := range a.Tracks {
			if matchKey(t.Key, pats) {
				tracks = append(tracks, t)
			}
		}
		if h.json {
			return writeJSON(stdout, stderr, tracks)
		}
		if len(tracks) == 0 {
			fmt.Fprintf(stderr, "kharness history show: no test matches %s\n", strings.Join(pats, " "))
			return outcome.ConfigError.ExitCode()
		}
		for _, t := range tracks {
			showTrack(stdout, t, runs, nRuns)
		}
		return 0
	}
	if h.json {
		return writeJSON(stdout, stderr, a)
	}
	fmt.Fprintf(stdout, "history %s: %d runs", h.db, len(runs))
	if len(runs) > 0 {
		l := runs[len(runs)-1]
		fmt.Fprintf(stdout, ", latest %s (%s)", l.ID, l.Outcome)
	}
	fmt.Fprintf(stdout, ", %d tracked results\n", len(a.Tracks))
	regs := a.Regressions()
	fmt.Fprintf(stdout, "\nopen regressions: %d\n", len(regs))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if len(regs) > 0 {
		fmt.Fprintln(tw, "  TEST\tFIRST FAIL\tLAST PASS\tAGE\tREOPENED\tCHANGED")
	}
	for _, t := range regs {
		r := t.Regression
		lp := "-"
		if r.LastPass != nil {
			lp = r.LastPass.Run.ID
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", t.Key, r.FirstFail.Run.ID, lp, age(r.FirstFail.Run, runs), r.Reopened, strings.Join(r.Changed, "; "))
	}
	tw.Flush()
	for _, sec := range []struct {
		title string
		ts    []*history.Track
	}{{"suspects (failed once, not confirmed)", a.In(history.StateSuspect)}, {"flaky", a.Flaky()},
		{"fixed (within the recurrence window)", a.In(history.StateFixed)}, {"failing (never passed)", a.In(history.StateFailing)},
		{"known issues", a.In(history.StateKnown)}} {
		if len(sec.ts) == 0 {
			continue
		}
		fmt.Fprintf(stdout, "\n%s: %d\n", sec.title, len(sec.ts))
		for _, t := range sec.ts {
			extra := ""
			switch {
			case t.Flaky:
				extra = fmt.Sprintf("flip rate %.2f, %d passed on retry", t.FlipRate, t.PassOnRetry)
			case t.State == history.StateFixed:
				extra = "fixed in " + t.Regression.Fixed.Run.ID + ", failing since " + t.Regression.FirstFail.Run.ID
			case t.Known != nil:
				extra = t.Known.ID + ": " + t.Known.Reason
			}
			fmt.Fprintf(stdout, "  %s  %s\n", t.Key, extra)
		}
	}
	for _, is := range a.ExpiredIssues {
		fmt.Fprintf(stdout, "\nknown issue %s (%s:%d) expired on %s: renew it or remove it\n", is.ID, h.known, is.Line, is.Expires.Format(known.DateLayout))
	}
	for _, is := range a.StaleIssues {
		fmt.Fprintf(stdout, "\nknown issue %s (%s:%d) matched no failure in the last %d runs: fixed?\n", is.ID, h.known, is.Line, history.DefaultPolicy.StaleRuns)
	}
	return 0
}

func showTrack(w io.Writer, t *history.Track, runs []history.RunInfo, n int) {
	fmt.Fprintf(w, "%s: %s", t.Key, t.State)
	if t.Flaky {
		fmt.Fprintf(w, ", flaky (flip rate %.2f, %d passed on retry)", t.FlipRate, t.PassOnRetry)
	}
	fmt.Fprintln(w)
	if r := t.Regression; r != nil {
		lp := "never"
		if r.LastPass != nil {
			lp = r.LastPass.Run.ID
		}
		fmt.Fprintf(w, "  regression: first failed in %s, last passed in %s", r.FirstFail.Run.ID, lp)
		if r.Fixed != nil {
			fmt.Fprintf(w, ", fixed in %s", r.Fixed.Run.ID)
		} else {
			fmt.Fprintf(w, ", open for %s", age(r.FirstFail.Run, runs))
		}
		if r.Reopened > 0 {
			fmt.Fprintf(w, ", reopened %d time(s)", r.Reopened)
		}
		fmt.Fprintln(w)
		if len(r.Changed) > 0 {
			fmt.Fprintf(w, "  changed between them: %s\n", strings.Join(r.Changed, "; "))
		}
	}
	obs := t.Obs
	if len(obs) > n {
		obs = obs[len(obs)-n:]
	}
	for _, o := range obs {
		st := string(o.Status)
		if o.Retry != "" {
			st += " (retry " + string(o.Retry) + ")"
		}
		if o.Expected {
			st += " (expected failure)"
		}
		msg := line1(o.Message)
		if len(msg) > 100 {
			msg = msg[:97] + "..."
		}
		fmt.Fprintf(w, "  %s  %-22s %-40s %s\n", o.Run.ID, st, o.Verdict, msg)
	}
}

func line1(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	return 0
}

func historyCompare(ctx context.Context, h historyFlags, base, head string, stdout, stderr io.Writer) int {
	db, runs, a, err := h.analysis(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	defer db.Close()
	idx := map[string]int{}
	for i, r := range runs {
		idx[r.ID] = i
	}
	if head == "" && len(runs) > 0 {
		head = runs[len(runs)-1].ID
	}
	hi, ok := idx[head]
	if !ok {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "history compare: no run %q in %s", head, h.db))
	}
	if base == "" {
		if hi == 0 {
			return fail(stderr, outcome.Errorf(outcome.ConfigError, "history compare: %s is the first run: give --base", head))
		}
		base = runs[hi-1].ID
	}
	if _, ok := idx[base]; !ok {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "history compare: no run %q in %s", base, h.db))
	}
	ch := history.Compare(a, base, head)
	if h.json {
		return writeJSON(stdout, stderr, ch)
	}
	fmt.Fprintf(stdout, "compare %s → %s: %d change(s)\n", base, head, len(ch))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, c := range ch {
		b, hd := "-", "-"
		if c.Base != nil {
			b = string(c.Base.Status)
		}
		if c.Head != nil {
			hd = string(c.Head.Status)
			if c.Head.Retry != "" {
				hd += "/retry " + string(c.Head.Retry)
			}
		}
		msg := ""
		if c.Head != nil && c.Head.Status == history.Fail {
			msg = line1(c.Head.Message)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s → %s\t%s\n", c.Kind, c.Key, b, hd, msg)
	}
	tw.Flush()
	return 0
}

func historyGate(ctx context.Context, h historyFlags, run string, failOn []string, stdout, stderr io.Writer) int {
	db, runs, a, err := h.analysis(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	defer db.Close()
	res, err := history.Gate(a, runs, run, failOn)
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "%w", err))
	}
	if h.json {
		writeJSON(stdout, stderr, res)
		return res.Code
	}
	verdict := map[int]string{history.GateOK: "ok", history.GateViolated: "policy violated", history.GateIncomplete: "incomplete"}[res.Code]
	fmt.Fprintf(stdout, "gate %s (fail on %s): %s (exit %d)\n", res.Run, strings.Join(failOn, ","), verdict, res.Code)
	for _, r := range res.Reasons {
		fmt.Fprintf(stdout, "  %s\n", r)
	}
	return res.Code
}
