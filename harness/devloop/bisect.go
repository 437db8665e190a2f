package devloop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

// Rule says what "bad" is. Anything else a run shows (another test
// failing, another crash, a build failure, infra) is never bad: it is
// skipped and retried, so a flaky neighbour cannot send the search astray.
type Rule struct {
	// Test, "suite:regexp", is the test that must fail; with it, a run
	// where that test passed is good whatever else failed.
	Test string `json:"test,omitempty"`
	// Outcomes are the test's (or, without Test, the cell's) outcomes
	// that count as bad; default test-failure and kernel-crash.
	Outcomes []outcome.Outcome `json:"outcomes,omitempty"`
	// Crash, when set, must match the crash title.
	Crash string `json:"crash,omitempty"`
}

// Verdicts of one run.
const (
	Good = "good"
	Bad  = "bad"
	Skip = "skip"
)

// Judge classifies one run of a cell under the rule, with why.
func (r Rule) Judge(c *results.Cell) (string, string) {
	accepted := r.Outcomes
	if len(accepted) == 0 {
		accepted = []outcome.Outcome{outcome.TestFail, outcome.KernelCrash}
	}
	isAccepted := func(o outcome.Outcome) bool {
		for _, a := range accepted {
			if o == a {
				return true
			}
		}
		return false
	}
	var crashRe *regexp.Regexp
	if r.Crash != "" {
		crashRe = regexp.MustCompile(r.Crash) // validated by Validate
	}
	if r.Test == "" {
		switch {
		case c.Raw == outcome.Pass:
			return Good, "passed"
		case isAccepted(c.Raw) && (crashRe == nil || (c.Crash != nil && crashRe.MatchString(c.Crash.Title))):
			return Bad, fmt.Sprintf("%s: %s", c.Raw, c.Reason)
		}
		return Skip, fmt.Sprintf("%s does not match the rule: %s", c.Raw, c.Reason)
	}
	g := guest.ParseSuiteSpec(r.Test)
	re, _ := guest.CompileTests(g.Tests)
	seen := false
	for _, t := range c.Tests {
		if t.Suite != g.Name || (re != nil && !re.MatchString(t.Name)) {
			continue
		}
		seen = true
		if t.HostBlamed || t.Outcome == outcome.NotRun || t.Outcome == outcome.Skip {
			continue
		}
		if isAccepted(t.Outcome) && (crashRe == nil || crashRe.MatchString(t.Crash)) {
			return Bad, fmt.Sprintf("%s/%s %s: %s", t.Suite, t.Name, t.Outcome, firstLine(t.Message))
		}
		if t.Outcome == outcome.Pass {
			return Good, fmt.Sprintf("%s/%s passed", t.Suite, t.Name)
		}
	}
	if !seen {
		return Skip, fmt.Sprintf("%s never ran (%s: %s)", r.Test, c.Outcome, c.Reason)
	}
	return Skip, fmt.Sprintf("%s did not fail for the rule's reason (%s: %s)", r.Test, c.Outcome, c.Reason)
}

