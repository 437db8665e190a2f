package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// scenarioLifecycle: the op mix plus workers that leave and come back
// (unregister, register again on the same slot), fork (the child must be
// no UMCG task), end their thread while registered (the kernel's exit
// hook makes them NONE and wakes the server) or unregister for good; each
// worker that ends gets a successor on the same server while the run
// lasts.
//
// The servers preempt whatever worker runs for a whole tick. A worker
// the kernel descheduled in a page fault (after a fork every write
// faults) may hold what a running sibling spin-waits for without ever
// blocking: in Go 1.26, exitsyscall's steal of its old P holds the
// scan bit of the goroutine that took the P, and that goroutine's own
// exitsyscall spins in casgstatus/osyield until the bit goes (seen: the
// running worker sampled in osyield <- casgstatus <- exitsyscall, its
// server's other workers queued, one of them back from a fault). Only
// preempting the spinner lets the server run the holder.
func scenarioLifecycle(r *reporter, p params) error {
	sc, err := newSched(r, p)
	if err != nil {
		return err
	}
	sc.replace = true
	body := mixRound(opMix("lifecycle"))
	if err := sc.addPool(umcg.ServerConfig{Clock: unix.CLOCK_MONOTONIC, Tick: p.Tick, Preempt: p.Preempt}, body); err != nil {
		return err
	}
	var h helpers
	h.startBystander()
	err = sc.run(nil)
	h.end()
	if err != nil {
		return err
	}
	sc.check()
	h.report(r)
	var exits, unregs, rejoins, forks uint64
	all := sc.all()
	for _, k := range all {
		switch {
		case k.lastOp.Load() == opExit && k.phase.Load() == phExited:
			exits++
		case k.lastOp.Load() == opExitUnreg && k.phase.Load() == phDone:
			unregs++
		}
		rejoins += k.rejoins.Load()
		forks += k.forks.Load()
	}
	var departed, inWait, preempts uint64
	for _, c := range sc.srvs {
		departed += c.s.Stats.Departed.Load()
		inWait += c.s.Stats.LeftInWait.Load()
		preempts += c.s.Stats.Preempts.Load()
	}
	// Checked below: thread_exits_registered (> 0), departed (= workers).
	// preemptions (the tick's safety net), left_between_pick_and_wait (a
	// race's count) and final_unregisters are measurements.
	r.Metric("preemptions", float64(preempts))
	r.Metric("thread_exits_registered", float64(exits))
	r.Metric("left_between_pick_and_wait", float64(inWait))
	r.Metric("final_unregisters", float64(unregs))
	r.Metric("departed", float64(departed))
	r.Logf("%d workers in all: %d ended their thread while registered, %d unregistered early for good, %d rejoins, %d forks; servers saw %d departures (%d of them only as ESRCH from umcg_wait)",
		len(all), exits, unregs, rejoins, forks, departed, inWait)
	r.Metric("workers", float64(len(all)))
	if int(departed) != len(all) {
		r.Errorf("servers saw %d workers depart for good, %d workers ran", departed, len(all))
	}
	if rejoins == 0 || forks == 0 || exits == 0 {
		r.Errorf("lifecycle ops did not all happen (rejoins %d, forks %d, registered thread exits %d): the run is too short to say anything", rejoins, forks, exits)
	}
	return nil
}

