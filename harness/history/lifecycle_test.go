package history

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/known"
)

var day0 = time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)

// synth makes one key's observations from tokens, one run each:
// P pass, F fail (no retry), FF fail and its retry failed, FP fail and its
// retry passed, E host error, M not run, S skip, C fail with crash "BUG:
// known" (for known issues).
func synth(tokens string) []Obs {
	var out []Obs
	for i, tok := range strings.Fields(tokens) {
		o := Obs{Run: RunRef{ID: fmt.Sprintf("r%02d", i+1), Seq: i + 1, Started: day0.AddDate(0, 0, i)},
			Rev: Revision{PatchStack: fmt.Sprintf("stack%d", i+1)}}
		switch tok {
		case "P":
			o.Status = Pass
		case "F":
			o.Status = Fail
		case "FF":
			o.Status, o.Retry = Fail, Fail
		case "FP":
			o.Status, o.Retry = Fail, Pass
		case "E":
			o.Status = Error
		case "M":
			o.Status = Miss
		case "S":
			o.Status = Skip
		case "C":
			o.Status, o.Crash = Fail, "BUG: known"
		default:
			panic(tok)
		}
		out = append(out, o)
	}
	return out
}

func seqOf(o *Obs) int {
	if o == nil {
		return 0
	}
	return o.Run.Seq
}

func TestLife(t *testing.T) {
	key := Key{Source: "debian:linux-source-6.12", Cell: "patched", Target: "x86_64", Suite: "uffd", Test: "fdinfo"}
	ks, err := known.Parse("known-issues.yaml", []byte(`issues:
  - id: bug-1
    tests: [uffd]
    crash: "^BUG: known"
    reason: being fixed upstream
    expires: 2027-01-01
`))
	if err != nil {
		t.Fatal(err)
	}
	ksFlaky, _ := known.Parse("known-issues.yaml", []byte(`issues:
  - id: flake-1
    tests: ["uffd:fdinfo"]
    reason: host scheduling
    expires: 2027-01-01
    intermittent: true
`))
	ksExpired, _ := known.Parse("known-issues.yaml", []byte(`issues:
  - id: bug-old
    crash: "^BUG: known"
    reason: was being fixed
    expires: 2026-11-15
`))
	now := day0.AddDate(0, 1, 0)
	for _, tc := range []struct {
		name, seq string
		ks        *known.Set
		state     State
		// first failing, last passing, fixing run (0: none)
		firstFail, lastPass, fixed int
		reopened, failRuns         int
		flaky                      bool
		passOnRetry, flips         int
	}{
		{name: "pass", seq: "P P P", state: StatePassing},
		{name: "never passed", seq: "F F", state: StateFailing},
		{name: "first failure is a suspect", seq: "P P F", state: StateSuspect, flips: 1},
		{name: "suspect cleared is flaky", seq: "P F P", state: StatePassing, flaky: true, flips: 2},
		{name: "retry passes: flaky, no regression", seq: "P FP P", state: StatePassing, flaky: true, passOnRetry: 1, flips: 2},
		{name: "retry fails: regression in the same run", seq: "P P FF", state: StateRegressed, firstFail: 3, lastPass: 2, failRuns: 1, flips: 1},
		{name: "suspect confirmed by the next run", seq: "P F F", state: StateRegressed, firstFail: 2, lastPass: 1, failRuns: 2, flips: 1},
		{name: "regression then fix", seq: "P FF F P", state: StateFixed, firstFail: 2, lastPass: 1, fixed: 4, failRuns: 2},
		{name: "fix closes after the window", seq: "P FF P P P P P P", state: StatePassing, firstFail: 2, lastPass: 1, fixed: 3, failRuns: 1},
		{name: "recurrence reopens the same regression", seq: "P FF P P FF", state: StateRegressed, firstFail: 2, lastPass: 1, reopened: 1, failRuns: 2, flips: 1},
		{name: "recurrence confirmed by next run reopens", seq: "P FF P F F", state: StateRegressed, firstFail: 2, lastPass: 1, reopened: 1, failRuns: 3, flips: 1},
		{name: "late recurrence is a new regression", seq: "P FF P P P P P P FF", state: StateRegressed, firstFail: 9, lastPass: 8, failRuns: 1, flips: 1},
		{name: "infra in the middle moves nothing", seq: "P E M S FF E F", state: StateRegressed, firstFail: 5, lastPass: 1, failRuns: 2, flips: 1},
		{name: "infra between suspect and pass", seq: "P F E P", state: StatePassing, flaky: true, flips: 2},
		{name: "fix resets the flake counter", seq: "P F P F P FF P", state: StateFixed, firstFail: 6, lastPass: 5, fixed: 7, failRuns: 1},
		{name: "known issue opens nothing", seq: "P C C", ks: ks, state: StateKnown},
		{name: "known issue then pass", seq: "P C P", ks: ks, state: StatePassing},
		{name: "intermittent known issue is no flip", seq: "P F P F P", ks: ksFlaky, state: StatePassing},
		{name: "expired known issue hides nothing", seq: "P C C", ks: ksExpired, state: StateRegressed, firstFail: 2, lastPass: 1, failRuns: 2, flips: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := Life(key, synth(tc.seq), tc.ks, DefaultPolicy, now)
			if tr.State != tc.state {
				t.Errorf("state %s, want %s", tr.State, tc.state)
			}
			var ff, lp, fx, re, fr int
			if r := tr.Regression; r != nil {
				ff, lp, fx, re, fr = r.FirstFail.Run.Seq, seqOf(r.LastPass), seqOf(r.Fixed), r.Reopened, r.FailRuns
			}
			if ff != tc.firstFail || lp != tc.lastPass || fx != tc.fixed || re != tc.reopened || fr != tc.failRuns {
				t.Errorf("regression first fail %d last pass %d fixed %d reopened %d fail runs %d, want %d %d %d %d %d",
					ff, lp, fx, re, fr, tc.firstFail, tc.lastPass, tc.fixed, tc.reopened, tc.failRuns)
			}
			if tr.Flaky != tc.flaky || tr.PassOnRetry != tc.passOnRetry || tr.Flips != tc.flips {
				t.Errorf("flaky %v pass-on-retry %d flips %d, want %v %d %d", tr.Flaky, tr.PassOnRetry, tr.Flips, tc.flaky, tc.passOnRetry, tc.flips)
			}
			if t.Failed() {
				for _, o := range tr.Obs {
					t.Logf("%s %s retry=%s: %s", o.Run.ID, o.Status, o.Retry, o.Verdict)
				}
			}
		})
	}
}

