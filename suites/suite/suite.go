// Package suite is the API every guest stress suite is written against.
// A suite is a static binary in the initramfs; the guest agent starts it
// with the run's duration and intensity, and it reports through events on
// a file descriptor of its own so that its human-readable output (stdout,
// stderr) never corrupts the machine-readable stream.
//
// Stress tests are written as loops bounded by T.Deadline: the same test
// runs a few seconds in CI and many minutes nightly, chosen by the
// -duration flag (kharness.yaml `duration`), and scales its parallelism
// with -intensity.
package suite

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
)

// EventsFDEnv names the environment variable holding the events file
// descriptor; the agent sets it. Without it, events go to stdout.
const EventsFDEnv = "KHARNESS_EVENTS_FD"

// AckFDEnv names the file descriptor the agent acknowledges test starts
// on: a test body runs only once the agent has recorded where the kernel
// log stood and sent the start to the host.
const AckFDEnv = "KHARNESS_ACK_FD"

// Params are the knobs a run hands to every suite.
type Params struct {
	// Duration is how long each stress test should keep going.
	Duration time.Duration
	// Intensity scales parallelism and sizes (1 = CI default).
	Intensity int
	// Seed makes randomised tests reproducible; it is printed on failure.
	Seed int64
	// Scale is how much slower than KVM the guest runs (1 under KVM, the
	// TCG scale under TCG). A test's own watchdog limits (no progress for
	// N seconds) are multiplied by it, like the host's timeouts.
	Scale float64
}

// Scaled multiplies a watchdog limit by the run's Scale.
func (p Params) Scaled(d time.Duration) time.Duration {
	if p.Scale < 1 {
		return d
	}
	return time.Duration(float64(d) * p.Scale)
}

// Test is one named test of a suite.
type Test struct {
	Name string
	// Run is the test body. It runs in its own goroutine.
	Run func(t *T)
	// Arches restricts the test to these GOARCH values; elsewhere it is
	// skipped with that reason. Empty means every arch.
	Arches []string
}

// T is a running test's handle.
type T struct {
	suite   string
	name    string
	params  Params
	ctx     context.Context
	start   time.Time
	mu      sync.Mutex
	failed  bool
	skipped bool
	msgs    []string
	metrics map[string]float64
	out     io.Writer
	// iterations counts stress-loop rounds (Running calls and Progress)
	// for the heartbeat.
	iterations atomic.Int64
}

// Name of the test.
func (t *T) Name() string { return t.name }

// Params returns the run's parameters.
func (t *T) Params() Params { return t.params }

// Context is cancelled when the suite is asked to stop.
func (t *T) Context() context.Context { return t.ctx }

// Deadline is when a stress loop should stop: start + Duration.
func (t *T) Deadline() time.Time { return t.start.Add(t.params.Duration) }

// Running reports whether a stress loop should do another round; each
// call counts as one iteration in the test's heartbeat.
func (t *T) Running() bool {
	t.iterations.Add(1)
	return time.Now().Before(t.Deadline()) && t.ctx.Err() == nil
}

// Progress adds n iterations to the heartbeat, for loops not bounded by
// Running.
func (t *T) Progress(n int64) { t.iterations.Add(n) }

// Logf writes a line to the suite's human-readable log (the console).
func (t *T) Logf(format string, args ...any) {
	fmt.Fprintf(t.out, "%s/%s: %s\n", t.suite, t.name, fmt.Sprintf(format, args...))
}

// Errorf records a failure and goes on.
func (t *T) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.mu.Lock()
	t.failed = true
	t.msgs = append(t.msgs, msg)
	t.mu.Unlock()
	t.Logf("FAIL: %s", msg)
}

// Fatalf records a failure and ends the test.
func (t *T) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	runtime.Goexit()
}

// Skipf ends the test as skipped; the reason is recorded, never silent.
func (t *T) Skipf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.mu.Lock()
	t.skipped = true
	t.msgs = append(t.msgs, msg)
	t.mu.Unlock()
	t.Logf("SKIP: %s", msg)
	runtime.Goexit()
}

// Metric records a number for the results (pages touched, events, rates).
func (t *T) Metric(name string, v float64) {
	t.mu.Lock()
	t.metrics[name] = v
	t.mu.Unlock()
}

// Failed reports whether the test has failed so far.
func (t *T) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Main parses the standard flags, runs the tests in order and exits with 0
// when none failed. It never returns.
func Main(name string, tests ...Test) {
	os.Exit(run(name, os.Args[1:], tests))
}

