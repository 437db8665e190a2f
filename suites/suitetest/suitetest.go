// Package suitetest runs a suite's test bodies on the host, inside `go
// test`, the way the guest runs them: a suite.TB whose Fatalf and Skipf end
// the body's goroutine, failures collected (negative tests expect some),
// metrics recorded, and a deadline for the stress loops. Every suite's
// host tests use it, so the guest and host runners cannot drift apart.
package suitetest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kharness/kharness/suites/suite"
)

// T is a host runner for one test body.
type T struct {
	t        *testing.T
	name     string
	deadline time.Time
	params   suite.Params
	mu       sync.Mutex
	errs     []string
	skip     string
	metrics  map[string]float64
}

// New makes a runner whose stress loops run for d.
func New(t *testing.T, name string, d time.Duration) *T {
	return &T{t: t, name: name, deadline: time.Now().Add(d), metrics: map[string]float64{},
		params: suite.Params{Duration: d, Intensity: 1, Seed: time.Now().UnixNano(), Scale: 1}}
}

// Run runs body in its own goroutine, as the suite does, and waits at most
// limit for it; a body still running then fails the test with stuck().
func (h *T) Run(body func(), limit time.Duration, stuck func() string) {
	h.t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		body()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		msg := "still running"
		if stuck != nil {
			msg = stuck()
		}
		h.t.Fatalf("%s did not finish within %s: %s", h.name, limit, msg)
	}
}

// Name of the test.
func (h *T) Name() string { return h.name }

// Errorf records a failure.
func (h *T) Errorf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	h.mu.Lock()
	h.errs = append(h.errs, msg)
	h.mu.Unlock()
	h.t.Log("FAIL: " + msg)
}

// Fatalf records a failure and ends the body.
func (h *T) Fatalf(f string, a ...any) { h.Errorf(f, a...); runtime.Goexit() }

// Skipf records the reason and ends the body.
func (h *T) Skipf(f string, a ...any) {
	h.mu.Lock()
	h.skip = fmt.Sprintf(f, a...)
	h.mu.Unlock()
	runtime.Goexit()
}

// Logf logs through the testing.T.
func (h *T) Logf(f string, a ...any) { h.t.Logf(f, a...) }

// Metric records a number.
func (h *T) Metric(name string, v float64) {
	h.mu.Lock()
	h.metrics[name] = v
	h.mu.Unlock()
}

// Running is true until the deadline.
func (h *T) Running() bool { return time.Now().Before(h.deadline) }

// Params are the run's parameters (duration, intensity 1, a fresh seed).
func (h *T) Params() suite.Params { return h.params }

// Context is never cancelled.
func (h *T) Context() context.Context { return context.Background() }

// Errors are the failures recorded so far.
func (h *T) Errors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.errs...)
}

// Failed says whether a failure was recorded.
func (h *T) Failed() bool { return len(h.Errors()) > 0 }

// Skipped is the skip reason, "" when the body did not skip.
func (h *T) Skipped() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.skip
}

// Metrics are the numbers recorded.
func (h *T) Metrics() map[string]float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]float64, len(h.metrics))
	for k, v := range h.metrics {
		m[k] = v
	}
	return m
}

// Report is the body's failures joined, for a test's message.
func (h *T) Report() string { return strings.Join(h.Errors(), "; ") }

var _ suite.TB = (*T)(nil)
