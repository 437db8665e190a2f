package run

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

// MaxRetryTests bounds the tests one cell boots again: more failures than
// this are no flake, and retrying them would double the night.
const MaxRetryTests = 8

// RetryFailed is the default retry policy: a test that failed in a cell
// whose verdict is a failure, where the kernel or the test is to blame
// (not the host), is booted once more.
func RetryFailed(c *results.Cell, t *results.Test) bool {
	if !c.Outcome.Failed() || c.Outcome == outcome.Infra || c.Outcome == outcome.Interrupted || c.Outcome == outcome.Incomplete {
		return false
	}
	switch t.Outcome {
	case outcome.TestFail, outcome.KernelCrash, outcome.Timeout:
		return t.Retry == nil
	}
	return false
}

// retryFailed boots, once, every cell that has tests p.Retry picks, with
// only those tests, and records each one's second attempt beside its
// first (Test.Retry). The retry boot's artefacts are in cells/<id>/retry.
// A regression is declared by history only when the retry failed too; a
// pass on retry counts towards the test's flakiness.
func (p *Pipeline) retryFailed(ctx context.Context, store *results.Store, run *results.Run, cells []config.MatrixCell) {
	if p.Retry == nil {
		return
	}
	for i, c := range cells {
		if ctx.Err() != nil {
			return
		}
		rc := run.Cells[i]
		var picked []*results.Test
		store.Update(func(*results.Run) {
			for _, t := range rc.Tests {
				if p.Retry(rc, t) {
					picked = append(picked, t)
				}
			}
		})
		if len(picked) == 0 {
			continue
		}
		if len(picked) > MaxRetryTests {
			p.logf(rc.ID, "retry: %d tests failed, more than %d: not retried", len(picked), MaxRetryTests)
			store.Update(func(*results.Run) {
				rc.Notes = append(rc.Notes, fmt.Sprintf("retry: %d failed tests, more than %d: none retried", len(picked), MaxRetryTests))
			})
			continue
		}
		rcell := c
		rcell.ID, rcell.Expect, rcell.Suites = c.ID+"/retry", nil, RetrySuites(picked)
		tmp := &results.Cell{ID: rcell.ID, Name: c.Name, Target: c.Target, PatchSets: c.PatchSets, Suites: rcell.Suites,
			Dir: filepath.Join("cells", rcell.ID), Tests: []*results.Test{}}
		p.logf(rc.ID, "retry: booting again for %s", strings.Join(rcell.Suites, " "))
		p.cell(ctx, store, rcell, tmp, nil, nil)
		store.Update(func(*results.Run) {
			var names []string
			for _, t := range picked {
				r := &results.Retry{Outcome: tmp.Outcome, Message: tmp.Reason, Dir: tmp.Dir}
				for _, u := range tmp.Tests {
					if u.Suite == t.Suite && u.Name == t.Name {
						r.Outcome, r.Message, r.Crash, r.DurationMS = u.Outcome, u.Message, u.Crash, u.DurationMS
					}
				}
				t.Retry = r
				names = append(names, fmt.Sprintf("%s/%s %s", t.Suite, t.Name, r.Outcome))
			}
			rc.Notes = append(rc.Notes, "retry: "+strings.Join(names, ", "))
		})
	}
}

// RetrySuites is the suite list that runs exactly the given tests.
func RetrySuites(tests []*results.Test) []string {
	by := map[string][]string{}
	var order []string
	for _, t := range tests {
		if _, ok := by[t.Suite]; !ok {
			order = append(order, t.Suite)
		}
		by[t.Suite] = append(by[t.Suite], regexp.QuoteMeta(t.Name))
	}
	var out []string
	for _, s := range order {
		names := by[s]
		sort.Strings(names)
		out = append(out, fmt.Sprintf("%s:^(%s)$", s, strings.Join(names, "|")))
	}
	return out
}
