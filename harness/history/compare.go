package history

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kharness/kharness/harness/outcome"
)

// Change kinds, as kci-dev's results compare names them.
const (
	Regressed      = "regression"      // passed in base, fails in head
	Fixed          = "fixed"           // failed in base, passes in head
	Unstable       = "unstable"        // failed in head but passed on retry, or flaky
	PersistentFail = "persistent_fail" // fails in both
	New            = "new"             // only in head
	Missing        = "missing"         // only in base
	Infra          = "infra"           // the host failed it in head: nothing can be said
)

// Change is one key that differs between two runs.
type Change struct {
	Key  Key    `json:"key"`
	Kind string `json:"kind"`
	Base *Obs   `json:"base,omitempty"`
	Head *Obs   `json:"head,omitempty"`
}

// Compare lists what changed from run base to run head, by kind, then key.
// Tests that pass (or skip) in both are left out.
func Compare(a *Analysis, base, head string) []Change {
	var out []Change
	for _, t := range a.Tracks {
		var b, h *Obs
		for i := range t.Obs {
			switch t.Obs[i].Run.ID {
			case base:
				b = &t.Obs[i]
			case head:
				h = &t.Obs[i]
			}
		}
		kind := ""
		switch {
		case b == nil && h == nil:
			continue
		case b == nil:
			kind = New
		case h == nil:
			kind = Missing
		case h.Status == Error || h.Status == Miss:
			if b.Status == Fail || b.Status == Pass {
				kind = Infra
			}
		case h.Status == Fail && h.Known == "" && (h.Retry == Pass || t.Flaky):
			kind = Unstable
		case b.Status == Pass && h.Status == Fail:
			kind = Regressed
		case b.Status == Fail && h.Status == Pass:
			kind = Fixed
		case b.Status == Fail && h.Status == Fail:
			kind = PersistentFail
		}
		if kind == "" {
			continue
		}
		out = append(out, Change{Key: t.Key, Kind: kind, Base: b, Head: h})
	}
	order := map[string]int{Regressed: 0, Unstable: 1, Infra: 2, PersistentFail: 3, New: 4, Missing: 5, Fixed: 6}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return order[out[i].Kind] < order[out[j].Kind]
		}
		return out[i].Key.String() < out[j].Key.String()
	})
	return out
}

// Gate exit codes, as kci-dev's results gate has them.
const (
	GateOK         = 0
	GateViolated   = 1
	GateIncomplete = 2
)

// Policies the gate can fail on.
var GatePolicies = []string{"regression", "new-regression", "suspect", "flaky", "failure"}

// GateResult is the gate's verdict on one run.
type GateResult struct {
	Run     string   `json:"run"`
	Code    int      `json:"code"`
	Reasons []string `json:"reasons"`
}

// Gate judges run head (the latest when empty): 1 when it violates a
// policy in failOn (regression: a regression open and failing in head;
// new-regression: one opened in head; suspect; flaky: a test that passed
// on retry or flips; failure: any unexplained failure), else 2 when the
// host failed part of it (infra-error, interrupted, incomplete: the
// verdict cannot be trusted), else 0.
func Gate(a *Analysis, runs []RunInfo, head string, failOn []string) (GateResult, error) {
	if len(runs) == 0 {
		return GateResult{Code: GateIncomplete, Reasons: []string{"no run in history"}}, nil
	}
	var hr *RunInfo
	if head == "" {
		hr = &runs[len(runs)-1]
	}
	for i := range runs {
		if runs[i].ID == head {
			hr = &runs[i]
		}
	}
	if hr == nil {
		return GateResult{}, fmt.Errorf("gate: no run %s in history", head)
	}
	res := GateResult{Run: hr.ID}
	want := map[string]bool{}
	for _, p := range failOn {
		ok := false
		for _, q := range GatePolicies {
			ok = ok || p == q
		}
		if !ok {
			return res, fmt.Errorf("gate: unknown policy %q (have %s)", p, strings.Join(GatePolicies, ", "))
		}
		want[p] = true
	}
	var infra []string
	for _, t := range a.Tracks {
		o := obsIn(t, hr.ID)
		if o == nil {
			continue
		}
		r := t.Regression
		switch {
		case o.Status == Error:
			infra = append(infra, t.Key.String())
		case want["regression"] && t.State == StateRegressed && o.Status == Fail:
			res.Reasons = append(res.Reasons, fmt.Sprintf("regression: %s failing since %s%s", t.Key, r.FirstFail.Run.ID, lastPass(r)))
		case want["new-regression"] && t.State == StateRegressed && r.FirstFail.Run.ID == hr.ID:
			res.Reasons = append(res.Reasons, fmt.Sprintf("new regression: %s%s", t.Key, lastPass(r)))
		case want["suspect"] && t.State == StateSuspect && o.Status == Fail:
			res.Reasons = append(res.Reasons, fmt.Sprintf("suspect: %s failed once, not confirmed", t.Key))
		case want["flaky"] && t.Flaky && o.Status == Fail:
			res.Reasons = append(res.Reasons, fmt.Sprintf("flaky: %s (flip rate %.2f, %d passed on retry)", t.Key, t.FlipRate, t.PassOnRetry))
		case want["failure"] && o.Status == Fail && o.Known == "":
			res.Reasons = append(res.Reasons, fmt.Sprintf("failure: %s: %s", t.Key, firstLine(o.Message)))
		}
	}
	switch {
	case len(res.Reasons) > 0:
		res.Code = GateViolated
	case hr.Outcome == outcome.Infra || hr.Outcome == outcome.Interrupted || hr.Outcome == outcome.Incomplete || len(infra) > 0:
		res.Code = GateIncomplete
		res.Reasons = append(res.Reasons, fmt.Sprintf("incomplete: run %s is %s", hr.ID, hr.Outcome))
		if len(infra) > 0 {
			sort.Strings(infra)
			if len(infra) > 5 {
				infra = append(infra[:5], fmt.Sprintf("and %d more", len(infra)-5))
			}
			res.Reasons = append(res.Reasons, "infra: "+strings.Join(infra, ", "))
		}
	}
	return res, nil
}

func obsIn(t *Track, run string) *Obs {
	for i := range t.Obs {
		if t.Obs[i].Run.ID == run {
			return &t.Obs[i]
		}
	}
	return nil
}

func lastPass(r *Regression) string {
	if r.LastPass == nil {
		return ""
	}
	return ", last passed in " + r.LastPass.Run.ID
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
