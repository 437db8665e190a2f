package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/internal/kmsg"
	"github.com/kharness/kharness/suites/internal/umcg"
	"github.com/kharness/kharness/suites/internal/verdict"
	"github.com/kharness/kharness/suites/suite"
)

// childEnv is the environment of a scenario child. Why each setting:
//   - GOGC=off: a stop-the-world cannot finish while the kernel holds a
//     worker that Go thinks is running (preempted, or blocked in a page
//     fault) and the server that would resume it waits for the world to
//     start again (note §2.4).
//   - GODEBUG=asyncpreemptoff=1: no SIGURG preemption of long-running
//     goroutines, so a preemptible section never runs Go scheduler code
//     that takes runtime locks (see umcg.UserPreemptible).
//   - GOMAXPROCS well above the thread count: every server holds its P
//     for good (see umcg.Server), and a worker the kernel stopped in a
//     page fault holds one too; the other goroutines must still find Ps.
func childEnv(p params) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KHARNESS_") || strings.HasPrefix(kv, "GOGC=") ||
			strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "GOMAXPROCS=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOGC=off", "GODEBUG=asyncpreemptoff=1", "GOTRACEBACK=all",
		fmt.Sprintf("GOMAXPROCS=%d", 2*p.threads()+32))
}

// childResult is how a scenario child ended.
type childResult struct {
	rep      *childReport
	exitCode int // -1 when killed by a signal
	signal   syscall.Signal
	hung     bool     // killed by the parent after its time limit
	kmsg     []string // kernel log lines while it ran
	stderr   string
}

// runChild runs scenario p in a child process and relays its report to
// t. limit bounds the child's wall time; past it the parent dumps the
// child's UMCG tasks from /proc/<pid>/mem and kills it. It checks the pin
// balance after the child is gone, skips t when the child skipped, and
// fails t when the child died of a signal or failed without saying why.
func runChild(t *suite.T, p params, limit time.Duration) *childResult {
	return runChildKill(t, p, 0, limit)
}

// runChildKill is runChild that also sends the child SIGKILL after
// killAfter (if > 0): every thread must then die wherever it sleeps.
func runChildKill(t *suite.T, p params, killAfter, limit time.Duration) *childResult {
	base, pinErr := readPins()
	km, kerr := kmsg.Open()
	if kerr != nil {
		t.Logf("no /dev/kmsg (%v): kernel messages are not quoted", kerr)
	}
	defer km.Close()

	cmd := exec.Command("/proc/self/exe", childArg, p.encode())
	cmd.Env = childEnv(p)
	stderr := &limitedWriter{n: 64 << 10}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("scenario %s: stdout pipe: %v", p.Scenario, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("scenario %s: start child: %v", p.Scenario, err)
	}
	res := &childResult{rep: &childReport{}}
	res.rep.onHang = func() {
		if sp := spinners(cmd.Process.Pid); sp != "" {
			t.Logf("scenario %s: the child reports a hang; its threads on a CPU:\n%s", p.Scenario, sp)
		}
	}
	relayed := make(chan struct{})
	go func() {
		relay(out, t, "", res.rep)
		close(relayed)
	}()
	exited := make(chan error, 1)
	go func() { <-relayed; exited <- cmd.Wait() }()

	var kill <-chan time.Time
	if killAfter > 0 {
		kill = time.After(killAfter)
	}
	timeout := time.After(limit)
wait:
	select {
	case err = <-exited:
	case <-kill:
		t.Logf("killing child %d (SIGKILL) mid-run", cmd.Process.Pid)
		cmd.Process.Kill()
		kill = nil
		timeout = time.After(15 * time.Second)
		goto wait
	case <-timeout:
		res.hung = true
		pm := postMortem(cmd.Process.Pid, res.rep)
		// SIGQUIT makes the Go runtime print every goroutine (GOTRACEBACK
		// =all): where the servers and workers are in user space, which
		// /proc cannot tell. A runtime too wedged to print gets SIGKILL.
		cmd.Process.Signal(syscall.SIGQUIT)
		gone := false
		select {
		case err = <-exited:
			gone = true
		case <-time.After(5 * time.Second):
		}
		t.Errorf("scenario %s: child %d still running after its time limit (killed: %v): hang; its UMCG tasks:\n%s\ngoroutines (SIGQUIT):\n%s",
			p.Scenario, cmd.Process.Pid, killAfter > 0, pm, headTail(stderr.String(), 12000, 6000))
		if gone {
			break
		}
		cmd.Process.Kill()
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("scenario %s: child %d does not die of SIGKILL within 15s: threads %v", p.Scenario, cmd.Process.Pid, threadStates(cmd.Process.Pid))
			res.kmsg = km.Lines(0)
			logKmsg(t, res.kmsg)
			return res
		}
	}
	res.stderr = stderr.String()
	res.kmsg = km.Lines(0)
	logKmsg(t, res.kmsg)
	res.exitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.signal = ws.Signal()
	}

	res.rep.mu.Lock()
	skip, errs, done := res.rep.Skip, res.rep.Errors, res.rep.Done
	res.rep.mu.Unlock()
	switch {
	case res.hung:
	case res.signal != 0:
		if !p.expectSignal() {
			t.Errorf("scenario %s: child killed by signal %d (%v)%s; stderr:\n%s", p.Scenario, int(res.signal), res.signal, umcgKmsg(res.kmsg), headTail(res.stderr, 6000, 3000))
		}
	case res.exitCode != 0 && errs == 0 && !p.expectExit(res.exitCode):
		t.Errorf("scenario %s: child exited %d without reporting why; stderr:\n%s", p.Scenario, res.exitCode, headTail(res.stderr, 3000, 1500))
	case res.exitCode == 0 && !done && !p.expectExit(0):
		t.Errorf("scenario %s: child exited 0 before its end record", p.Scenario)
	}
	if errs > 0 && res.stderr != "" {
		t.Logf("child stderr:\n%s", headTail(res.stderr, 16000, 4000))
	}
	if pinErr == nil {
		excess, taken, err := pinLeak(base, 2*time.Second)
		switch {
		case err != nil:
			t.Errorf("pin balance: %v", err)
		case excess != 0:
			t.Errorf("scenario %s: pin leak after the child is gone: %d more pages pinned than unpinned (nr_foll_pin_acquired %d new)", p.Scenario, excess, taken)
		default:
			// A measurement: the child's own checkPins floors the pins
			// its workers' blocks must have taken.
			t.Metric("pins_taken", float64(taken))
		}
	} else {
		t.Errorf("scenario %s: the pin balance cannot be checked: %v", p.Scenario, pinErr)
	}
	if skip != "" {
		// Only a kernel without patches/umcg explains a skip.
		b, err := bootArgs()
		verdict.PatchSet(patchSetUMCG, "the scenario child skipped: "+skip, b, err).Apply(t)
	}
	return res
}

