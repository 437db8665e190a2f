package devloop

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

func TestRunsFor(t *testing.T) {
	tests := []struct {
		p, c float64
		max  int
		want int
	}{
		{1, 0.95, 20, 1},
		{0.5, 0.95, 20, 5}, // 0.5^5 = 3% < 5%
		{0.5, 0.99, 20, 7},
		{0.1, 0.95, 20, 20}, // 29, capped
		{0.3, 0.95, 20, 9},
		{0, 0.95, 20, 20},
	}
	for _, tc := range tests {
		if got := RunsFor(tc.p, tc.c, tc.max); got != tc.want {
			t.Errorf("RunsFor(%v, %v, %d) = %d, want %d", tc.p, tc.c, tc.max, got, tc.want)
		}
	}
}

// cell makes a finished cell with the given test results.
func cell(raw outcome.Outcome, tests ...*results.Test) *results.Cell {
	c := &results.Cell{Tests: tests}
	c.SetOutcome(raw, "", "")
	return c
}

func TestRuleJudge(t *testing.T) {
	wake := func(o outcome.Outcome) *results.Test {
		return &results.Test{Suite: "uffd", Name: "wake-ranges", Outcome: o}
	}
	other := &results.Test{Suite: "uffd", Name: "handshake", Outcome: outcome.KernelCrash, Crash: "WARNING in userfaultfd_api"}
	rule := Rule{Test: "uffd:^wake-ranges$"}
	tests := []struct {
		name string
		rule Rule
		c    *results.Cell
		want string
	}{
		{"named test fails", rule, cell(outcome.TestFail, wake(outcome.TestFail)), Bad},
		{"named test passes, another crashes: good", rule, cell(outcome.KernelCrash, other, wake(outcome.Pass)), Good},
		{"named test never ran", rule, cell(outcome.KernelCrash, other), Skip},
		{"named test blamed by a watchdog", rule, cell(outcome.Timeout, &results.Test{Suite: "uffd", Name: "wake-ranges", Outcome: outcome.Timeout, HostBlamed: true}), Skip},
		{"build failed", rule, cell(outcome.BuildFail), Skip},
		{"infra", Rule{}, cell(outcome.Infra), Skip},
		{"any failure without a test", Rule{}, cell(outcome.TestFail, wake(outcome.TestFail)), Bad},
		{"crash title must match", Rule{Crash: "^BUG"}, cell(outcome.KernelCrash, other), Skip},
	}
	for _, tc := range tests {
		if got, why := tc.rule.Judge(tc.c); got != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, got, why, tc.want)
		}
	}
}

// fakeSteps: positions 0..n; from culprit on, the named test fails with
// probability p; from flaky on, another test crashes half the time.
type fakeSteps struct {
	n, culprit, flaky int
	p                 float64
	rng               *rand.Rand
	runs              map[int]int
}

func (f *fakeSteps) Len() int          { return f.n }
func (f *fakeSteps) Name(i int) string { return fmt.Sprintf("patch %d", i) }
func (f *fakeSteps) Run(_ context.Context, i int, store *results.Store, rc *results.Cell) (string, error) {
	f.runs[i]++
	var tests []*results.Test
	raw := outcome.Pass
	if i >= f.flaky && f.rng.Float64() < 0.5 {
		tests = append(tests, &results.Test{Suite: "uffd", Name: "handshake", Outcome: outcome.KernelCrash, Crash: "WARNING in userfaultfd_api"})
		raw = outcome.KernelCrash
	}
	w := &results.Test{Suite: "uffd", Name: "wake-ranges", Outcome: outcome.Pass}
	if i >= f.culprit && f.rng.Float64() < f.p {
		w.Outcome, raw = outcome.TestFail, outcome.Worst(raw, outcome.TestFail)
	}
	store.Update(func(*results.Run) {
		rc.Tests = append(tests, w)
		rc.SetOutcome(raw, "tests", "")
	})
	return fmt.Sprintf("image-%d", i), nil
}

