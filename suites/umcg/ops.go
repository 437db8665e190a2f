package main

import (
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// Worker operations. Each one is a piece of user code or a system call
// that makes the kernel do one of its UMCG transitions (block, unblock,
// yield, the COND_WAIT races), followed by the checks that transition
// promises. They run on UMCG worker threads: no allocation, no locks, no
// channels (see the umcg package doc); broken invariants go to the
// worker's evlog.
const (
	opCompute   = iota // user code in an on-cpu section: no other worker of the server may run
	opYield            // cooperative yield through the server
	opPipe             // pipe round trip through an echo thread (may block)
	opPipeBlock        // pipe read the echo answers only once we are BLOCKED (must block)
	opSleep            // nanosleep 0-300us (may block)
	opFutexWait        // FUTEX_WAIT with a 200us timeout, or a sibling's wake
	opFutexWake        // wake a random sibling's futex
	opFault            // MADV_DONTNEED + touch: a user page fault
	opGetppid          // a system call that never sleeps
	opR1               // RUNNABLE|COND_WAIT, signal to self, then umcg_wait
	opR3               // RUNNABLE|COND_WAIT, block in a syscall, then umcg_wait = EAGAIN
	opRejoin           // unregister and register again
	opFork             // raw fork; the child checks it is no UMCG task
	opExit             // end the thread without unregistering (the kernel cleans up)
	opExitUnreg        // unregister for good and end the thread
	opSpin             // a preemptible spin (preempt scenario)
	nOps
)

var opNames = [nOps]string{"compute", "yield", "pipe", "pipe-block", "sleep", "futex-wait", "futex-wake",
	"fault", "getppid", "r1-cond-wait-signal", "r3-cond-wait-block", "rejoin", "fork", "exit", "exit-unregister", "spin"}

func opName(op int) string {
	if op >= 0 && op < nOps {
		return opNames[op]
	}
	return "none"
}

// opMixes are the op weights of each mix.
func opMix(name string) [nOps]int {
	var m [nOps]int
	switch name {
	case "races":
		m[opCompute], m[opR1], m[opR3], m[opYield] = 20, 40, 40, 10
	case "solo":
		m[opPipe], m[opPipeBlock], m[opSleep], m[opFutexWait], m[opYield] = 25, 15, 25, 15, 20
	case "pins":
		m[opPipe], m[opPipeBlock], m[opSleep], m[opFutexWait], m[opFault], m[opGetppid] = 20, 10, 25, 15, 20, 10
	case "lifecycle":
		m = opMix("mix")
		m[opRejoin], m[opFork], m[opExit], m[opExitUnreg] = 3, 3, 1, 1
	default: // "mix"
		m[opCompute], m[opYield], m[opPipe], m[opPipeBlock], m[opSleep] = 30, 15, 8, 4, 10
		m[opFutexWait], m[opFutexWake], m[opFault], m[opGetppid], m[opR1], m[opR3] = 8, 8, 5, 5, 2, 2
	}
	return m
}

// rand is xorshift64*: allocation-free and reproducible from the seed.
func (k *wkCtx) rand() uint64 {
	x := k.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	k.rng = x
	return x * 0x2545f4914f6cdd1d
}

func (k *wkCtx) pickOp(mix *[nOps]int, total int) int {
	r := int(k.rand() % uint64(total))
	for op, w := range mix {
		if r < w {
			return op
		}
		r -= w
	}
	return opCompute
}

// snap is what a worker remembers of its timestamps before an op.
type snap struct {
	t0     int64 // clock before the op
	b0, r0 uint64
}

func (k *wkCtx) before() snap {
	return snap{t0: umcg.Now(unix.CLOCK_MONOTONIC), b0: k.w.T.BlockedTS(), r0: k.w.T.RunnableTS()}
}

// after checks what the kernel wrote while op ran: timestamps never go
// back; a block inside the op has blocked_ts within the op's interval and
// runnable_ts after it; a must-block op did block. It returns whether the
// op blocked.
func (k *wkCtx) after(s snap, op int, mustBlock bool, sleptNS int64) bool {
	// Timestamps first, then the clock: the Go code around the clock's
	// system call may block too (a runtime lock, a copy-on-write fault),
	// and such a block must not count as one inside the op.
	b1, r1 := k.w.T.BlockedTS(), k.w.T.RunnableTS()
	t1 := umcg.Now(unix.CLOCK_MONOTONIC)
	if b1 < s.b0 || r1 < s.r0 {
		k.ev.add(evTSBackwards, s.b0, b1, s.r0, r1)
	}
	blocked := b1 != s.b0
	switch {
	case blocked:
		k.blocks.Add(1)
		if int64(b1) < s.t0 || int64(b1) > t1 {
			k.ev.add(evTSRange, b1, uint64(s.t0), uint64(t1), uint64(op))
		}
		if r1 < b1 {
			k.ev.add(evTSOrder, r1, b1, uint64(op), 0)
		} else if int64(r1) > t1 {
			k.ev.add(evTSRange, r1, uint64(s.t0), uint64(t1), uint64(op))
		}
	case mustBlock:
		k.ev.add(evNoBlock, uint64(sleptNS), uint64(op), b1, 0)
	}
	k.checkRunning(op)
	return blocked
}

func (k *wkCtx) checkRunning(op int) {
	if st := k.w.T.State(); !umcg.IsRunning(st) {
		k.ev.add(evNotRunning, uint64(st), uint64(op), 0, 0)
	}
}

// doOp runs one op; it returns false when the op ended the worker.
func (k *wkCtx) doOp(op int) bool {
	switch op {
	case opCompute:
		k.compute(400 + int(k.rand()%1600))
	case opYield:
		k.yield(op)
	case opPipe:
		k.pipe(echoNow, false)
	case opPipeBlock:
		k.pipe(echoWhenBlocked, true)
	case opSleep:
		d := int64(k.rand() % 300_000)
		s := k.before()
		nanosleep(d)
		k.after(s, op, false, d)
	case opFutexWait:
		k.futexWait()
	case opFutexWake:
		k.futexWake()
	case opFault:
		k.fault()
	case opGetppid:
		s := k.before()
		unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		k.after(s, op, false, 0)
	case opR1:
		k.r1()
	case opR3:
		k.r3()
	case opRejoin:
		return k.rejoin()
	case opFork:
		k.fork()
	case opExit, opExitUnreg:
		return false
	}
	return true
}

// compute is an on-cpu section: the worker claims its server's owner
// word and checks, every few hundred iterations, that nobody else claimed
// it meanwhile. Someone else may legitimately have run only if this worker
// was off the CPU: it blocked (a page fault, say) or was preempted, and
// then the kernel moved its blocked_ts or runnable_ts.
func (k *wkCtx) compute(iters int) {
	me := int32(k.id + 1)
	b0, r0 := k.w.T.BlockedTS(), k.w.T.RunnableTS()
	k.checkRunning(opCompute)
	k.srv.owner.Store(me)
	x := k.rng
	for i := 0; i < iters; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		if i%200 == 199 {
			if o := k.srv.owner.Swap(me); o != me && o != 0 {
				k.overlap(o, b0, r0)
			}
		}
	}
	k.sink += x
	if o := k.srv.owner.Load(); o != me && o != 0 {
		k.overlap(o, b0, r0)
	}
	k.checkRunning(opCompute)
}

