package history

import (
	"sort"
	"time"

	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/outcome"
)

// RunRef names a run in history.
type RunRef struct {
	ID      string    `json:"id"`
	Seq     int       `json:"seq"` // position in run order, from 1
	Started time.Time `json:"started"`
}

// Revision is what a run tested on a line: the analogue of a commit.
type Revision struct {
	SourceID      string `json:"source_id,omitempty"`
	KernelVersion string `json:"kernel_version,omitempty"`
	PatchStack    string `json:"patch_stack,omitempty"`
	KconfigSHA    string `json:"kconfig_sha256,omitempty"`
}

// Obs is one run's result for one key.
type Obs struct {
	Run      RunRef          `json:"run"`
	Status   Status          `json:"status"`
	Outcome  outcome.Outcome `json:"outcome"`
	Expected bool            `json:"expected,omitempty"` // failed as the cell's expectation says
	// Retry is the status of the second attempt in the same run, if any.
	Retry      Status   `json:"retry,omitempty"`
	Message    string   `json:"message,omitempty"`
	Crash      string   `json:"crash,omitempty"`
	DurationMS int64    `json:"duration_ms"`
	Rev        Revision `json:"revision"`
	// RunDir and CellDir locate the run's logs (CellDir relative to RunDir).
	RunDir  string `json:"run_dir,omitempty"`
	CellDir string `json:"cell_dir,omitempty"`
	// Known is the known issue that matched this failure, if any.
	Known string `json:"known,omitempty"`
	// Verdict is what this observation did to the life cycle (Step).
	Verdict string `json:"verdict,omitempty"`
}

// State is where a key is in its life cycle.
type State string

// The states.
const (
	StateNew       State = "new"       // nothing decisive yet
	StatePassing   State = "passing"   // last decisive result a pass
	StateSuspect   State = "suspect"   // failed once after passing, not yet confirmed
	StateRegressed State = "regressed" // failure confirmed after a pass: a regression is open
	StateFixed     State = "fixed"     // passing again after a regression, still within the recurrence window
	StateFailing   State = "failing"   // has never passed
	StateKnown     State = "known"     // failing, and a known issue says why
)

// Policy holds the life cycle's windows.
type Policy struct {
	// Window is the number of recent observations flakiness looks at.
	Window int
	// Recur is how many runs after a fix a failure reopens the same
	// regression instead of opening a new one.
	Recur int
	// FlakyFlips is how many pass/fail changes in the window, without a
	// fix between them, make a key flaky.
	FlakyFlips int
	// StaleRuns: a known issue that matched nothing in this many runs is
	// reported as stale.
	StaleRuns int
}

// DefaultPolicy is the nightly's.
var DefaultPolicy = Policy{Window: 20, Recur: 5, FlakyFlips: 2, StaleRuns: 10}

// Regression is a failure confirmed after a pass, from its first failing
// run to its fix.
type Regression struct {
	Key       Key      `json:"key"`
	LastPass  *Obs     `json:"last_pass,omitempty"` // the last passing run before the first failure
	FirstFail Obs      `json:"first_fail"`
	LastFail  Obs      `json:"last_fail"`
	Fixed     *Obs     `json:"fixed,omitempty"` // the first passing run after it
	FailRuns  int      `json:"fail_runs"`       // runs it failed in
	Reopened  int      `json:"reopened"`        // recurrences within the window after a fix
	Changed   []string `json:"changed,omitempty"`
}

// Open says whether the regression is still failing.
func (r *Regression) Open() bool { return r.Fixed == nil }

// Track is one key's history and where it stands.
type Track struct {
	Key   Key   `json:"key"`
	State State `json:"state"`
	Obs   []Obs `json:"obs"` // in run order
	// Regression is the open regression, or the last one fixed.
	Regression *Regression `json:"regression,omitempty"`
	// Flips counts pass/fail changes among the window's decisive results
	// since the last fix; PassOnRetry the failures whose retry passed.
	Flips       int     `json:"flips"`
	FlipRate    float64 `json:"flip_rate"`
	PassOnRetry int     `json:"pass_on_retry"`
	Flaky       bool    `json:"flaky"`
	// Known is the known issue that matched the last failure.
	Known *known.Issue `json:"-"`
}

// Last is the latest observation.
func (t *Track) Last() Obs { return t.Obs[len(t.Obs)-1] }

