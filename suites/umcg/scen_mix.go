package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// scenarioMix is the general stress: p.Servers servers with p.Workers
// workers each running the p.Ops mix of blocking system calls, faults,
// yields and on-cpu sections, plus with p.Solo a server with a single
// worker doing short blocking calls (one lost wakeup hangs it for good),
// plus a signal storm (p.Signals) or a thread forking (p.Forks).
func scenarioMix(r *reporter, p params) error {
	sc, err := newSched(r, p)
	if err != nil {
		return err
	}
	body := mixRound(opMix(p.Ops))
	if err := sc.addPool(umcg.ServerConfig{Clock: unix.CLOCK_MONOTONIC, Tick: p.Tick, Preempt: p.Preempt}, body); err != nil {
		return err
	}
	if p.Solo {
		// No timeout: nothing but the kernel's wakeups gets it going.
		c, err := sc.addServer(umcg.ServerConfig{Clock: unix.CLOCK_MONOTONIC})
		if err != nil {
			return err
		}
		if _, err := sc.addWorker(c, mixRound(opMix("solo"))); err != nil {
			return err
		}
	}
	var h helpers
	h.startBystander()
	if p.Signals {
		h.start(func(stop *atomic.Bool) { sc.signaller(stop, &h.signals, &h.serverSignals) })
	}
	if p.Forks {
		h.start(func(stop *atomic.Bool) { sc.forker(stop, &h.forks) })
	}
	err = sc.run(nil)
	h.end()
	if err != nil {
		return err
	}
	sc.check()
	h.report(r)
	if p.Signals {
		var eintr uint64
		for _, c := range sc.srvs {
			eintr += c.s.Stats.EINTR.Load()
		}
		r.Metric("signals_sent", float64(h.signals.Load()))
		r.Metric("signals_to_servers", float64(h.serverSignals.Load()))
		if e := stormFloor(h.signals.Load(), h.serverSignals.Load(), eintr); e != "" {
			r.Errorf("%s", e)
		}
	}
	if p.Forks {
		r.Metric("nonumcg_forks", float64(h.forks.Load()))
		if h.forks.Load() == 0 {
			r.Errorf("the forking thread never forked")
		}
	}
	return nil
}

// helpers are non-UMCG threads that disturb a run.
type helpers struct {
	stop          atomic.Bool
	wg            sync.WaitGroup
	signals       atomic.Uint64
	serverSignals atomic.Uint64 // the part of signals sent to servers
	forks         atomic.Uint64

	bystanderRounds, bystanderBad atomic.Uint64
}

// startBystander starts the register-state checker (see bystander).
func (h *helpers) startBystander() {
	h.start(func(stop *atomic.Bool) { bystander(stop, &h.bystanderRounds, &h.bystanderBad) })
}

// report records the bystander's checks; a corrupted result, or no
// round at all (nothing was checked), fails the scenario.
func (h *helpers) report(r *reporter) {
	r.Metric("bystander_rounds", float64(h.bystanderRounds.Load()))
	if h.bystanderRounds.Load() == 0 {
		r.Errorf("the non-UMCG bystander thread completed no round: its register state was never checked")
	}
	if n := h.bystanderBad.Load(); n > 0 {
		r.Errorf("register state of a non-UMCG thread corrupted %d times in %d rounds (FPU/SSE/MMX state lost across a context switch)", n, h.bystanderRounds.Load())
	}
}

func (h *helpers) start(f func(stop *atomic.Bool)) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		runtime.LockOSThread()
		f(&h.stop)
	}()
}

func (h *helpers) end() {
	h.stop.Store(true)
	h.wg.Wait()
}

// minServerSignals is how many signals the servers must have been sent
// before the storm is required to have interrupted a server's umcg_wait
// at least once: a server spends most of its time in umcg_wait, so a
// signal that never once finds it there is a run that tested nothing.
const minServerSignals = 100

// stormFloor is the signal storm's non-vacuity check: signals were sent,
// and once enough of them went to servers, some server's umcg_wait
// returned EINTR.
func stormFloor(sent, toServers, eintr uint64) string {
	switch {
	case sent == 0:
		return "the signal storm sent no signal"
	case toServers >= minServerSignals && eintr == 0:
		return fmt.Sprintf("%d signals sent to servers, yet no umcg_wait of a server returned EINTR", toServers)
	}
	return ""
}

// signaller sends SIGUSR1 and SIGURG at random servers and workers, every
// 50-150 us: servers get EINTR from umcg_wait, workers asleep in the
// kernel must go back to sleep without running user code, and workers in
// a COND_WAIT section must not hang (R1). toServers counts the signals
// sent to servers.
func (sc *sched) signaller(stop *atomic.Bool, sent, toServers *atomic.Uint64) {
	rng := uint64(sc.p.Seed) | 1
	var tids []int
	for !stop.Load() {
		tids = tids[:0]
		for _, c := range sc.srvs {
			if !c.s.Exited() {
				tids = append(tids, c.s.TID())
			}
		}
		servers := len(tids)
		for _, k := range sc.workers() {
			if k.phase.Load() == phRunning {
				tids = append(tids, k.w.TID())
			}
		}
		for i := 0; i < 16 && len(tids) > 0; i++ {
			rng ^= rng << 13
			rng ^= rng >> 7
			rng ^= rng << 17
			sig := unix.SIGUSR1
			if rng&1 == 0 {
				sig = unix.SIGURG
			}
			// 32-bit arithmetic: on i386 this loop once produced an
			// impossible uint64 remainder (index -6) under the storm.
			i := int(uint32(rng>>40) % uint32(len(tids)))
			if unix.Tgkill(sc.pid, tids[i], sig) == nil {
				sent.Add(1)
				if i < servers {
					toServers.Add(1)
				}
			}
			nanosleep(int64(50_000 + rng%100_000))
		}
	}
}

// forker forks from a non-UMCG thread every few milliseconds while the
// workers block and fault: fork copies pages the kernel may have pinned
// for a worker at that instant (MMF_HAS_PINNED), and the pins must still
// balance. The child exits at once.
func (sc *sched) forker(stop *atomic.Bool, forks *atomic.Uint64) {
	for !stop.Load() {
		pid, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
		if e != 0 {
			nanosleep(1_000_000)
			continue
		}
		if pid == 0 {
			exitAtOnce()
		}
		var ws syscall.WaitStatus
		for {
			_, _, e := unix.Syscall6(unix.SYS_WAIT4, pid, uintptr(unsafe.Pointer(&ws)), 0, 0, 0, 0)
			if e != unix.EINTR {
				break
			}
		}
		forks.Add(1)
		nanosleep(int64(3 * time.Millisecond))
	}
}

// exitAtOnce is a forked child's whole life.
//
//go:nosplit
//go:norace
func exitAtOnce() {
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
}
