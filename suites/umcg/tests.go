package main

import (
	"strings"
	"syscall"
	"time"

	"github.com/kharness/kharness/suites/suite"
)

// Every test: probe (needUMCG), then run a scenario child. The
// stress scenarios share the run's duration (--duration 10s keeps the
// whole suite near a minute per target under TCG).

// stall is the watchdog limit under KVM: no progress for this long is a
// hang. Real progress is milliseconds; a TCG guest on a loaded 2-core host
// is many times slower, so the limit scales with the run (Params.Scaled)
// like every other timeout.
const stall = 5 * time.Second

func baseParams(t *suite.T, name string, frac float64) params {
	p := t.Params()
	return params{Scenario: name, Dur: time.Duration(float64(p.Duration) * frac), Seed: p.Seed,
		Servers: 2, Workers: 4, Ops: "mix", Stall: p.Scaled(stall)}
}

// limitFor is the parent's hard limit for a child: its run, its watchdog
// and a margin for a slow guest.
func limitFor(p params) time.Duration { return p.Dur + 2*p.Stall + 20*time.Second }

func testABI(t *suite.T) {
	needUMCG(t)
	p := params{Scenario: "abi", Seed: t.Params().Seed, Stall: t.Params().Scaled(stall)}
	runChild(t, p, 2*time.Minute)
}

// testRaces drives R1 and R3 over and over on few workers: a kernel that
// waits on the return to user space despite COND_WAIT hangs (watchdog),
// one that misses the COND_WAIT -> BLOCKED move fails the op's checks.
func testRaces(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "races", 0.1)
	p.Servers, p.Workers, p.Ops = 1, 2, "races"
	p.Dur = max(p.Dur, time.Second)
	runChild(t, p, limitFor(p))
}

// testMix (UM2, UM3, UM5): two servers with four workers each and a solo
// server, all without timeouts, so a lost wakeup hangs.
func testMix(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "mix", 0.8)
	p.Solo = true
	runChild(t, p, limitFor(p))
}

// testSignals (UM4): the mix under a storm of SIGUSR1/SIGURG at servers
// and workers.
func testSignals(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "signals", 0.5)
	p.Signals, p.Solo = true, true
	runChild(t, p, limitFor(p))
}

// testPreempt (UM6): spinning workers preempted by the servers' tick.
func testPreempt(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "preempt", 0.5)
	p.Servers, p.Workers, p.Tick = 2, 3, 3*time.Millisecond
	runChild(t, p, limitFor(p))
}

// testLifecycle (UM8): exit while registered, unregister/register again,
// fork from workers, successors.
func testLifecycle(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "lifecycle", 0.5)
	p.Workers = 3
	// Preempt after a tick: see scenarioLifecycle.
	p.Tick, p.Preempt = 5*time.Millisecond, true
	runChild(t, p, limitFor(p))
}

// testExec (UM8): a worker execs; the new image must be no UMCG task.
func testExec(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "exec-worker", 0.1)
	p.Servers, p.Workers = 1, 3
	p.Dur = max(p.Dur, time.Second)
	res := runChild(t, p, limitFor(p))
	if res.hung {
		return
	}
	if res.exitCode != execProbeOK {
		t.Errorf("the process that exec'ed from a worker ended with status %d (signal %v), want the probe's %d", res.exitCode, res.signal, execProbeOK)
	}
}

// testWorkerEfault: a worker whose struct becomes unreadable is killed.
func testWorkerEfault(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "worker-efault", 0.1)
	p.Servers, p.Workers = 1, 1
	p.Dur = max(p.Dur, time.Second)
	res := runChild(t, p, limitFor(p))
	if res.hung {
		return
	}
	if res.signal != syscall.SIGKILL {
		t.Errorf("a worker whose struct umcg_task is PROT_NONE: want the process killed by SIGKILL, it ended with status %d signal %v", res.exitCode, res.signal)
		return
	}
	for _, l := range res.kmsg {
		if strings.Contains(l, "umcg: killing task") {
			return
		}
	}
	t.Errorf("worker killed by SIGKILL but the kernel logged no \"umcg: killing task\" line (kernel log: %q)", res.kmsg)
}

// testKill: SIGKILL the whole child while workers block and wait: every
// thread must die (no unkillable wait) and the pins must balance.
func testKill(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "kill-midrun", 0.2)
	p.Solo = true
	p.Dur = max(p.Dur, 2*time.Second)
	res := runChildKill(t, p, p.Dur/2, limitFor(p))
	if res.hung {
		return
	}
	if res.signal != syscall.SIGKILL {
		t.Errorf("child killed mid-run ended with status %d signal %v, want SIGKILL", res.exitCode, res.signal)
	}
}

// testPinsFork (UM7): workers block and fault while a non-UMCG thread
// forks; pins must balance after quiesce (in the child) and after exit
// (in the parent).
func testPinsFork(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "pins-fork", 0.3)
	p.Servers, p.Workers, p.Ops, p.Forks = 1, 4, "pins", true
	// After a fork every write faults, and a worker descheduled in a fault
	// can hold what another worker's Go runtime spins on (exitsyscall's
	// scan bit, see scenarioLifecycle): the server must preempt whatever
	// runs a whole tick, or that spin keeps it forever.
	p.Tick, p.Preempt = 5*time.Millisecond, true
	runChild(t, p, limitFor(p))
}

// testThroughput: umcg_wait hand-offs against futex ping-pong.
func testThroughput(t *suite.T) {
	needUMCG(t)
	p := baseParams(t, "bench", 0.4)
	runChild(t, p, limitFor(p))
}