// Life runs the life cycle of one key over its observations (in run
// order): suspects are confirmed by their retry in the same run or by the
// next run's failure; a pass after a regression fixes it and resets the
// flake counters; a confirmed failure within pol.Recur runs of the fix
// reopens it. Failures a known issue describes open nothing: a
// non-intermittent one puts the key in state known, an intermittent one
// is neither a pass nor a failure.
func Life(key Key, obs []Obs, ks *known.Set, pol Policy, now time.Time) *Track {
	t := &Track{Key: key, State: StateNew, Obs: obs}
	var lastPass, pending *Obs
	fixedAt := 0 // index in obs of the last fix: flake counters start there
	// reopenable: a fix less than pol.Recur decisive runs ago, which a
	// confirmed failure reopens.
	reopenable, sinceFix := false, 0
	for i := range obs {
		o := &t.Obs[i]
		if o.Status == Fail {
			if is := ks.Match(known.Subject{Suite: key.Suite, Test: key.Test, Target: key.Target, Cell: key.Cell, Crash: o.Crash}, now); is != nil {
				o.Known, t.Known = is.ID, is
				if is.Intermittent {
					o.Verdict = "known intermittent: no change"
					continue
				}
				o.Verdict = "known issue " + is.ID
				t.State = StateKnown
				continue
			}
		}
		if !o.Status.Decisive() {
			o.Verdict = "no change (" + string(o.Status) + ")"
			continue
		}
		if reopenable {
			sinceFix++
		}
		if o.Status == Pass {
			switch {
			case t.State == StateRegressed:
				o.Verdict = "fixed"
				cp := *o
				t.Regression.Fixed = &cp
				t.State, fixedAt, reopenable, sinceFix = StateFixed, i, true, 0
			case reopenable && sinceFix >= pol.Recur:
				t.State, reopenable = StatePassing, false
				o.Verdict = "passing: regression closed"
			case reopenable:
				if t.State == StateSuspect {
					o.Verdict = "suspect cleared: passed again"
				}
				t.State = StateFixed
			default:
				if t.State == StateSuspect {
					o.Verdict = "suspect cleared: passed again"
				}
				t.State = StatePassing
			}
			pending = nil
			cp := *o
			lastPass = &cp
			continue
		}
		// A failure.
		if o.Retry == Pass {
			o.Verdict = "passed on retry: flaky, not a regression"
			continue
		}
		confirmed := o.Retry == Fail
		switch t.State {
		case StateRegressed:
			t.Regression.LastFail = *o
			t.Regression.FailRuns++
			o.Verdict = "still failing"
		case StateSuspect:
			t.open(pending, lastPass, reopenable)
			t.Regression.LastFail = *o
			t.Regression.FailRuns++
			o.Verdict = "regressed: failed again"
			pending, reopenable = nil, false
		default:
			if lastPass == nil {
				t.State = StateFailing
				o.Verdict = "failing: never passed"
				continue
			}
			if !confirmed {
				cp := *o
				pending = &cp
				t.State = StateSuspect
				o.Verdict = "suspect: first failure, not confirmed"
				continue
			}
			t.open(o, lastPass, reopenable)
			reopenable = false
		}
	}
	t.flakiness(obs[fixedAt:], pol)
	return t
}

// open opens a regression at first, or reopens the last one when it was
// fixed within the recurrence window.
func (t *Track) open(first, lastPass *Obs, reopen bool) {
	t.State = StateRegressed
	if r := t.Regression; reopen && r != nil && r.Fixed != nil {
		r.Fixed = nil
		r.Reopened++
		r.LastFail = *first
		r.FailRuns++
		t.mark(first, "regression reopened: recurred after its fix")
		return
	}
	r := &Regression{Key: t.Key, FirstFail: *first, LastFail: *first, FailRuns: 1}
	if lastPass != nil {
		cp := *lastPass
		r.LastPass = &cp
		r.Changed = changed(lastPass.Rev, first.Rev)
	}
	t.Regression = r
	t.mark(first, "regressed: failure confirmed")
}

func (t *Track) mark(o *Obs, verdict string) {
	for i := range t.Obs {
		if t.Obs[i].Run.ID == o.Run.ID {
			t.Obs[i].Verdict = verdict
		}
	}
}

