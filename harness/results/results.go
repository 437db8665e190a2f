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
	"strings"
	"sync"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/splat"
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
	// Crash is the title of the kernel splat that failed the test.
	Crash string `json:"crash,omitempty"`
	// HostBlamed marks a result the host made up for a test that never
	// reported its own: blamed by a watchdog, or never reported at all.
	// Such a result never catches a mutant.
	HostBlamed bool `json:"host_blamed,omitempty"`
	// Known is the known issue (known-issues.yaml) that describes this
	// failure: the outcome stays the failure's, the cell's verdict does
	// not count it. "a,b" when a program's failed cases are each known.
	Known string `json:"known,omitempty"`
	// Iterations is the last heartbeat's loop count.
	Iterations int64 `json:"iterations,omitempty"`
	// Retry is the test's second attempt in the same run (a failed test
	// booted again alone, run.Pipeline.Retry); the outcome above stays the
	// first attempt's.
	Retry *Retry `json:"retry,omitempty"`
}

// Retry is what a failed test's second attempt came to.
type Retry struct {
	Outcome    outcome.Outcome `json:"outcome"`
	Message    string          `json:"message,omitempty"`
	Crash      string          `json:"crash,omitempty"`
	DurationMS int64           `json:"duration_ms"`
	Dir        string          `json:"dir"` // the retry boot's artefacts, relative to the run
}

// SuiteRun is what the guest said of one suite process.
type SuiteRun struct {
	Name     string       `json:"name"`
	Declared []string     `json:"declared"` // the tests it said this run selects
	Started  bool         `json:"started"`
	Ended    bool         `json:"ended"`
	Result   event.Result `json:"result,omitempty"` // the suite process: pass, fail, timeout
	Message  string       `json:"message,omitempty"`
	// DurationMS is the suite's wall time in the guest.
	DurationMS int64 `json:"duration_ms,omitempty"`
}

// Cell is one matrix cell's result.
type Cell struct {
	ID        string               `json:"id"`
	Name      string               `json:"name"`
	Target    string               `json:"target"`
	PatchSets []string             `json:"patchsets"`
	Suites    []string             `json:"suites"`
	Expect    *outcome.Expectation `json:"expect,omitempty"`
	// PatchStack digests the applied patches; with SourceID, Target and
	// KconfigSHA it identifies the kernel across runs (history).
	PatchStack string `json:"patch_stack,omitempty"`
	// SourceID is the kernel source's content hash (tarball) or commit.
	SourceID string `json:"source_id,omitempty"`
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
	Crash             *splat.Report     `json:"crash,omitempty"`
	Crashes           []splat.Report    `json:"crashes,omitempty"`
	BlameSuite        string            `json:"blame_suite,omitempty"`
	BlameTest         string            `json:"blame_test,omitempty"`
	Watchdog          bool              `json:"watchdog,omitempty"`   // the boot ended by a host watchdog
	Reproducer        string            `json:"reproducer,omitempty"` // QEMU command of the boot
	Rerun             string            `json:"rerun"`                // kharness command for this cell alone
	Dir               string            `json:"dir"`
	KconfigSHA        string            `json:"kconfig_sha256,omitempty"`
	Notes             []string          `json:"notes,omitempty"` // host remarks: dropped lines, cache repairs
	// Timings are the seconds each stage took: source, patch, kconfig,
	// build, initramfs, boot, and "suite NAME" for each suite in the guest.
	Timings   map[string]float64 `json:"timings,omitempty"`
	SuiteRuns []*SuiteRun        `json:"suite_runs,omitempty"`
	Tests     []*Test            `json:"tests"`

	progress event.Event // the last heartbeat
}

// Schema names the results.json format.
const Schema = "kharness.run/v1"

// Run is the whole run.
type Run struct {
	Schema string `json:"schema"`
	ID     string `json:"id"`
	// PID and Host say which process writes the run, so that a later run
	// can tell one still going from one whose kharness was killed.
	PID      int             `json:"pid"`
	Host     string          `json:"host,omitempty"`
	Config   string          `json:"config"`
	Source   string          `json:"source"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished,omitempty"`
	Outcome  outcome.Outcome `json:"outcome"`
	ExitCode int             `json:"exit_code"`
	Reason   string          `json:"reason,omitempty"`
	// Shard says which part of a sharded matrix this run is (kharness
	// run --shard i/N); kharness merge puts the parts back together.
	Shard *Shard  `json:"shard,omitempty"`
	Cells []*Cell `json:"cells"`
}

// Shard is one part of a matrix split across machines.
type Shard struct {
	Index int `json:"index"` // 1-based
	Count int `json:"count"`
	// Matrix lists every cell id of the whole matrix, in the unsharded
	// run's order.
	Matrix []string `json:"matrix"`
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
	// err is the first failure to write the record; the run goes on (what
	// is in memory is still reported) and ends as infra-error.
	err error
}

