// Package results records a run as it happens and reports it at the end:
// an append-only events file written as events arrive (a crash or Ctrl-C
// loses nothing already received), per-cell artefacts, and at the end
// results.json, JUnit XML and a terminal table for people.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/report"
)

// Test is one guest test's result.
type Test struct {
	Suite      string             `json:"suite"`
	Name       string             `json:"name"`
	Outcome    outcome.Outcome    `json:"outcome"`
	Message    string             `json:"message,omitempty"`
	DurationMS int64              `json:"duration_ms"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Kmsg       []string           `json:"kmsg,omitempty"`
}

// Cell is one matrix cell's result.
type Cell struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Target     string   `json:"target"`
	PatchSets  []string `json:"patchsets"`
	Suites     []string `json:"suites"`
	Expect     *outcome.Expectation `json:"expect,omitempty"`
	// Outcome is the verdict after the cell's expectation; Raw before it.
	Outcome outcome.Outcome `json:"outcome"`
	Raw     outcome.Outcome `json:"raw_outcome"`
	Stage   string          `json:"stage,omitempty"` // stage that failed
	Reason  string          `json:"reason,omitempty"`

	KernelVersion string   `json:"kernel_version,omitempty"`
	KernelKey     string   `json:"kernel_key,omitempty"`
	KernelCached  bool     `json:"kernel_cached"`
	BuildSeconds  float64  `json:"build_seconds,omitempty"`
	BuildWarnings []string `json:"build_warnings,omitempty"`
	Initramfs     string   `json:"initramfs,omitempty"`
	InitrdCached  bool     `json:"initramfs_cached"`

	Accel             string            `json:"accel,omitempty"`
	AccelReason       string            `json:"accel_reason,omitempty"`
	BootSeconds       float64           `json:"boot_seconds,omitempty"`
	FirstEventSeconds float64           `json:"first_event_seconds,omitempty"`
	GuestInfo         map[string]string `json:"guest,omitempty"`
	Crash             *report.Report    `json:"crash,omitempty"`
	Crashes           []report.Report   `json:"crashes,omitempty"`
	BlameSuite        string            `json:"blame_suite,omitempty"`
	BlameTest         string            `json:"blame_test,omitempty"`
	Reproducer        string            `json:"reproducer,omitempty"` // QEMU command of the boot
	Rerun             string            `json:"rerun"`                // kharness command for this cell alone
	Dir               string            `json:"dir"`
	Tests             []*Test           `json:"tests"`
}

// Run is the whole run.
type Run struct {
	ID       string          `json:"id"`
	Config   string          `json:"config"`
	Source   string          `json:"source"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished,omitempty"`
	Outcome  outcome.Outcome `json:"outcome"`
	ExitCode int             `json:"exit_code"`
	Cells    []*Cell         `json:"cells"`
}

// Record is one line of the run's events file.
type Record struct {
	Time    time.Time    `json:"time"`
	Cell    string       `json:"cell,omitempty"`
	Kind    string       `json:"kind"` // stage, guest, run
	Stage   string       `json:"stage,omitempty"`
	Status  string       `json:"status,omitempty"` // start, ok, cached, fail
	Message string       `json:"message,omitempty"`
	Event   *event.Event `json:"event,omitempty"`
}

// Store is a run directory being written.
type Store struct {
	Dir string
	mu  sync.Mutex
	ev  *os.File
	run *Run
}

// NewID makes a run id that sorts by time and is unique per process.
func NewID(now time.Time) string {
	return fmt.Sprintf("%s-%d", now.UTC().Format("20060102-150405"), os.Getpid())
}

// Create makes results/<id>/ and opens its events file.
func Create(root string, run *Run) (*Store, error) {
	dir := filepath.Join(root, run.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "events.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	s := &Store{Dir: dir, ev: f, run: run}
	// A "latest" link makes the newest run easy to find for people and CI.
	latest := filepath.Join(root, "latest")
	os.Remove(latest)
	os.Symlink(run.ID, latest)
	return s, s.Snapshot()
}

// CellDir is the directory of a cell's artefacts.
func (s *Store) CellDir(id string) string { return filepath.Join(s.Dir, "cells", id) }

// Append writes one record to the events file immediately: each record is
// one write(2), so what was received survives a crash of kharness.
func (s *Store) Append(r Record) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev.Write(append(b, '\n'))
}