// overlap records that worker o entered the server's on-cpu section while
// this worker was in it, unless this worker's timestamps show it was off
// the CPU meanwhile.
func (k *wkCtx) overlap(o int32, b0, r0 uint64) {
	if k.w.T.BlockedTS() != b0 || k.w.T.RunnableTS() != r0 {
		return
	}
	other := k.sc.worker(int(o - 1))
	var ost uint32
	if other != nil {
		ost = other.w.T.State()
	}
	k.ev.add(evOverlap, uint64(k.id), uint64(o-1), uint64(ost), uint64(k.w.T.State()))
}

func (k *wkCtx) yield(op int) {
	err := k.w.Yield()
	switch err {
	case nil:
	case unix.EAGAIN:
		k.yieldEAGAIN.Add(1)
	default:
		e, _ := err.(unix.Errno)
		k.ev.add(evYieldErr, uint64(e), uint64(k.w.T.State()), 0, 0)
	}
	k.checkRunning(op)
}

// pipe sends the echo thread a request and reads its answer; with
// echoWhenBlocked the echo answers only once it saw this worker BLOCKED
// (or gave up after a long time), so the read must block.
func (k *wkCtx) pipe(mode byte, mustBlock bool) {
	op := opPipe
	if mustBlock {
		op = opPipeBlock
	}
	s := k.before()
	k.buf[0] = mode
	if _, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(k.reqW), uintptr(unsafe.Pointer(&k.buf[0])), 1); e != 0 {
		k.ev.add(evSyscall, uint64(op), uint64(e), 0, 0)
		return
	}
	for {
		_, _, e := unix.Syscall(unix.SYS_READ, uintptr(k.repR), uintptr(unsafe.Pointer(&k.buf[1])), 1)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			k.ev.add(evSyscall, uint64(op), uint64(e), 0, 0)
		}
		break
	}
	k.after(s, op, mustBlock, 0)
}

func (k *wkCtx) futexWait() {
	s := k.before()
	w := k.futex
	storeU32(w, 0)
	ts := unix.Timespec{Nsec: 200_000}
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitPrivate, 0, uintptr(unsafe.Pointer(&ts)), 0, 0)
	k.after(s, opFutexWait, false, 0)
}

func (k *wkCtx) futexWake() {
	o := k.sc.worker(int(k.rand() % uint64(k.sc.nWorkers())))
	if o == nil {
		return
	}
	storeU32(o.futex, 1)
	s := k.before()
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(o.futex)), futexWakePrivate, 1, 0, 0, 0)
	k.after(s, opFutexWake, false, 0)
}