// Validate checks the rule's patterns.
func (r Rule) Validate() error {
	if r.Test != "" {
		g := guest.ParseSuiteSpec(r.Test)
		if g.Name == "" || g.Tests == "" {
			return fmt.Errorf("--bad-test %q: want suite:regexp", r.Test)
		}
		if _, err := guest.CompileTests(g.Tests); err != nil {
			return fmt.Errorf("--bad-test: %w", err)
		}
	}
	if r.Crash != "" {
		if _, err := regexp.Compile(r.Crash); err != nil {
			return fmt.Errorf("--bad-crash: %w", err)
		}
	}
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Steps are the positions a bisection walks: 0 (nothing of the series)
// to Len (all of it).
type Steps interface {
	Len() int
	Name(i int) string
	// Run builds position i and runs its tests as cell rc of store,
	// returning the sha256 of the kernel image it booted ("" when none).
	Run(ctx context.Context, i int, store *results.Store, rc *results.Cell) (string, error)
}

// Len, Name and Kernel make a Series a set of bisection steps.
func (s *Series) Name(i int) string {
	if i == 0 {
		return fmt.Sprintf("%s without %s", strings.Join(s.Cell.PatchSets, "+"), s.Set.Name)
	}
	return fmt.Sprintf("%s patch %d: %s", s.Set.Name, i, s.Set.Patches[i-1].Subject)
}

// Run builds the stack with the first i patches and runs the cell's
// suites on it.
func (s *Series) Run(ctx context.Context, i int, store *results.Store, rc *results.Cell) (string, error) {
	return runWalk(ctx, s, i, store, rc)
}

// runWalk builds position i of w and runs the base cell's suites on it as
// cell rc.
func runWalk(ctx context.Context, w Walk, i int, store *results.Store, rc *results.Cell) (string, error) {
	c := w.Base()
	c.Expect = nil
	c.ID, c.Name = rc.ID, rc.Name
	store.Update(func(*results.Run) { rc.Target, rc.PatchSets, rc.Suites = c.Target, c.PatchSets, c.Suites })
	k, err := w.Kernel(ctx, i, c, store.CellDir(rc.ID))
	if err != nil {
		w.Pipeline().Fail(store, rc, err)
		return "", nil
	}
	w.Pipeline().BootCell(ctx, store, c, rc, k)
	k.Release()
	return k.ImageSHA, nil
}

// Step is what the bisection knows of one position.
type Step struct {
	Position int      `json:"position"`
	Name     string   `json:"name"`
	Runs     []string `json:"runs"` // verdicts in order
	Why      []string `json:"why"`
	ImageSHA string   `json:"image_sha256,omitempty"`
	// Verdict is the position's: bad (a run was bad), good (enough good
	// runs, none bad), skip (nothing conclusive).
	Verdict string  `json:"verdict,omitempty"`
	Seconds float64 `json:"seconds"`
}

func (s *Step) count(v string) int {
	n := 0
	for _, r := range s.Runs {
		if r == v {
			n++
		}
	}
	return n
}

// State is a bisection, saved after every run so that it resumes.
type State struct {
	Rule       Rule          `json:"rule"`
	Good       int           `json:"good"`
	Bad        int           `json:"bad"`
	Confidence float64       `json:"target_confidence"`
	P          float64       `json:"reproduction_rate"` // measured at the bad end
	RunsPerPos int           `json:"runs_per_step"`
	Steps      map[int]*Step `json:"steps"`
	Culprit    int           `json:"culprit,omitempty"`
	Achieved   float64       `json:"confidence,omitempty"`
	NoOp       bool          `json:"no_op,omitempty"`
	Done       bool          `json:"done"`
	Message    string        `json:"message,omitempty"`
}

// BisectRequest asks for a bisection.
type BisectRequest struct {
	Steps      Steps
	ResultsDir string  // where the bisection's run directory goes
	Good, Bad  int     // positions, verified before the search
	Rule       Rule    //
	Confidence float64 // target, default 0.95
	MaxRuns    int     // cap on runs per step, default 20
	ProbeRuns  int     // runs at the bad end to measure p, default 4
	StateFile  string  // resumes from it when it exists
}

// RunsFor is how many runs a step needs so that a bad position with
// reproduction rate p shows at least one bad run with probability c:
// n = ceil(ln(1-c)/ln(1-p)), at least 1, capped.
func RunsFor(p, c float64, limit int) int {
	if p >= 1 {
		return 1
	}
	if p <= 0 {
		return limit
	}
	n := int(math.Ceil(math.Log(1-c) / math.Log(1-p)))
	return min(max(n, 1), limit)
}

// Bisect finds the first position between Good and Bad that is bad under
// the rule. Both ends are verified first, the bad end's reproduction rate
// p is measured and sets the runs per step; every run streams to a run
// directory and the state file. The culprit is reported with the
// confidence the good verdicts on the way give (a bad verdict is certain:
// the rule matched).
func Bisect(ctx context.Context, q BisectRequest, log io.Writer) (*State, error) {
	if err := q.Rule.Validate(); err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "%w", err)
	}
	if q.Confidence <= 0 || q.Confidence >= 1 {
		q.Confidence = 0.95
	}
	if q.MaxRuns <= 0 {
		q.MaxRuns = 20
	}
	if q.ProbeRuns <= 0 {
		q.ProbeRuns = 4
	}
	if q.Good < 0 || q.Bad > q.Steps.Len() || q.Good >= q.Bad {
		return nil, outcome.Errorf(outcome.ConfigError, "good %d and bad %d: want 0 <= good < bad <= %d", q.Good, q.Bad, q.Steps.Len())
	}
	st := &State{Rule: q.Rule, Good: q.Good, Bad: q.Bad, Confidence: q.Confidence, Steps: map[int]*Step{}}
	if q.StateFile != "" {
		if b, err := os.ReadFile(q.StateFile); err == nil {
			var old State
			if err := json.Unmarshal(b, &old); err != nil {
				return nil, outcome.Errorf(outcome.ConfigError, "state file %s: %w", q.StateFile, err)
			}
			if old.Good == q.Good && old.Bad == q.Bad && fmt.Sprint(old.Rule) == fmt.Sprint(q.Rule) {
				st = &old
				fmt.Fprintf(log, "bisect: resuming from %s (%d positions known)\n", q.StateFile, len(st.Steps))
			}
		}
	}
	save := func() {
		if q.StateFile == "" {
			return
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		if err := cache.WriteFile(q.StateFile, append(b, '\n')); err != nil {
			fmt.Fprintf(log, "bisect: state: %v\n", err)
		}
	}
	r := &results.Run{ID: results.NewID(time.Now()), Started: time.Now().UTC(), Reason: "bisect"}
	store, err := results.Create(q.ResultsDir, r)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "%w", err)
	}
	defer store.Close()
	step := func(i int) *Step {
		s := st.Steps[i]
		if s == nil {
			s = &Step{Position: i, Name: q.Steps.Name(i)}
			st.Steps[i] = s
		}
		return s
	}
	// once runs position i one more time and records the verdict.
	once := func(i int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		s := step(i)
		start := time.Now()
		defer func() { s.Seconds += time.Since(start).Seconds() }()
		id := fmt.Sprintf("pos%02d-run%02d", i, len(s.Runs)+1)
		rc := &results.Cell{ID: id, Name: id, Dir: "cells/" + id, Tests: []*results.Test{}}
		store.Update(func(r *results.Run) { r.Cells = append(r.Cells, rc) })
		sha, err := q.Steps.Run(ctx, i, store, rc)
		if err != nil {
			return err
		}
		if sha != "" {
			s.ImageSHA = sha
		}
		verdict, why := q.Rule.Judge(rc)
		s.Runs, s.Why = append(s.Runs, verdict), append(s.Why, why)
		fmt.Fprintf(log, "bisect: %s run %d: %s (%s)\n", s.Name, len(s.Runs), verdict, why)
		save()
		return ctx.Err()
	}
	// settle runs position i until one run is bad (that settles it) or
	// want runs are good; skips are retried up to as many again.
	settle := func(i, want int) (*Step, error) {
		s := step(i)
		for attempt := 0; s.count(Bad) == 0 && s.count(Good) < want && attempt < 2*want+2; attempt++ {
			if err := once(i); err != nil {
				return s, err
			}
		}
		switch {
		case s.count(Bad) > 0:
			s.Verdict = Bad
		case s.count(Good) >= want:
			s.Verdict = Good
		default:
			s.Verdict = Skip
		}
		save()
		return s, nil
	}
	// The bad end must reproduce; how often it does (p, over ProbeRuns
	// conclusive runs) sets the runs per step.
	bad := step(q.Bad)
	for attempt := 0; bad.count(Bad)+bad.count(Good) < q.ProbeRuns && attempt < 2*q.ProbeRuns; attempt++ {
		if err := once(q.Bad); err != nil {
			return st, err
		}
	}
	if bad.count(Bad) == 0 {
		bad.Verdict = Skip
		st.Message = fmt.Sprintf("the bad end (%s) does not reproduce: %s", bad.Name, strings.Join(bad.Why, "; "))
		save()
		return st, outcome.Errorf(outcome.ConfigError, "%s", st.Message)
	}
	bad.Verdict = Bad
	conclusive := bad.count(Bad) + bad.count(Good)
	st.P = float64(bad.count(Bad)) / float64(conclusive)
	st.RunsPerPos = RunsFor(st.P, q.Confidence, q.MaxRuns)
	fmt.Fprintf(log, "bisect: the bad end fails %d of %d conclusive runs (p = %.2f): %d run(s) per step for %.0f%% confidence\n",
		bad.count(Bad), conclusive, st.P, st.RunsPerPos, 100*q.Confidence)
	good, err := settle(q.Good, st.RunsPerPos)
	if err != nil {
		return st, err
	}
	if good.Verdict != Good {
		st.Message = fmt.Sprintf("the good end (%s) is not good: %s", good.Name, strings.Join(good.Why, "; "))
		save()
		return st, outcome.Errorf(outcome.ConfigError, "%s", st.Message)
	}
	lo, hi := q.Good, q.Bad
	skipped := map[int]bool{}
	for hi-lo > 1 && ctx.Err() == nil {
		mid := pickMid(lo, hi, skipped)
		if mid < 0 {
			st.Message = fmt.Sprintf("every position between %d and %d was inconclusive: the culprit is one of them", lo+1, hi)
			break
		}
		s, err := settle(mid, st.RunsPerPos)
		if err != nil {
			return st, err
		}
		switch s.Verdict {
		case Bad:
			hi = mid
		case Good:
			lo = mid
		default:
			skipped[mid] = true
		}
	}
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	st.Culprit = hi
	st.Achieved = 1
	for _, s := range st.Steps {
		if s.Verdict == Good {
			st.Achieved *= 1 - math.Pow(1-st.P, float64(s.count(Good)))
		}
	}
	if prev, ok := st.Steps[hi-1]; ok && prev.ImageSHA != "" && prev.ImageSHA == st.Steps[hi].ImageSHA {
		st.NoOp = true
	}
	st.Done = true
	save()
	return st, nil
}

