// Package runfixture makes run records for tests from a real one
// (testdata/runs): the same cells and tests, with the ids, start times
// and outcomes a test needs, so that history, report and merge are tested
// on what kharness really writes.
package runfixture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

// MutantRun is a real run: the uffd-fdinfo-total mutant on x86_64, uffd
// handshake passing and fdinfo failing, its retry too.
const MutantRun = "20261203-182644-25594"

// Dir is the repository's testdata/runs.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "runs")
}

// Load reads testdata/runs/<id>/results.json.
func Load(id string) (*results.Run, error) {
	b, err := os.ReadFile(filepath.Join(Dir(), id, "results.json"))
	if err != nil {
		return nil, fmt.Errorf("runfixture: %w", err)
	}
	var r results.Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("runfixture: %s: %w", id, err)
	}
	return &r, nil
}

// Clone deep-copies a run.
func Clone(r *results.Run) *results.Run {
	b, _ := json.Marshal(r)
	var c results.Run
	json.Unmarshal(b, &c)
	return &c
}

// Write writes a copy of base as run id, started at start, into
// root/<id>/results.json after edit, and returns the run directory.
func Write(root string, base *results.Run, id string, start time.Time, edit func(*results.Run)) (string, error) {
	r := Clone(base)
	r.ID, r.Started, r.Finished = id, start, start.Add(10*time.Minute)
	if edit != nil {
		edit(r)
	}
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(filepath.Join(dir, "cells"), 0o755); err != nil {
		return "", err
	}
	for _, c := range r.Cells {
		// A console log to link to, as a real run has.
		cd := filepath.Join(dir, c.Dir)
		os.MkdirAll(cd, 0o755)
		os.WriteFile(filepath.Join(cd, "console.log"), []byte("[    0.000000] Linux version "+c.KernelVersion+"\n"), 0o644)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// BaselineStack is the patch stack digest Passing gives a run.
var BaselineStack = strings.Repeat("b", 64)

// Passing turns a run into a baseline run: every test passes, no retry,
// every cell passes, the default stack.
func Passing(r *results.Run) {
	for _, c := range r.Cells {
		c.Outcome, c.Raw, c.Reason, c.Stage = outcome.Pass, outcome.Pass, "", ""
		c.PatchSets = []string{"cow", "kmap-local", "umcg"}
		c.PatchStack = BaselineStack
		for _, t := range c.Tests {
			t.Outcome, t.Message, t.Retry = outcome.Pass, "", nil
		}
		c.Notes = nil
	}
	r.Outcome, r.ExitCode = outcome.Pass, 0
}

// Flake makes the named test fail and pass on its retry.
func Flake(suite, test string) func(*results.Run) {
	return func(r *results.Run) {
		for _, c := range r.Cells {
			for _, t := range c.Tests {
				if t.Suite == suite && t.Name == test {
					t.Outcome, t.Message = outcome.TestFail, "flaked"
					t.Retry = &results.Retry{Outcome: outcome.Pass, Dir: c.Dir + "/retry"}
				}
			}
		}
	}
}

// Then chains edits.
func Then(edits ...func(*results.Run)) func(*results.Run) {
	return func(r *results.Run) {
		for _, e := range edits {
			if e != nil {
				e(r)
			}
		}
	}
}
