package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// These run on the build host: the pure parts of the suite (the child's
// report protocol, parsers, the op mixes). The UMCG parts need the guest.

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		kind string
	}{
		{`{"k":"log","m":"hi"}`, true, recLog},
		{`{"k":"metric","m":"x","v":2.5}`, true, recMetric},
		{`{"m":"no kind"}`, false, ""},
		{`panic: runtime error`, false, ""},
		{`{"k":"log"`, false, ""},
		{``, false, ""},
	} {
		rec, ok := parseRecord(tc.line)
		if ok != tc.ok || rec.Kind != tc.kind {
			t.Errorf("parseRecord(%q) = %+v, %v; want kind %q, %v", tc.line, rec, ok, tc.kind, tc.ok)
		}
	}
}

type fakeSink struct {
	logs, errs []string
	metrics    map[string]float64
}

func (f *fakeSink) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeSink) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeSink) Metric(name string, v float64) { f.metrics[name] = v }

// TestReportRoundTrip writes records the way a child does and relays
// them the way the parent does.
func TestReportRoundTrip(t *testing.T) {
	var buf strings.Builder
	r := &reporter{w: &buf}
	r.Logf("starting %d", 3)
	r.emit(record{Kind: recArena, Addr: 0x7f0000001000, N: 64})
	r.emit(record{Kind: recTask, Msg: "server", Slot: 0, TID: 41, ID: 0})
	r.emit(record{Kind: recTask, Msg: "worker", Slot: 1, TID: 42, ID: 0})
	r.Metric("switches", 1234)
	r.Errorf("worker %d: %s", 0, "broken\nacross lines")
	buf.WriteString("fatal error: all goroutines are asleep\n")
	r.Skipf("no %s", "thing")
	r.emit(record{Kind: recDone})
	if !r.Failed() {
		t.Errorf("reporter.Failed() = false after Errorf")
	}
	sink := &fakeSink{metrics: map[string]float64{}}
	rep := &childReport{}
	relay(strings.NewReader(buf.String()), sink, "", rep)
	if rep.Errors != 1 || len(sink.errs) != 1 || sink.errs[0] != "worker 0: broken\nacross lines" {
		t.Errorf("errors %d %q", rep.Errors, sink.errs)
	}
	if sink.metrics["switches"] != 1234 {
		t.Errorf("metrics %v", sink.metrics)
	}
	if rep.Skip != "no thing" || !rep.Done {
		t.Errorf("skip %q done %v", rep.Skip, rep.Done)
	}
	if rep.Arena.Addr != 0x7f0000001000 || rep.Arena.N != 64 || len(rep.Tasks) != 2 || rep.Tasks[1].TID != 42 {
		t.Errorf("arena %+v tasks %+v", rep.Arena, rep.Tasks)
	}
	if len(rep.Raw) != 1 || !strings.Contains(sink.logs[len(sink.logs)-1], "all goroutines are asleep") {
		t.Errorf("raw lines %q, logs %q", rep.Raw, sink.logs)
	}
}

func TestParamsRoundTrip(t *testing.T) {
	p := params{Scenario: "mix", Dur: 3 * time.Second, Seed: -7, Servers: 2, Workers: 4, Solo: true,
		Tick: time.Millisecond, Preempt: true, Signals: true, Ops: "races", Forks: true, Stall: 5 * time.Second}
	q, err := decodeParams(p.encode())
	if err != nil || q != p {
		t.Errorf("round trip: %+v, %v; want %+v", q, err, p)
	}
	if _, err := decodeParams("{not json"); err == nil {
		t.Errorf("bad params decoded")
	}
	if got := p.threads(); got != 2*(1+4)+2 {
		t.Errorf("threads() = %d", got)
	}
}

func TestParsePins(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want pins
		ok   bool
	}{
		{"both", "nr_free_pages 10\nnr_foll_pin_acquired 120\nnr_foll_pin_released 117\n", pins{120, 117}, true},
		{"order", "nr_foll_pin_released 5\nnr_foll_pin_acquired 5\n", pins{5, 5}, true},
		{"missing", "nr_foll_pin_acquired 1\n", pins{}, false},
		{"garbage", "nr_foll_pin_acquired x\nnr_foll_pin_released 1\n", pins{}, false},
	} {
		got, err := parsePins([]byte(tc.data))
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("%s: %+v, %v", tc.name, got, err)
		}
	}
	if (pins{10, 7}).held() != 3 {
		t.Errorf("held")
	}
}