// Snapshot rewrites results.json from the current state, atomically.
func (s *Store) Snapshot() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.MarshalIndent(s.run, "", "  ")
	if err != nil {
		return err
	}
	return cache.WriteFile(filepath.Join(s.Dir, "results.json"), append(b, '\n'))
}

// Update runs fn with the run locked, then snapshots.
func (s *Store) Update(fn func(*Run)) {
	s.mu.Lock()
	fn(s.run)
	s.mu.Unlock()
	s.Snapshot()
}

// Close finishes the run: outcome, results.json and junit.xml.
func (s *Store) Close() error {
	s.mu.Lock()
	r := s.run
	r.Finished = time.Now().UTC()
	var os_ []outcome.Outcome
	for _, c := range r.Cells {
		os_ = append(os_, c.Outcome)
	}
	if r.Outcome == "" || r.Outcome == outcome.Pass {
		r.Outcome = outcome.Worst(os_...)
	}
	r.ExitCode = r.Outcome.ExitCode()
	s.mu.Unlock()
	err := s.Snapshot()
	if jerr := WriteJUnit(filepath.Join(s.Dir, "junit.xml"), r); jerr != nil && err == nil {
		err = jerr
	}
	s.mu.Lock()
	s.ev.Close()
	s.mu.Unlock()
	return err
}

// Load reads a results.json.
func Load(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// TestOutcome maps a guest result to an outcome.
func TestOutcome(r event.Result) outcome.Outcome {
	switch r {
	case event.Pass:
		return outcome.Pass
	case event.Skip:
		return outcome.Skip
	case event.Crash:
		return outcome.KernelCrash
	case event.Timeout:
		return outcome.Timeout
	}
	return outcome.TestFail
}

// Finish computes a booted cell's outcome from its tests and the boot
// verdict, then applies the cell's expectation.
func (c *Cell) Finish(boot outcome.Outcome, reason string) {
	raw, stage := boot, "boot"
	if raw == outcome.Pass {
		stage = "tests"
		var os_ []outcome.Outcome
		for _, t := range c.Tests {
			os_ = append(os_, t.Outcome)
		}
		raw = outcome.Worst(os_...)
		if raw == outcome.Skip {
			raw = outcome.Pass
		}
		if raw == outcome.Pass && len(c.Crashes) > 0 {
			raw, reason = outcome.KernelCrash, "kernel splat outside any test: "+c.Crashes[0].Title
		}
		if raw != outcome.Pass && reason == "" {
			reason = failedTests(c.Tests)
		}
	}
	if raw == outcome.Pass {
		stage = ""
	}
	c.SetOutcome(raw, stage, reason)
}

// SetOutcome records a raw outcome (and the failing stage) and derives
// the final one from the expectation: a cell expected to fail passes as
// xfail only when the kernel misbehaved under test (test failure, crash,
// timeout); a mutant that does not build or boot is still an error.
func (c *Cell) SetOutcome(raw outcome.Outcome, stage, reason string) {
	c.Raw, c.Stage, c.Reason = raw, stage, reason
	c.Outcome = raw
	if c.Expect == nil {
		return
	}
	switch raw {
	case outcome.Pass:
		c.Outcome = outcome.UnexpectedOK
		c.Reason = "expected to fail, but every test passed"
	case outcome.TestFail, outcome.KernelCrash, outcome.Timeout:
		c.Outcome = outcome.ExpectedFail
	}
}

func failedTests(ts []*Test) string {
	var names []string
	for _, t := range ts {
		if t.Outcome != outcome.Pass && t.Outcome != outcome.Skip {
			names = append(names, fmt.Sprintf("%s/%s (%s)", t.Suite, t.Name, t.Outcome))
		}
	}
	sort.Strings(names)
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}
	return fmt.Sprint(names)
}