// expectSignal: scenarios whose child is meant to die of a signal.
func (p params) expectSignal() bool {
	return p.Scenario == "kill-midrun" || p.Scenario == "worker-efault"
}

// expectExit: scenarios whose child ends with another code than 0.
func (p params) expectExit(code int) bool {
	return p.Scenario == "exec-worker" && code == execProbeOK
}

// logKmsg passes on the kernel's UMCG messages (the splats the agent
// catches on its own).
func logKmsg(t *suite.T, lines []string) {
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "umcg") {
			t.Logf("kernel: %s", l)
		}
	}
}

// umcgKmsg quotes the kernel's "umcg:" lines for an error message.
func umcgKmsg(lines []string) string {
	var q []string
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "umcg") {
			q = append(q, l)
		}
	}
	if len(q) == 0 {
		return " (no umcg message in the kernel log)"
	}
	return "; kernel said: " + strings.Join(q, " | ")
}

// postMortem reads a hung child's struct umcg_task slots through
// /proc/<pid>/mem and describes every task it announced, with the
// scheduler state of its thread: a hang report that does not need the
// child's Go runtime (which may be the thing that is stuck).
func postMortem(pid int, rep *childReport) string {
	rep.mu.Lock()
	arena, tasks := rep.Arena, append([]record(nil), rep.Tasks...)
	rep.mu.Unlock()
	if arena.N == 0 {
		return fmt.Sprintf("(the child announced no arena) threads %v", threadStates(pid))
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return fmt.Sprintf("(%v) threads %v", err, threadStates(pid))
	}
	defer mem.Close()
	raw := make([]byte, arena.N*umcg.TaskSize)
	if _, err := mem.ReadAt(raw, int64(arena.Addr)); err != nil && err != io.EOF {
		return fmt.Sprintf("(read arena at %#x: %v) threads %v", arena.Addr, err, threadStates(pid))
	}
	var b strings.Builder
	umcgTIDs := map[int]bool{}
	for _, tk := range tasks {
		if tk.Slot < 0 || tk.Slot >= arena.N {
			continue
		}
		umcgTIDs[tk.TID] = true
		snap, _ := umcg.DecodeSnapshot(raw[tk.Slot*umcg.TaskSize:])
		fmt.Fprintf(&b, "  %s %d slot %d: %s; %s\n", tk.Msg, tk.ID, tk.Slot, snap, threadInfo(pid, tk.TID))
	}
	// The other threads (Go runtime, echo, helpers): one of them may hold
	// what the UMCG tasks wait for.
	var others []int
	for tid := range threadStates(pid) {
		if !umcgTIDs[tid] {
			others = append(others, tid)
		}
	}
	sort.Ints(others)
	for _, tid := range others {
		fmt.Fprintf(&b, "  other thread: %s\n", threadInfo(pid, tid))
	}
	return b.String()
}

// limitedWriter keeps the first n bytes written to it; safe to read
// (String) while the child still writes.
type limitedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.buf.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func (l *limitedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// headTail keeps the start of s (where a Go panic says what happened)
// and its end.
func headTail(s string, head, tail int) string {
	if len(s) <= head+tail {
		return s
	}
	return s[:head] + "\n...\n" + s[len(s)-tail:]
}

// patchSetUMCG is the patch set that adds the UMCG system calls.
const patchSetUMCG = "umcg"

// bootArgs is what the host told the guest, read once.
var bootArgs = sync.OnceValues(guest.Read)

// needUMCG ends t unless the kernel has the UMCG calls (probeVerdict).
func needUMCG(t *suite.T) {
	b, err := bootArgs()
	if v, stop := probeVerdict(umcg.Probe(), b, err); stop {
		v.Apply(t)
	}
}

// probeVerdict decides what the probe's answer (umcg.Probe) means; stop
// is false when the calls are there. A test skips only on ENOSYS and
// only when the kernel command line says patch set umcg is not applied;
// with it applied ENOSYS fails, and any other answer (the numbers are
// other calls, or UMCG answers wrongly) fails on every kernel.
func probeVerdict(probe error, b guest.BootArgs, bootErr error) (v verdict.Verdict, stop bool) {
	switch {
	case probe == nil:
		return verdict.Verdict{}, false
	case errors.Is(probe, umcg.ErrAbsent):
		return verdict.PatchSet(patchSetUMCG, probe.Error(), b, bootErr), true
	}
	return verdict.Failf("%v", probe), true
}