// NewID makes a run id that sorts by time and is unique per process.
func NewID(now time.Time) string {
	return fmt.Sprintf("%s-%d", now.UTC().Format("20060102-150405"), os.Getpid())
}

// Create makes results/<id>/ and opens its events file. Until Close the
// run (and each unfinished cell) says incomplete, with a non-zero exit
// code, so a run whose kharness dies never looks green.
func Create(root string, run *Run) (*Store, error) {
	dir := filepath.Join(root, run.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "events.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	run.Schema, run.PID = Schema, os.Getpid()
	run.Host, _ = os.Hostname()
	run.Outcome, run.ExitCode = outcome.Incomplete, outcome.Incomplete.ExitCode()
	for _, c := range run.Cells {
		if c.Outcome == "" {
			c.Outcome, c.Raw = outcome.Incomplete, outcome.Incomplete
		}
	}
	s := &Store{Dir: dir, ev: f, run: run}
	if err := s.Snapshot(); err != nil {
		return nil, err
	}
	// A "latest" link makes the newest run easy to find for people and
	// CI; it is replaced by a rename, never missing.
	if err := cache.Symlink(run.ID, filepath.Join(root, "latest")); err != nil {
		return nil, fmt.Errorf("results/latest: %w", err)
	}
	return s, nil
}

// Run is the run being written (read its ID; change it through Update).
func (s *Store) Run() *Run { return s.run }

// CellDir is the directory of a cell's artefacts.
func (s *Store) CellDir(id string) string { return filepath.Join(s.Dir, "cells", id) }

// Err is the first failure to write the run's record, if any.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Store) fail(err error) {
	if err != nil && s.err == nil {
		s.err = err
	}
}

// Append writes one record to the events file immediately: each record is
// one write(2), so what was received survives a crash of kharness.
func (s *Store) Append(r Record) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.fail(fmt.Errorf("encode event record: %w", err))
		return
	}
	if _, err := s.ev.Write(append(b, '\n')); err != nil {
		s.fail(fmt.Errorf("write %s: %w", s.ev.Name(), err))
	}
}

// Snapshot rewrites results.json from the current state, atomically.
func (s *Store) Snapshot() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

func (s *Store) snapshot() error {
	b, err := json.MarshalIndent(s.run, "", "  ")
	if err == nil {
		err = cache.WriteFile(filepath.Join(s.Dir, "results.json"), append(b, '\n'))
	}
	if err != nil {
		err = fmt.Errorf("write results.json: %w", err)
		s.fail(err)
	}
	return err
}

// Update runs fn with the run locked, then snapshots.
func (s *Store) Update(fn func(*Run)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.run)
	s.snapshot()
}

// Close finishes the run: outcome, results.json and junit.xml. A failure
// to write any part of the record makes the run an infra-error.
func (s *Store) Close() error {
	s.mu.Lock()
	r := s.run
	r.Finished = time.Now().UTC()
	var os_ []outcome.Outcome
	for _, c := range r.Cells {
		os_ = append(os_, c.Outcome)
	}
	if r.Outcome == "" || r.Outcome == outcome.Incomplete || r.Outcome == outcome.Pass {
		r.Outcome = outcome.Worst(os_...)
	}
	if s.err != nil {
		r.Outcome = outcome.Worst(r.Outcome, outcome.Infra)
		r.Reason = "the run's record could not be written: " + s.err.Error()
	}
	r.ExitCode = r.Outcome.ExitCode()
	s.snapshot()
	if err := WriteJUnit(filepath.Join(s.Dir, "junit.xml"), r); err != nil {
		s.fail(fmt.Errorf("write junit.xml: %w", err))
	}
	if err := s.ev.Close(); err != nil {
		s.fail(fmt.Errorf("close events file: %w", err))
	}
	err := s.err
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

// Recover finds runs under root that say incomplete although the process
// that wrote them is gone (kharness was SIGKILLed, the host rebooted),
// marks them interrupted and returns their ids. A run whose process still
// lives is left alone.
func Recover(root, by string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	host, _ := os.Hostname()
	var found []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(root, e.Name(), "results.json")
		r, err := Load(path)
		if err != nil || r.Outcome != outcome.Incomplete || (r.Host != "" && r.Host != host) || alive(r.PID) {
			continue
		}
		why := fmt.Sprintf("kharness (pid %d) stopped without finishing the run (killed?); found by run %s", r.PID, by)
		r.Outcome, r.ExitCode, r.Reason = outcome.Interrupted, outcome.Interrupted.ExitCode(), why
		for _, c := range r.Cells {
			if c.Outcome == outcome.Incomplete || c.Outcome == "" {
				c.Outcome, c.Raw, c.Reason = outcome.Interrupted, outcome.Interrupted, why
			}
		}
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return found, err
		}
		if err := cache.WriteFile(path, append(b, '\n')); err != nil {
			return found, fmt.Errorf("mark %s interrupted: %w", r.ID, err)
		}
		found = append(found, r.ID)
	}
	return found, nil
}

// alive reports whether pid is a running kharness.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "kharness")
}