func TestSmallParsers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"123 (umcg) S 1 2 3", "S"},
		{"124 (a) b) (c) D 1", "D"},
		{"garbage", "?"},
		{"125 (x)", "?"},
	} {
		if got := statState(tc.in); got != tc.want {
			t.Errorf("statState(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("a", 100) + strings.Repeat("b", 100) + strings.Repeat("c", 100)
	if got := headTail(long, 100, 100); !strings.HasPrefix(got, strings.Repeat("a", 100)+"\n...\n") || !strings.HasSuffix(got, strings.Repeat("c", 100)) {
		t.Errorf("headTail cut wrong: %q", got)
	}
	if got := headTail("short", 10, 10); got != "short" {
		t.Errorf("headTail(short) = %q", got)
	}
}

// TestOpMixes checks that every mix can run, never picks an op of weight
// 0, and picks the others.
func TestOpMixes(t *testing.T) {
	for _, tc := range []struct {
		mix     string
		must    []int
		mustNot []int
	}{
		{"mix", []int{opCompute, opYield, opPipe, opPipeBlock, opSleep, opFutexWait, opFutexWake, opFault, opGetppid, opR1, opR3}, []int{opExit, opFork, opRejoin, opSpin}},
		{"races", []int{opR1, opR3, opCompute, opYield}, []int{opPipe, opExit}},
		{"solo", []int{opPipe, opPipeBlock, opSleep}, []int{opCompute, opExit}},
		{"pins", []int{opFault, opPipe}, []int{opYield, opR1, opExit}},
		{"lifecycle", []int{opRejoin, opFork, opExit, opExitUnreg, opCompute}, []int{opSpin}},
	} {
		m := opMix(tc.mix)
		total := 0
		for _, w := range m {
			total += w
		}
		if total == 0 {
			t.Fatalf("mix %s: no weight", tc.mix)
		}
		k := &wkCtx{rng: 12345}
		var seen [nOps]int
		for i := 0; i < 20000; i++ {
			seen[k.pickOp(&m, total)]++
		}
		for _, op := range tc.must {
			if seen[op] == 0 {
				t.Errorf("mix %s never picked %s", tc.mix, opName(op))
			}
		}
		for _, op := range tc.mustNot {
			if seen[op] != 0 {
				t.Errorf("mix %s picked %s %d times", tc.mix, opName(op), seen[op])
			}
		}
	}
	for op := 0; op < nOps; op++ {
		if opName(op) == "" || opName(op) == "none" {
			t.Errorf("op %d has no name", op)
		}
	}
	if opName(nOps) != "none" || opName(-1) != "none" {
		t.Errorf("out-of-range op names")
	}
}

// TestRandReproducible: the same seed gives the same op sequence (a
// failure's seed reproduces its run), another seed another one.
func TestRandReproducible(t *testing.T) {
	a, b, c := &wkCtx{rng: 99}, &wkCtx{rng: 99}, &wkCtx{rng: 100}
	same, differ := true, false
	for i := 0; i < 100; i++ {
		x, y, z := a.rand(), b.rand(), c.rand()
		same = same && x == y
		differ = differ || x != z
	}
	if !same || !differ {
		t.Errorf("same seed same sequence: %v; other seed differs: %v", same, differ)
	}
}

func TestReportTexts(t *testing.T) {
	for _, e := range []evrec{
		{kind: evOverlap, a: 1, b: 2, c: 1, d: 1},
		{kind: evNotRunning, a: 2, b: opYield},
		{kind: evTSBackwards, a: 5, b: 4, c: 6, d: 7},
		{kind: evTSRange, a: 1, b: 2, c: 3, d: opPipe},
		{kind: evTSOrder, a: 1, b: 2, c: opSleep},
		{kind: evNoBlock, a: 1000, b: opPipeBlock, c: 9},
		{kind: evYieldErr, a: 22, b: 2},
		{kind: evR3, a: 0, b: 1},
		{kind: evSyscall, a: opFault, b: 12},
		{kind: evUserBits, a: 1, b: 0x10000},
		{kind: evForkChild, a: forkWait, b: 11},
		{kind: evCondWait, a: 0x202, b: 1},
		{kind: 999},
	} {
		if s := e.String(); s == "" || strings.Contains(s, "%!") {
			t.Errorf("kind %d renders %q", e.kind, s)
		}
	}
	for code := forkOK + 1; code <= forkTSChanged; code++ {
		if s := forkChildFailure(code, 22); s == "" || strings.HasPrefix(s, "exit status") {
			t.Errorf("fork code %d: %q", code, s)
		}
	}
	if s := forkChildFailure(109, 0); !strings.Contains(s, "killed") {
		t.Errorf("signal code: %q", s)
	}
}

func TestStatTimes(t *testing.T) {
	for _, tc := range []struct {
		stat      string
		user, sys uint64
	}{
		{"61 (umcg) R 46 46 1 0 -1 4194368 17 0 0 0 731 42 0 0 20 0 40 0 300 0 0", 731, 42},
		{"61 (a b) c) S 1 1 1 0 -1 0 0 0 0 0 5 6 0 0", 5, 6},
		{"garbage", 0, 0},
	} {
		if u, s := statTimes(tc.stat); u != tc.user || s != tc.sys {
			t.Errorf("statTimes(%q) = %d, %d; want %d, %d", tc.stat, u, s, tc.user, tc.sys)
		}
	}
}

// TestPCOfSpinningThread samples a thread of a child process that spins
// in a known function and expects that function's name (ptrace cannot
// stop a thread of the tracer's own process).
func TestPCOfSpinningThread(t *testing.T) {
	if os.Getenv("KHARNESS_PCTEST_SPIN") != "" {
		spinForPCTest()
	}
	if os.Getuid() != 0 {
		t.Skip("ptrace of another process needs root here")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPCOfSpinningThread$")
	cmd.Env = append(os.Environ(), "KHARNESS_PCTEST_SPIN=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(300 * time.Millisecond)
	// On a loaded host the Go scheduler may move the spinning goroutine
	// between threads while one is sampled: try a few times.
	var samples []string
	for attempt := 0; attempt < 20; attempt++ {
		for tid, st := range threadStates(cmd.Process.Pid) {
			if st == "R" {
				s := pcSamples(tid, 2)
				samples = append(samples, s)
				if strings.Contains(s, "spinForPCTest") {
					if runtime.GOARCH == "amd64" && !strings.Contains(s, "called from") {
						t.Errorf("no callers of the spinning function: %q", s)
					}
					t.Log(s)
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("no running thread of the child sampled in spinForPCTest in 20 tries: %q", samples)
}

//go:noinline
func spinForPCTest() {
	for x := 0; ; x++ {
	}
}