func run(name string, args []string, tests []Test) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	dur := fs.Duration("duration", 10*time.Second, "how long each stress test runs")
	intensity := fs.Int("intensity", 1, "parallelism/size multiplier")
	seed := fs.Int64("seed", time.Now().UnixNano(), "random seed")
	runRe := fs.String("run", "", "only tests whose whole name matches this regexp")
	list := fs.Bool("list", false, "list the tests -run selects and exit")
	heartbeat := fs.Duration("heartbeat", guest.DefaultHeartbeat, "how often a running test reports progress")
	scale := fs.Float64("scale", 1, "slowness of the machine (TCG scale); multiplies watchdog limits")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var re *regexp.Regexp
	if *runRe != "" {
		var err error
		if re, err = guest.CompileTests(*runRe); err != nil {
			fmt.Fprintf(os.Stderr, "%s: -run: %v\n", name, err)
			return 2
		}
	}
	if *list {
		for _, tc := range tests {
			if re == nil || re.MatchString(tc.Name) {
				fmt.Println(tc.Name)
			}
		}
		return 0
	}
	ew, closeEvents := eventsWriter()
	defer closeEvents()
	ack := ackFile()
	// The suite declares what this run selects before anything runs: the
	// host counts every declared test that never reports as a failure.
	var selected []string
	for _, tc := range tests {
		if re == nil || re.MatchString(tc.Name) {
			selected = append(selected, tc.Name)
		}
	}
	ew.Emit(event.Event{Type: event.SuiteStart, Suite: name, Tests: selected})
	p := Params{Duration: *dur, Intensity: *intensity, Seed: *seed, Scale: *scale}
	fmt.Fprintf(os.Stdout, "%s: duration=%s intensity=%d scale=%g seed=%d arch=%s\n", name, p.Duration, p.Intensity, p.Scale, p.Seed, runtime.GOARCH)
	failed := false
	for _, tc := range tests {
		if re != nil && !re.MatchString(tc.Name) {
			continue
		}
		ev := runOne(name, tc, p, ew, ack, *heartbeat)
		if ev.Result == event.Fail {
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

func eventsWriter() (*event.Writer, func()) {
	if s := os.Getenv(EventsFDEnv); s != "" {
		if fd, err := strconv.Atoi(s); err == nil {
			f := os.NewFile(uintptr(fd), "events")
			return event.NewWriter(f), func() { f.Close() }
		}
	}
	return event.NewWriter(os.Stdout), func() {}
}

// ackFile returns the agent's acknowledgement pipe, or nil when run by hand.
func ackFile() *os.File {
	if s := os.Getenv(AckFDEnv); s != "" {
		if fd, err := strconv.Atoi(s); err == nil {
			return os.NewFile(uintptr(fd), "ack")
		}
	}
	return nil
}

// waitAck blocks until the agent acknowledges a test start; an agent that
// does not answer within the limit only costs the limit, never a hang.
func waitAck(ack *os.File) {
	if ack == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		var b [1]byte
		ack.Read(b[:])
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "suite: no acknowledgement from the agent after 10s, going on")
	}
}

func runOne(suiteName string, tc Test, p Params, ew *event.Writer, ack *os.File, heartbeat time.Duration) event.Event {
	ew.Emit(event.Event{Type: event.TestStart, Suite: suiteName, Test: tc.Name})
	waitAck(ack)
	t := &T{suite: suiteName, name: tc.Name, params: p, ctx: context.Background(), start: time.Now(),
		metrics: map[string]float64{}, out: os.Stdout}
	done := make(chan struct{})
	// The heartbeat tells the host the guest is alive while a stress test
	// is silent for minutes; the host's no-output watchdog stays tight.
	// A test stuck in the kernel still beats (this goroutine runs on its
	// own thread): the suite's deadline is what catches that.
	stopBeat := event.Beat(heartbeat, func() {
		ew.Emit(event.Event{Type: event.Progress, Suite: suiteName, Test: tc.Name, Iterations: t.iterations.Load()})
	})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		if len(tc.Arches) > 0 && !contains(tc.Arches, runtime.GOARCH) {
			t.Skipf("only on %s, this is %s", strings.Join(tc.Arches, ","), runtime.GOARCH)
		}
		tc.Run(t)
	}()
	<-done
	stopBeat() // no heartbeat after the test's end
	res := event.Pass
	switch {
	case t.failed:
		res = event.Fail
	case t.skipped:
		res = event.Skip
	}
	if res == event.Fail {
		t.msgs = append(t.msgs, fmt.Sprintf("(seed %d)", p.Seed))
	}
	ev := event.Event{Type: event.TestEnd, Suite: suiteName, Test: tc.Name, Result: res,
		Message: strings.Join(t.msgs, "\n"), DurationMS: time.Since(t.start).Milliseconds()}
	if len(t.metrics) > 0 {
		ev.Metrics = t.metrics
	}
	ew.Emit(ev)
	fmt.Fprintf(os.Stdout, "%s/%s: %s (%d ms)\n", suiteName, tc.Name, strings.ToUpper(string(res)), ev.DurationMS)
	return ev
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TB is what a test body needs from its runner: *T in the guest, a
// suitetest.T over *testing.T in the host's unit tests. Fatalf and Skipf
// end the calling goroutine (runtime.Goexit), so only the test goroutine
// calls them; helper goroutines return errors instead.
type TB interface {
	Name() string
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Metric(name string, v float64)
	Running() bool
	Params() Params
	Context() context.Context
}

var _ TB = (*T)(nil)