// fault drops the worker's fault page and touches it again: a user page
// fault, where the kernel pins the worker's struct pages too.
func (k *wkCtx) fault() {
	s := k.before()
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(unsafe.Pointer(&k.page[0])), uintptr(len(k.page)), unix.MADV_DONTNEED); e != 0 {
		k.ev.add(evSyscall, opFault, uint64(e), 0, 0)
		return
	}
	k.page[int(k.rand()%uint64(len(k.page)))] = 1
	k.after(s, opFault, false, 0)
}

// r1 is PZ's race R1: with RUNNABLE|COND_WAIT stored, a signal arrives
// before umcg_wait. The return-to-user hook must not put the worker to
// sleep (nobody would wake it: it is on no list); the umcg_wait that
// follows then queues it as usual.
func (k *wkCtx) r1() {
	st := k.w.T.State()
	k.w.T.SetState(st&umcg.UserMask | umcg.StateRunnable | umcg.TFCondWait)
	sig := unix.SIGUSR1
	if k.rand()%2 == 0 {
		sig = unix.SIGURG
	}
	unix.Syscall(unix.SYS_TGKILL, uintptr(k.sc.pid), uintptr(k.w.TID()), uintptr(sig))
	err := umcg.Wait(0, 0)
	if err != nil && err != unix.EAGAIN {
		e, _ := err.(unix.Errno)
		k.ev.add(evYieldErr, uint64(e), uint64(k.w.T.State()), 0, 0)
	}
	k.checkRunning(opR1)
}

// r3 is race R3: with RUNNABLE|COND_WAIT stored, the worker blocks in a
// system call before it reaches umcg_wait. The kernel must make it
// BLOCKED (and wake the server), RUNNABLE on the way out, and run it only
// when the server picks it, so the umcg_wait that follows finds it
// RUNNING and answers EAGAIN.
func (k *wkCtx) r3() {
	st := k.w.T.State()
	s := k.before()
	k.w.T.SetState(st&umcg.UserMask | umcg.StateRunnable | umcg.TFCondWait)
	k.buf[0] = echoWhenBlocked
	if _, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(k.reqW), uintptr(unsafe.Pointer(&k.buf[0])), 1); e != 0 {
		k.ev.add(evSyscall, opR3, uint64(e), 0, 0)
	}
	for {
		if _, _, e := unix.Syscall(unix.SYS_READ, uintptr(k.repR), uintptr(unsafe.Pointer(&k.buf[1])), 1); e != unix.EINTR {
			break
		}
	}
	blocked := k.w.T.BlockedTS() != s.b0
	mid := k.w.T.State()
	if blocked && !umcg.IsRunning(mid) || !blocked && mid&^umcg.UserMask != umcg.StateRunnable|umcg.TFCondWait {
		k.ev.add(evCondWait, uint64(mid), b2u(blocked), 0, 0)
	}
	err := umcg.Wait(0, 0)
	if blocked && err != unix.EAGAIN {
		e, _ := err.(unix.Errno)
		k.ev.add(evR3, uint64(e), uint64(k.w.T.State()), 0, 0)
	}
	k.after(s, opR3, true, 0)
}

// rejoin unregisters (not for good) and registers again on the same slot.
func (k *wkCtx) rejoin() bool {
	if err := k.w.Unregister(false); err != nil {
		k.fatal(err)
		return false
	}
	// An ordinary thread now: its system calls must not touch UMCG state.
	unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
	if err := k.w.Register(); err != nil {
		k.fatal(err)
		k.w.Abandon()
		k.registerFailed = true
		return false
	}
	k.rejoins.Add(1)
	return true
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Futex operations (linux/futex.h).
const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

// nanosleep sleeps ns nanoseconds with a plain (blocking) system call.
func nanosleep(ns int64) {
	ts := unix.NsecToTimespec(ns)
	unix.Syscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// fork forks the worker with a raw fork(2); the child checks that it is
// no UMCG task (forkChild) while the parent waits for it (a blocking
// wait4: a block event like any other).
func (k *wkCtx) fork() {
	a := &k.forkArgs
	a.self = unsafe.Pointer(k.w.T)
	a.serverTID = uintptr(k.srv.s.TID())
	a.report = unsafe.Pointer(&k.report[0])
	a.sleep = syscall.Timespec{Nsec: 500_000}
	k.report[0], k.report[1] = 0xff, 0
	s := k.before()
	pid, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if e != 0 {
		k.ev.add(evSyscall, opFork, uint64(e), 0, 0)
		return
	}
	if pid == 0 {
		forkChild(a)
	}
	var ws syscall.WaitStatus
	for {
		_, _, e := unix.Syscall6(unix.SYS_WAIT4, pid, uintptr(unsafe.Pointer(&ws)), 0, 0, 0, 0)
		if e != unix.EINTR {
			break
		}
	}
	switch {
	case ws.Signaled():
		k.ev.add(evForkChild, 100+uint64(ws.Signal()), 0, 0, 0)
	case ws.ExitStatus() != forkOK:
		k.ev.add(evForkChild, uint64(k.report[0]), uint64(k.report[1]), 0, 0)
	default:
		k.forks.Add(1)
	}
	k.after(s, opFork, false, 0)
}

func storeU32(p *uint32, v uint32) { atomic.StoreUint32(p, v) }