// changed names what differs between the last pass and the first failure.
func changed(a, b Revision) []string {
	var out []string
	if a.SourceID != b.SourceID || a.KernelVersion != b.KernelVersion {
		out = append(out, "source "+short(a.KernelVersion, a.SourceID)+" → "+short(b.KernelVersion, b.SourceID))
	}
	if a.PatchStack != b.PatchStack {
		out = append(out, "patch stack "+short("", a.PatchStack)+" → "+short("", b.PatchStack))
	}
	if a.KconfigSHA != b.KconfigSHA {
		out = append(out, "kconfig "+short("", a.KconfigSHA)+" → "+short("", b.KconfigSHA))
	}
	return out
}

func short(version, id string) string {
	if len(id) > 12 {
		id = id[:12]
	}
	if id == "" {
		id = "?"
	}
	if version != "" {
		return version + " (" + id + ")"
	}
	return id
}

// flakiness counts pass/fail changes among the last pol.Window decisive
// results since the fix (a failure that passed on retry is a failure
// and a pass); two changes without a fix between them make a key flaky.
func (t *Track) flakiness(obs []Obs, pol Policy) {
	var seq []bool // true: pass
	for _, o := range obs {
		switch {
		case o.Known != "" || !o.Status.Decisive():
		case o.Status == Pass:
			seq = append(seq, true)
		case o.Retry == Pass:
			seq = append(seq, false, true)
		default:
			seq = append(seq, false)
		}
	}
	if len(seq) > pol.Window && pol.Window > 0 {
		seq = seq[len(seq)-pol.Window:]
	}
	t.Flips = 0
	for i := 1; i < len(seq); i++ {
		if seq[i] != seq[i-1] {
			t.Flips++
		}
	}
	if len(seq) > 1 {
		t.FlipRate = float64(t.Flips) / float64(len(seq)-1)
	}
	t.PassOnRetry = 0
	for _, o := range obs {
		if o.Known == "" && o.Status == Fail && o.Retry == Pass {
			t.PassOnRetry++
		}
	}
	t.Flaky = t.PassOnRetry > 0 || t.Flips >= pol.FlakyFlips
}

// Analysis is the life cycle of every key, and what known-issues.yaml
// needs looking at.
type Analysis struct {
	Runs   []RunRef `json:"runs"`
	Tracks []*Track `json:"tracks"`
	// ExpiredIssues are past their date; StaleIssues matched no failure
	// in the last pol.StaleRuns runs.
	ExpiredIssues []*known.Issue `json:"-"`
	StaleIssues   []*known.Issue `json:"-"`
}

// Analyze runs Life on every key. obs holds each key's observations in
// run order; runs is every run, in order.
func Analyze(runs []RunRef, obs map[Key][]Obs, ks *known.Set, pol Policy, now time.Time) *Analysis {
	a := &Analysis{Runs: runs}
	keys := make([]Key, 0, len(obs))
	for k := range obs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	lastMatch := map[string]int{}
	for _, k := range keys {
		t := Life(k, obs[k], ks, pol, now)
		a.Tracks = append(a.Tracks, t)
		for _, o := range t.Obs {
			if o.Known != "" && o.Run.Seq > lastMatch[o.Known] {
				lastMatch[o.Known] = o.Run.Seq
			}
		}
	}
	if ks != nil {
		a.ExpiredIssues = ks.Expired(now)
		latest := 0
		if len(runs) > 0 {
			latest = runs[len(runs)-1].Seq
		}
		for _, is := range ks.Issues {
			if is.Expired(now) || latest < pol.StaleRuns {
				continue
			}
			if latest-lastMatch[is.ID] >= pol.StaleRuns {
				a.StaleIssues = append(a.StaleIssues, is)
			}
		}
	}
	return a
}

// Regressions lists the open regressions, oldest first.
func (a *Analysis) Regressions() []*Track {
	var out []*Track
	for _, t := range a.Tracks {
		if t.State == StateRegressed {
			out = append(out, t)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Regression.FirstFail.Run.Seq < out[j].Regression.FirstFail.Run.Seq
	})
	return out
}

// In returns the tracks in a state.
func (a *Analysis) In(s State) []*Track {
	var out []*Track
	for _, t := range a.Tracks {
		if t.State == s {
			out = append(out, t)
		}
	}
	return out
}

// Flaky lists the flaky tracks, flakiest first.
func (a *Analysis) Flaky() []*Track {
	var out []*Track
	for _, t := range a.Tracks {
		if t.Flaky {
			out = append(out, t)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].FlipRate+float64(out[i].PassOnRetry) > out[j].FlipRate+float64(out[j].PassOnRetry)
	})
	return out
}