// TestBisectFindsTheCulpritNotTheFlake: a deterministic-enough mutant at
// patch 5, a flaky crash with another signature from patch 2 on: the
// mutant is named every time, the flaky patch never, with the runs per
// step p asks for.
func TestBisectFindsTheCulpritNotTheFlake(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		f := &fakeSteps{n: 7, culprit: 5, flaky: 2, p: 0.6, rng: rand.New(rand.NewPCG(seed, 7)), runs: map[int]int{}}
		dir := t.TempDir()
		var log bytes.Buffer
		st, err := Bisect(context.Background(), BisectRequest{Steps: f, ResultsDir: filepath.Join(dir, "r"), Good: 0, Bad: 7,
			Rule: Rule{Test: "uffd:^wake-ranges$"}, ProbeRuns: 6, StateFile: filepath.Join(dir, "state.json")}, &log)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, log.String())
		}
		if st.Culprit != 5 {
			t.Errorf("seed %d: culprit %d, want 5 (p %.2f, %d runs per step)\n%s", seed, st.Culprit, st.P, st.RunsPerPos, log.String())
		}
		if st.RunsPerPos != RunsFor(st.P, 0.95, 20) || st.Achieved <= 0 || st.Achieved > 1 {
			t.Errorf("seed %d: runs per step %d for p %.2f, confidence %v", seed, st.RunsPerPos, st.P, st.Achieved)
		}
		var out bytes.Buffer
		st.Report(&out, f)
		if !strings.Contains(out.String(), "first bad: patch 5") || !strings.Contains(out.String(), "confidence:") {
			t.Errorf("report:\n%s", out.String())
		}
	}
}

// TestBisectResumes: a second bisection with the same state file runs
// nothing it already knows.
func TestBisectResumes(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	q := func(f *fakeSteps) BisectRequest {
		return BisectRequest{Steps: f, ResultsDir: filepath.Join(dir, "r"), Good: 0, Bad: 4, Rule: Rule{Test: "uffd:^wake-ranges$"}, StateFile: state}
	}
	f1 := &fakeSteps{n: 4, culprit: 3, flaky: 9, p: 1, rng: rand.New(rand.NewPCG(1, 1)), runs: map[int]int{}}
	st1, err := Bisect(context.Background(), q(f1), &bytes.Buffer{})
	if err != nil || st1.Culprit != 3 {
		t.Fatalf("first: %+v %v", st1, err)
	}
	f2 := &fakeSteps{n: 4, culprit: 3, flaky: 9, p: 1, rng: rand.New(rand.NewPCG(1, 1)), runs: map[int]int{}}
	if _, err := Bisect(context.Background(), q(f2), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range f2.runs {
		total += n
	}
	if total != 0 {
		t.Errorf("the resumed bisection ran %d times: %v", total, f2.runs)
	}
}

func TestBisectBadEndMustReproduce(t *testing.T) {
	f := &fakeSteps{n: 3, culprit: 9, flaky: 9, p: 1, rng: rand.New(rand.NewPCG(1, 1)), runs: map[int]int{}}
	_, err := Bisect(context.Background(), BisectRequest{Steps: f, ResultsDir: t.TempDir(), Good: 0, Bad: 3, Rule: Rule{Test: "uffd:^wake-ranges$"}}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "does not reproduce") {
		t.Errorf("err = %v", err)
	}
}

func TestWarningsAndSymbols(t *testing.T) {
	if k := warningKey("mm/mremap.c:1234:12: warning: 'x' defined but not used [-Wunused-function]"); k != "mm/mremap.c: warning: 'x' defined but not used [-Wunused-function]" {
		t.Errorf("warningKey = %q", k)
	}
	// A kernel cached from a UTF-8 build (CI, 2026-12-07) and one built today.
	utf8 := warningsByFile([]string{"mm/mremap.c:12:13: warning: \u2018kharness_demo_unused\u2019 defined but not used [-Wunused-function]"})
	if !utf8["mm/mremap.c"]["mm/mremap.c: warning: 'kharness_demo_unused' defined but not used [-Wunused-function]"] {
		t.Errorf("gcc's UTF-8 quotes kept: %v", utf8)
	}
	lost := lostSymbols([]byte("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=m\n# CONFIG_D is not set\n"), []byte("CONFIG_A=y\nCONFIG_C=y\n"))
	if strings.Join(lost, ",") != "CONFIG_B=y -> n,CONFIG_C=m -> y" {
		t.Errorf("lostSymbols = %v", lost)
	}
	if got := pickMid(0, 8, map[int]bool{4: true, 5: true}); got != 3 {
		t.Errorf("pickMid = %d", got)
	}
	if got := pickMid(2, 4, map[int]bool{3: true}); got != -1 {
		t.Errorf("pickMid with all skipped = %d", got)
	}
}