// pickMid chooses the next position to evaluate between lo and hi,
// avoiding ones already found inconclusive; -1 when none is left.
func pickMid(lo, hi int, skipped map[int]bool) int {
	mid := (lo + hi) / 2
	for d := 0; d < hi-lo; d++ {
		for _, c := range []int{mid + d, mid - d} {
			if c > lo && c < hi && !skipped[c] {
				return c
			}
		}
	}
	return -1
}

// Report prints the outcome of a bisection.
func (st *State) Report(w io.Writer, steps Steps) {
	fmt.Fprintf(w, "\nbisect: rule %s; bad end reproduces with p = %.2f; %d run(s) per step\n", st.ruleString(), st.P, st.RunsPerPos)
	for i := 0; i <= steps.Len(); i++ {
		s, ok := st.Steps[i]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %-4s %2d runs (%d bad, %d good, %d skip) %5.0fs  %s\n", s.Verdict, len(s.Runs), s.count(Bad), s.count(Good), s.count(Skip), s.Seconds, s.Name)
	}
	if st.Done {
		fmt.Fprintf(w, "first bad: %s\nconfidence: %.1f%% (target %.0f%%)\n", steps.Name(st.Culprit), 100*st.Achieved, 100*st.Confidence)
		if st.NoOp {
			fmt.Fprintln(w, "note: its kernel image is byte-identical to its parent's: this patch cannot change the kernel; the failure is flaky or lies elsewhere")
		}
	}
	if st.Message != "" {
		fmt.Fprintln(w, st.Message)
	}
}

func (st *State) ruleString() string {
	var parts []string
	if st.Rule.Test != "" {
		parts = append(parts, "test "+st.Rule.Test)
	}
	if len(st.Rule.Outcomes) > 0 {
		parts = append(parts, fmt.Sprint(st.Rule.Outcomes))
	}
	if st.Rule.Crash != "" {
		parts = append(parts, "crash ~ "+st.Rule.Crash)
	}
	if len(parts) == 0 {
		return "any test failure or crash"
	}
	return strings.Join(parts, ", ")
}