// scenarioExec: a worker execs the suite binary while its server and the
// other workers run. exec kills every other thread of the process
// (wherever they sleep: umcg_wait, the return-to-user wait, a blocking
// call) and must drop the exec'ing worker's UMCG state: the new image
// (execProbe) checks that it is no UMCG task and exits with execProbeOK.
func scenarioExec(r *reporter, p params) error {
	sc, err := newSched(r, p)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	argv := []string{exe, execProbeArg}
	env := os.Environ()
	var go_ atomic.Bool
	var execErr atomic.Pointer[error]
	mix := mixRound(opMix("mix"))
	body := func(k *wkCtx) bool {
		if k.id == 0 && go_.Load() {
			k.lastOp.Store(opExit)
			err := syscall.Exec(exe, argv, env) // returns only on failure
			execErr.Store(&err)
			return false
		}
		return mix(k)
	}
	c, err := sc.addServer(umcg.ServerConfig{Clock: unix.CLOCK_MONOTONIC})
	if err != nil {
		return err
	}
	for j := 0; j < p.Workers; j++ {
		if _, err := sc.addWorker(c, body); err != nil {
			return err
		}
	}
	r.Logf("worker 0 execs %s in %s", exe, p.Dur/2)
	execAt := time.Now().Add(p.Dur / 2)
	err = sc.run(func(now time.Time) {
		if now.After(execAt) {
			go_.Store(true)
		}
	})
	if e := execErr.Load(); e != nil {
		return fmt.Errorf("exec from worker 0 failed: %v", *e)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("the run ended and worker 0 never exec'ed")
}

// execProbeOK is the exit status of a healthy exec probe.
const execProbeOK = 42

// execProbe is the image a worker exec'ed. It must be an ordinary process:
// not registered (umcg_wait and umcg_ctl(UNREGISTER) fail with EINVAL), and
// its blocking calls work (the Go runtime that just started made plenty).
func execProbe() int {
	r := &reporter{w: os.Stdout}
	var page [2 * umcg.TaskAlign]byte
	self := (uintptr(unsafe.Pointer(&page[0])) + umcg.TaskAlign - 1) &^ (umcg.TaskAlign - 1)
	for _, c := range []struct {
		what string
		err  error
	}{
		{"umcg_wait(0, 0)", umcg.Wait(0, 0)},
		{"umcg_ctl(UNREGISTER|WORKER)", umcg.Ctl(umcg.CtlUnregister|umcg.CtlWorker, self, 0)},
		{"umcg_ctl(UNREGISTER)", umcg.Ctl(umcg.CtlUnregister, self, 0)},
	} {
		if c.err != unix.EINVAL {
			r.Errorf("exec probe: after exec from a worker, %s = %v, want EINVAL (the new image must be no UMCG task)", c.what, c.err)
		}
	}
	nanosleep(int64(time.Millisecond))
	r.Logf("exec probe: pid %d runs the new image, which is no UMCG task", os.Getpid())
	r.emit(record{Kind: recDone})
	if r.Failed() {
		return 1
	}
	return execProbeOK
}

// scenarioWorkerEfault: a worker makes its own struct umcg_task
// unreadable (mprotect PROT_NONE on a page of its own) and makes a system
// call. The kernel cannot pin or update the struct; the design says it
// kills the task with SIGKILL and logs "umcg: killing task". The parent
// expects the child to die of SIGKILL; surviving is a failure.
func scenarioWorkerEfault(r *reporter, p params) error {
	sc, err := newSched(r, p)
	if err != nil {
		return err
	}
	c, err := sc.addServer(umcg.ServerConfig{Clock: unix.CLOCK_MONOTONIC})
	if err != nil {
		return err
	}
	// Fill the server's page so the victim's struct gets a page of its own.
	page := os.Getpagesize()
	for {
		i, err := sc.a.Alloc()
		if err != nil {
			return err
		}
		if (uintptr(sc.a.Task(i).Addr())+umcg.TaskSize)%uintptr(page) == 0 {
			break
		}
	}
	var armed, survived atomic.Bool
	var mprotErr atomic.Pointer[error]
	mix := mixRound(opMix("solo"))
	body := func(k *wkCtx) bool {
		if !armed.Load() {
			return mix(k)
		}
		k.lastOp.Store(opExitUnreg)
		pg := k.w.T.Addr() &^ uintptr(page-1)
		if _, _, e := unix.Syscall(unix.SYS_MPROTECT, pg, uintptr(page), unix.PROT_NONE); e != 0 {
			err := error(e)
			mprotErr.Store(&err)
			return false
		}
		nanosleep(1_000_000) // the kernel must kill us here
		nanosleep(1_000_000)
		// Still alive: make the struct readable again so that the run
		// can end and say so.
		survived.Store(true)
		unix.Syscall(unix.SYS_MPROTECT, pg, uintptr(page), unix.PROT_READ|unix.PROT_WRITE)
		return false
	}
	k, err := sc.addWorker(c, body)
	if err != nil {
		return err
	}
	if (k.w.T.Addr() & uintptr(page-1)) != 0 {
		return fmt.Errorf("victim struct at %#x does not start a page", k.w.T.Addr())
	}
	armAt := time.Now().Add(p.Dur / 4)
	err = sc.run(func(now time.Time) {
		if now.After(armAt) {
			armed.Store(true)
		}
	})
	if e := mprotErr.Load(); e != nil {
		return fmt.Errorf("mprotect: %v", *e)
	}
	if survived.Load() {
		return fmt.Errorf("a worker whose struct umcg_task was PROT_NONE made two blocking system calls and was not killed (err %v)", err)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("the run ended before the worker's struct was made PROT_NONE")
}