func TestChangedNamesTheRevision(t *testing.T) {
	tr := Life(Key{Cell: "c", Target: "x86_64", Suite: "s", Test: "t"}, synth("P FF"), nil, DefaultPolicy, day0)
	if got := strings.Join(tr.Regression.Changed, "; "); got != "patch stack stack1 → stack2" {
		t.Errorf("changed = %q", got)
	}
}

func TestAnalyzeKnownIssues(t *testing.T) {
	ks, err := known.Parse("k.yaml", []byte(`issues:
  - {id: used, crash: "^BUG: known", reason: r, expires: 2027-01-01}
  - {id: stale, tests: [cow], reason: r, expires: 2027-01-01}
  - {id: gone, tests: [cow], reason: r, expires: 2026-11-02}
`))
	if err != nil {
		t.Fatal(err)
	}
	obs := synth("P P P P P P P P P P P C")
	var runs []RunRef
	for _, o := range obs {
		runs = append(runs, o.Run)
	}
	a := Analyze(runs, map[Key][]Obs{{Cell: "c", Target: "x86_64", Suite: "uffd", Test: "t"}: obs}, ks, DefaultPolicy, day0.AddDate(0, 0, 12))
	ids := func(is []*known.Issue) string {
		var s []string
		for _, i := range is {
			s = append(s, i.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids(a.StaleIssues); got != "stale" {
		t.Errorf("stale = %q", got)
	}
	if got := ids(a.ExpiredIssues); got != "gone" {
		t.Errorf("expired = %q", got)
	}
	if len(a.In(StateKnown)) != 1 {
		t.Errorf("known tracks: %d", len(a.In(StateKnown)))
	}
}
