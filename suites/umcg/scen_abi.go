package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// scenarioABI (UM1) checks every error the design documents for bad
// input, and the plain successes around them, one thread per group of
// cases: an unregistered thread, a registered server, workers of a
// running server, a server whose struct becomes unreadable. A case that
// hangs (the kernel accepted a worker registration it should refuse, so
// the thread waits to be scheduled forever) fails its group after a time
// limit and the next group goes on.
func scenarioABI(r *reporter, p params) error {
	a, err := umcg.NewArena(64)
	if err != nil {
		return err
	}
	c := &abiRun{r: r, a: a, pid: unix.Getpid()}
	for _, g := range []struct {
		name string
		run  func(c *abiRun)
	}{
		{"unregistered thread", abiUnregistered},
		{"server", abiServer},
		{"server clocks", abiClocks},
		{"workers", abiWorkers},
		{"server struct unreadable", abiServerFault},
	} {
		c.group(g.name, g.run)
	}
	r.Metric("abi_checks", float64(c.checks.Load()))
	r.Logf("%d ABI checks, %d failed", c.checks.Load(), c.failed.Load())
	if c.checks.Load() == 0 {
		r.Errorf("no ABI check ran")
	}
	return nil
}

// abiRun collects the results of the ABI cases.
type abiRun struct {
	r      *reporter
	a      *umcg.Arena
	pid    int
	mu     sync.Mutex // guards out
	out    []string
	checks atomic.Int32
	failed atomic.Int32
	cur    atomic.Pointer[string] // the case running now, for hang reports
	tid    atomic.Int32           // the group's thread
}

// expect records one check: got must be exactly want (nil or an errno).
func (c *abiRun) expect(name string, got, want error) bool {
	c.checks.Add(1)
	if got == want {
		return true
	}
	c.failf("%s: got %v, want %v", name, errName(got), errName(want))
	return false
}

func (c *abiRun) failf(format string, args ...any) {
	c.failed.Add(1)
	c.mu.Lock()
	c.out = append(c.out, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

func errName(err error) string {
	if err == nil {
		return "success"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// at names the case about to run (for a hang report).
func (c *abiRun) at(name string) { c.cur.Store(&name) }

// group runs fn on a fresh locked thread (which exits afterwards: it may
// carry UMCG state) and reports its results, or a hang.
func (c *abiRun) group(name string, fn func(c *abiRun)) {
	var done atomic.Bool
	c.at("(start)")
	c.tid.Store(0)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		c.tid.Store(int32(unix.Gettid()))
		fn(c)
		done.Store(true)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !done.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.mu.Lock()
	out := c.out
	c.out = nil
	c.mu.Unlock()
	for _, m := range out {
		c.r.Errorf("%s: %s", name, m)
	}
	if !done.Load() {
		c.r.Errorf("%s: hung in case %q for 20s: %s", name, *c.cur.Load(), threadInfo(c.pid, int(c.tid.Load())))
	}
}

// onThread runs fn on another fresh locked thread and waits for it, up
// to limit; false if it did not finish (it is then left behind).
func onThread(limit time.Duration, fn func()) bool {
	var done atomic.Bool
	go func() {
		runtime.LockOSThread()
		fn()
		done.Store(true)
	}()
	deadline := time.Now().Add(limit)
	for !done.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return done.Load()
}

// otherTID is a thread of this process that is neither self nor a UMCG
// task (at the time): the main thread, or whatever the Go runtime runs.
func otherTID(self int, avoid ...int) int {
	ents, _ := os.ReadDir("/proc/self/task")
next:
	for _, e := range ents {
		var tid int
		if _, err := fmt.Sscan(e.Name(), &tid); err != nil || tid == self {
			continue
		}
		for _, a := range avoid {
			if tid == a {
				continue next
			}
		}
		return tid
	}
	return noSuchTID
}

// Clocks umcg_ctl accepts; every other id must be refused.
var validClocks = []int32{unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME, unix.CLOCK_TAI}

const (
	noSuchTID = 0x3ffffff0
	// kernelAddr is 64-byte aligned and above every user address on both
	// targets: access_ok() refuses it.
	kernelAddr = ^uintptr(0) &^ 0xfffff
)

// badMappings returns an aligned address that is not mapped and one on a
// PROT_NONE page (kept mapped, so nothing else lands there). The unmapped
// page is a one-page hole between PROT_NONE guards: on i386 the address
// space is small and a wider hole was soon taken by the Go runtime's own
// mappings, turning an EFAULT case into a read of random memory.
func badMappings() (unmapped, protNone uintptr, err error) {
	pg := uintptr(os.Getpagesize())
	m, err := unix.Mmap(-1, 0, int(3*pg), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, 0, err
	}
	base := uintptr(unsafe.Pointer(&m[0]))
	if _, _, e := unix.Syscall(unix.SYS_MUNMAP, base+pg, pg, 0); e != 0 {
		return 0, 0, e
	}
	return base + pg, base, nil
}

// unmappedNow reports whether the page at addr is still unmapped
// (mincore fails with ENOMEM for an address outside every mapping).
func unmappedNow(addr uintptr) bool {
	var vec [1]byte
	_, _, e := unix.Syscall(unix.SYS_MINCORE, addr, uintptr(os.Getpagesize()), uintptr(unsafe.Pointer(&vec[0])))
	return e == unix.ENOMEM
}

// abiUnregistered: umcg_ctl argument checks on a thread that is no UMCG
// task, with everything but the one thing under test valid for a server
// registration; then the calls that need a registered caller.
func abiUnregistered(c *abiRun) {
	tid := unix.Gettid()
	slot, _ := c.a.Alloc()
	t := c.a.Task(slot)
	self := t.Addr()
	unmapped, protNone, err := badMappings()
	if err != nil {
		c.failf("setup: %v", err)
		return
	}
	reg := func(name string, flags uint32, addr uintptr, clock int32, prep func(), want error) {
		c.at(name)
		t.Reset(umcg.StateRunning, uint32(tid))
		if prep != nil {
			prep()
		}
		got := umcg.Ctl(flags, addr, clock)
		c.expect(name, got, want)
		if got == nil && flags&0xff == umcg.CtlRegister {
			// Accepted by mistake: undo it so the next cases still run
			// on an unregistered thread.
			t.SetState(umcg.StateRunning)
			umcg.Ctl(umcg.CtlUnregister|flags&umcg.CtlWorker, addr, 0)
		}
	}
	mono := int32(unix.CLOCK_MONOTONIC)
	R := umcg.CtlRegister
	other := otherTID(tid)
	reg("flags 0 (no command)", 0, self, mono, nil, unix.EINVAL)
	reg("REGISTER|UNREGISTER", R|umcg.CtlUnregister, self, mono, nil, unix.EINVAL)
	reg("REGISTER|0x4 (unknown command bit)", R|0x4, self, mono, nil, unix.EINVAL)
	reg("REGISTER|0x100 (unknown flag)", R|0x100, self, mono, nil, unix.EINVAL)
	reg("REGISTER|0x20000 (unknown flag)", R|0x20000, self, mono, nil, unix.EINVAL)
	reg("REGISTER self NULL", R, 0, mono, nil, unix.EINVAL)
	for _, off := range []uintptr{1, 8, 32} {
		reg(fmt.Sprintf("REGISTER self misaligned (+%d)", off), R, self+off, mono, nil, unix.EINVAL)
	}
	if unmappedNow(unmapped) {
		reg("REGISTER self unmapped", R, unmapped, mono, nil, unix.EFAULT)
	} else {
		c.r.Logf("REGISTER self unmapped: not checked, the one-page hole at %#x was mapped by someone else", unmapped)
	}
	reg("REGISTER self on a PROT_NONE page", R, protNone, mono, nil, unix.EFAULT)
	reg("REGISTER self a kernel address", R, kernelAddr, mono, nil, unix.EFAULT)
	// The kernel writes the struct through a pin of its page: private
	// anonymous writable memory only.
	for _, m := range []struct {
		what        string
		prot, flags int
	}{
		{"a read-only page", unix.PROT_READ, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS},
		{"a MAP_SHARED (shmem) page", unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_ANONYMOUS},
	} {
		mem, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, m.flags)
		if err != nil {
			c.failf("mmap for %s: %v", m.what, err)
			continue
		}
		mt := (*umcg.Task)(unsafe.Pointer(&mem[0]))
		mt.Reset(umcg.StateRunning, uint32(tid))
		if err := unix.Mprotect(mem, m.prot); err != nil {
			c.failf("mprotect for %s: %v", m.what, err)
			continue
		}
		reg("REGISTER self on "+m.what, R, mt.Addr(), mono, func() {}, unix.EFAULT)
	}
	for _, clk := range []int32{unix.CLOCK_PROCESS_CPUTIME_ID, unix.CLOCK_THREAD_CPUTIME_ID, unix.CLOCK_MONOTONIC_RAW,
		unix.CLOCK_REALTIME_COARSE, unix.CLOCK_MONOTONIC_COARSE, unix.CLOCK_REALTIME_ALARM, 99, -1} {
		reg(fmt.Sprintf("REGISTER clock %d", clk), R, self, clk, nil, unix.EINVAL)
	}
	reg("REGISTER next_tid != 0", R, self, mono, func() { t.SetNextTID(uint32(tid)) }, unix.EINVAL)
	reg("REGISTER __hole != 0", R, self, mono, func() { t.SetWord32(umcg.OffHole, 1) }, unix.EINVAL)
	for i := uintptr(0); i < 3; i++ {
		reg(fmt.Sprintf("REGISTER __zero[%d] != 0", i), R, self, mono, func() { t.SetWord64(umcg.OffZero+8*i, 1) }, unix.EINVAL)
	}
	reg("REGISTER runnable_workers_ptr != 0", R, self, mono, func() { t.SetRunnableWorkers(uint64(self)) }, unix.EINVAL)
	for _, st := range []uint32{umcg.StateNone, umcg.StateRunnable, umcg.StateBlocked,
		umcg.StateRunning | umcg.TFCondWait, umcg.StateRunning | umcg.TFPreempt} {
		reg("REGISTER server in state "+umcg.FormatState(st), R, self, mono, func() { t.SetState(st) }, unix.EINVAL)
	}
	for _, stid := range []int{0, other, unix.Getppid(), noSuchTID} {
		reg(fmt.Sprintf("REGISTER server with server_tid %d (not the caller)", stid), R, self, mono,
			func() { t.SetServerTID(uint32(stid)) }, unix.ESRCH)
	}
	c.at("UNREGISTER unregistered")
	c.expect("UNREGISTER when not registered", umcg.Ctl(umcg.CtlUnregister, self, 0), unix.EINVAL)
	c.expect("UNREGISTER|WORKER when not registered", umcg.Ctl(umcg.CtlUnregister|umcg.CtlWorker, self, 0), unix.EINVAL)
	c.at("umcg_wait unregistered")
	c.expect("umcg_wait(0, 0) when not registered", umcg.Wait(0, 0), unix.EINVAL)
	c.expect("umcg_wait(1, 0) when not registered", umcg.Wait(1, 0), unix.EINVAL)
	c.at("umcg_kick")
	c.expect("umcg_kick(1, tid) (flags != 0)", umcg.Kick(1, other), unix.EINVAL)
	c.expect("umcg_kick(0, a thread that is no UMCG task)", umcg.Kick(0, other), unix.ESRCH)
	c.expect("umcg_kick(0, no such tid)", umcg.Kick(0, noSuchTID), unix.ESRCH)
	c.expect("umcg_kick(0, own tid, not registered)", umcg.Kick(0, tid), unix.ESRCH)
	// Worker registrations against a server_tid that is no server: each
	// on a thread of its own, since a kernel that accepts one puts the
	// thread to sleep until a server runs it, which never happens.
	for _, stid := range []int{0, tid, other, noSuchTID} {
		name := fmt.Sprintf("REGISTER|WORKER with server_tid %d (no server)", stid)
		c.at(name)
		slot, _ := c.a.Alloc()
		wt := c.a.Task(slot)
		wt.Reset(umcg.StateBlocked, uint32(stid))
		var got error
		if !onThread(3*time.Second, func() { got = umcg.Ctl(umcg.CtlRegister|umcg.CtlWorker, wt.Addr(), mono) }) {
			c.failf("%s: did not return within 3s (registered and waiting to be scheduled?), state %s", name, umcg.FormatState(wt.State()))
			continue
		}
		c.expect(name, got, unix.ESRCH)
	}
}

// abiServer: a registered server's calls, good and bad.
func abiServer(c *abiRun) {
	tid := unix.Gettid()
	slot, _ := c.a.Alloc()
	t := c.a.Task(slot)
	self := t.Addr()
	slot2, _ := c.a.Alloc()
	other := c.a.Task(slot2)
	mono := int32(unix.CLOCK_MONOTONIC)
	c.at("register")
	t.Reset(umcg.StateRunning, uint32(tid))
	if !c.expect("REGISTER server", umcg.Ctl(umcg.CtlRegister, self, mono), nil) {
		return
	}
	if st := t.State(); st != umcg.StateRunning {
		c.failf("after REGISTER the server's state is %s, want RUNNING", umcg.FormatState(st))
	}
	c.at("double register")
	c.expect("REGISTER again (same struct)", umcg.Ctl(umcg.CtlRegister, self, mono), unix.EINVAL)
	other.Reset(umcg.StateRunning, uint32(tid))
	c.expect("REGISTER again (another struct)", umcg.Ctl(umcg.CtlRegister, other.Addr(), mono), unix.EINVAL)
	other.Reset(umcg.StateBlocked, uint32(tid))
	c.expect("REGISTER|WORKER while a server", umcg.Ctl(umcg.CtlRegister|umcg.CtlWorker, other.Addr(), mono), unix.EINVAL)
	c.at("wait flags")
	c.expect("umcg_wait(1, 0)", umcg.Wait(1, 0), unix.EINVAL)
	c.at("wait RUNNING")
	c.expect("umcg_wait while RUNNING", umcg.Wait(0, 0), unix.EAGAIN)
	otid := otherTID(tid)
	for _, nt := range []uint32{uint32(otid), noSuchTID} {
		name := fmt.Sprintf("umcg_wait with next_tid %d (no UMCG task)", nt)
		c.at(name)
		t.SetNextTID(nt)
		t.SetState(umcg.StateRunnable)
		c.expect(name, umcg.Wait(0, uint64(umcg.Now(mono)+int64(time.Second))), unix.ESRCH)
		t.SetNextTID(0)
		t.SetState(umcg.StateRunning)
	}
	c.at("timeout in the past")
	t.SetState(umcg.StateRunnable)
	c.expect("umcg_wait, timeout in the past", umcg.Wait(0, uint64(umcg.Now(mono)-int64(time.Millisecond))), unix.ETIMEDOUT)
	c.stateIs("after a timeout in the past", t, umcg.StateRunning)
	c.timedWait("RUNNABLE", t, mono, umcg.StateRunnable, 100*time.Millisecond)
	c.timedWait("RUNNABLE|COND_WAIT", t, mono, umcg.StateRunnable|umcg.TFCondWait, 30*time.Millisecond)
	c.at("signal")
	c.signalled(t, mono)
	c.at("kick")
	c.expect("umcg_kick(0, own tid)", umcg.Kick(0, tid), nil)
	c.expect("umcg_kick(0, a thread that is no UMCG task)", umcg.Kick(0, otid), unix.ESRCH)
	c.at("bad unregister")
	c.expect("UNREGISTER|WORKER of a server", umcg.Ctl(umcg.CtlUnregister|umcg.CtlWorker, self, 0), unix.EINVAL)
	c.expect("UNREGISTER with another struct", umcg.Ctl(umcg.CtlUnregister, other.Addr(), 0), unix.EINVAL)
	t.SetState(umcg.StateRunnable)
	c.expect("UNREGISTER while RUNNABLE", umcg.Ctl(umcg.CtlUnregister, self, 0), unix.EINVAL)
	t.SetState(umcg.StateRunning)
	c.at("unregister")
	if c.expect("UNREGISTER", umcg.Ctl(umcg.CtlUnregister, self, 0), nil) {
		c.stateIs("after UNREGISTER", t, umcg.StateNone)
	}
	c.expect("UNREGISTER twice", umcg.Ctl(umcg.CtlUnregister, self, 0), unix.EINVAL)
	c.expect("umcg_wait after UNREGISTER", umcg.Wait(0, 0), unix.EINVAL)
	c.at("register again")
	t.Reset(umcg.StateRunning, uint32(tid))
	if c.expect("REGISTER again after UNREGISTER", umcg.Ctl(umcg.CtlRegister, self, mono), nil) {
		c.expect("UNREGISTER again", umcg.Ctl(umcg.CtlUnregister, self, 0), nil)
	}
}

func (c *abiRun) stateIs(when string, t *umcg.Task, want uint32) {
	c.checks.Add(1)
	if st := t.State(); st != want {
		c.failf("%s: state %s, want %s", when, umcg.FormatState(st), umcg.FormatState(want))
	}
}

// timedWait: a server's umcg_wait with nobody to run times out after d,
// not before (a 64-bit timeout cut to 32 bits, as an i386 syscall without
// a split argument would do, lands in the past) and not much later.
func (c *abiRun) timedWait(what string, t *umcg.Task, clock int32, state uint32, d time.Duration) {
	name := fmt.Sprintf("umcg_wait from %s, timeout now+%s (clock %d)", what, d, clock)
	c.at(name)
	t.SetState(state)
	start := time.Now()
	err := umcg.Wait(0, uint64(umcg.Now(clock)+d.Nanoseconds()))
	el := time.Since(start)
	if c.expect(name, err, unix.ETIMEDOUT) {
		c.checks.Add(1)
		if el < d-time.Millisecond || el > d+3*time.Second {
			c.failf("%s: returned after %s", name, el)
		}
	}
	c.stateIs(name, t, umcg.StateRunning)
	t.SetState(umcg.StateRunning)
}

// signalled: a signal cuts a server's umcg_wait short with EINTR and the
// server is RUNNING again.
func (c *abiRun) signalled(t *umcg.Task, clock int32) {
	tid := unix.Gettid()
	var waiting atomic.Bool
	var sent atomic.Bool
	go func() {
		for !waiting.Load() {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		unix.Tgkill(c.pid, tid, unix.SIGUSR1)
		sent.Store(true)
	}()
	t.SetState(umcg.StateRunnable)
	waiting.Store(true)
	start := time.Now()
	err := umcg.Wait(0, uint64(umcg.Now(clock)+int64(3*time.Second)))
	el := time.Since(start)
	if c.expect("server umcg_wait hit by a signal", err, unix.EINTR) && el > 2*time.Second {
		c.failf("server umcg_wait hit by a signal returned after %s", el)
	}
	c.stateIs("after EINTR", t, umcg.StateRunning)
	t.SetState(umcg.StateRunning)
	for !sent.Load() {
		time.Sleep(time.Millisecond)
	}
}

// abiClocks: a server registered with each valid clock times out in that
// clock. A guard signal after 3s turns a wait on the wrong clock into a
// failed check rather than a hang.
func abiClocks(c *abiRun) {
	tid := unix.Gettid()
	slot, _ := c.a.Alloc()
	t := c.a.Task(slot)
	for _, clk := range validClocks {
		name := fmt.Sprintf("clock %d", clk)
		c.at(name)
		t.Reset(umcg.StateRunning, uint32(tid))
		if !c.expect("REGISTER with "+name, umcg.Ctl(umcg.CtlRegister, t.Addr(), clk), nil) {
			continue
		}
		var stop atomic.Bool
		go func() {
			for deadline := time.Now().Add(3 * time.Second); !stop.Load(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					unix.Tgkill(c.pid, tid, unix.SIGUSR1)
					return
				}
			}
		}()
		c.timedWait("RUNNABLE", t, clk, umcg.StateRunnable, 30*time.Millisecond)
		stop.Store(true)
		t.SetState(umcg.StateRunning)
		c.expect("UNREGISTER with "+name, umcg.Ctl(umcg.CtlUnregister, t.Addr(), 0), nil)
	}
}

// abiWorkers: a running server (the library's loop) and workers of it.
func abiWorkers(c *abiRun) {
	mono := int32(unix.CLOCK_MONOTONIC)
	srv, err := umcg.NewServer(c.a, 100, umcg.ServerConfig{Clock: mono})
	if err != nil {
		c.failf("setup: %v", err)
		return
	}
	var srvErr atomic.Pointer[error]
	go func() {
		if err := srv.Run(); err != nil {
			srvErr.Store(&err)
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); !srv.Registered(); time.Sleep(time.Millisecond) {
		if e := srvErr.Load(); e != nil || time.Now().After(deadline) {
			c.failf("server did not register: %v", e)
			return
		}
	}
	w, _ := srv.NewWorker(0)
	slot, _ := c.a.Alloc()
	other := c.a.Task(slot)
	var registered, release atomic.Bool
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		c.at("worker register")
		if err := w.Register(); err != nil {
			c.failf("worker REGISTER: %v", err)
			w.Abandon()
			return
		}
		c.checks.Add(1)
		self := w.T.Addr()
		c.expect("worker umcg_wait with a timeout", umcg.Wait(0, uint64(umcg.Now(mono)+int64(time.Second))), unix.ERANGE)
		c.stateIs("worker after ERANGE", w.T, umcg.StateRunning)
		c.expect("worker umcg_wait(1, 0)", umcg.Wait(1, 0), unix.EINVAL)
		other.Reset(umcg.StateBlocked, uint32(srv.TID()))
		c.expect("worker REGISTER|WORKER again", umcg.Ctl(umcg.CtlRegister|umcg.CtlWorker, other.Addr(), mono), unix.EINVAL)
		other.Reset(umcg.StateRunning, uint32(w.TID()))
		c.expect("worker REGISTER as a server", umcg.Ctl(umcg.CtlRegister, other.Addr(), mono), unix.EINVAL)
		c.expect("worker UNREGISTER without WORKER", umcg.Ctl(umcg.CtlUnregister, self, 0), unix.EINVAL)
		// COND_WAIT keeps the return to user space from waiting.
		w.T.SetState(umcg.StateRunnable | umcg.TFCondWait)
		c.expect("worker UNREGISTER while RUNNABLE|COND_WAIT", umcg.Ctl(umcg.CtlUnregister|umcg.CtlWorker, self, 0), unix.EINVAL)
		w.T.SetState(umcg.StateRunning)
		if err := w.Yield(); err != nil && err != unix.EAGAIN {
			c.failf("worker yield: %v", err)
		}
		c.expect("worker umcg_kick(0, own tid)", umcg.Kick(0, w.TID()), nil)
		registered.Store(true)
		for !release.Load() {
			if err := w.Yield(); err != nil && err != unix.EAGAIN {
				c.failf("worker yield: %v", err)
				break
			}
			nanosleep(1_000_000)
		}
		c.checks.Add(1)
		if err := w.Unregister(true); err != nil {
			c.failf("worker UNREGISTER: %v", err)
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); !registered.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			c.failf("worker did not get through its checks within 5s: %s", w.T.Snapshot())
			return
		}
	}
	// Registrations that must be refused, each on a thread of its own.
	refuse := func(name string, flags uint32, prep func(t *umcg.Task), clock int32, want error) {
		c.at(name)
		slot, _ := c.a.Alloc()
		t := c.a.Task(slot)
		var got error
		if !onThread(3*time.Second, func() {
			prep(t)
			got = umcg.Ctl(flags, t.Addr(), clock)
		}) {
			c.failf("%s: did not return within 3s (accepted and waiting to be scheduled?), state %s", name, umcg.FormatState(t.State()))
			return
		}
		c.expect(name, got, want)
	}
	RW := umcg.CtlRegister | umcg.CtlWorker
	stid := uint32(srv.TID())
	refuse("REGISTER|WORKER with server_tid of a worker", RW, func(t *umcg.Task) { t.Reset(umcg.StateBlocked, uint32(w.TID())) }, mono, unix.ESRCH)
	refuse("REGISTER server with server_tid of another server", umcg.CtlRegister, func(t *umcg.Task) { t.Reset(umcg.StateRunning, stid) }, mono, unix.ESRCH)
	for _, st := range []uint32{umcg.StateNone, umcg.StateRunning, umcg.StateRunnable, umcg.StateBlocked | umcg.TFCondWait, umcg.StateBlocked | umcg.TFPreempt} {
		refuse("REGISTER|WORKER in state "+umcg.FormatState(st), RW, func(t *umcg.Task) { t.Reset(st, stid) }, mono, unix.EINVAL)
	}
	refuse("REGISTER|WORKER with clock MONOTONIC_RAW", RW, func(t *umcg.Task) { t.Reset(umcg.StateBlocked, stid) }, unix.CLOCK_MONOTONIC_RAW, unix.EINVAL)
	refuse("REGISTER|WORKER with next_tid != 0", RW, func(t *umcg.Task) { t.Reset(umcg.StateBlocked, stid); t.SetNextTID(stid) }, mono, unix.EINVAL)
	refuse("REGISTER|WORKER with runnable_workers_ptr != 0", RW, func(t *umcg.Task) {
		t.Reset(umcg.StateBlocked, stid)
		t.SetRunnableWorkers(uint64(t.Addr()))
	}, mono, unix.EINVAL)
	c.at("kicks from outside")
	c.expect("umcg_kick(0, worker) from a non-UMCG thread", umcg.Kick(0, w.TID()), nil)
	c.expect("umcg_kick(0, server) from a non-UMCG thread", umcg.Kick(0, srv.TID()), nil)
	release.Store(true)
	select {
	case <-workerDone:
	case <-time.After(5 * time.Second):
		c.failf("worker did not unregister within 5s: %s", w.T.Snapshot())
		return
	}
	c.stateIs("worker after UNREGISTER", w.T, umcg.StateNone)
	// A worker that ends its thread while registered: the kernel makes it
	// NONE and wakes the server, which must see it go.
	w2, _ := srv.NewWorker(1)
	c.at("worker exits registered")
	before := srv.Stats.Departed.Load()
	if !onThread(5*time.Second, func() {
		if err := w2.Register(); err != nil {
			c.failf("second worker REGISTER: %v", err)
			w2.Abandon()
			return
		}
		w2.MarkFinal()
	}) {
		c.failf("second worker did not register within 5s: %s", w2.T.Snapshot())
		return
	}
	for deadline := time.Now().Add(5 * time.Second); srv.Stats.Departed.Load() == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			c.failf("a worker thread that exited while registered: the server did not see it leave in 5s (worker %s)", w2.T.Snapshot())
			return
		}
	}
	c.stateIs("worker whose thread exited", w2.T, umcg.StateNone)
	closed := make(chan struct{})
	go func() { srv.Close(unix.SIGURG); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		c.failf("server did not exit within 5s: %s", srv.T.Snapshot())
		return
	}
	if e := srvErr.Load(); e != nil {
		c.failf("server: %v", *e)
	}
	vs, _ := srv.Violations()
	for _, v := range vs {
		c.failf("server: %s", v)
	}
}

// abiServerFault: a registered server whose struct becomes unreadable gets
// EFAULT from its calls (servers are not killed), and its thread then
// exits with the struct still unreadable: the exit hook must cope.
func abiServerFault(c *abiRun) {
	tid := unix.Gettid()
	pg := os.Getpagesize()
	m, err := unix.Mmap(-1, 0, pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		c.failf("setup: %v", err)
		return
	}
	t := (*umcg.Task)(unsafe.Pointer(&m[0]))
	t.Reset(umcg.StateRunning, uint32(tid))
	c.at("register")
	if !c.expect("REGISTER server on its own page", umcg.Ctl(umcg.CtlRegister, t.Addr(), unix.CLOCK_MONOTONIC), nil) {
		return
	}
	if err := unix.Mprotect(m, unix.PROT_NONE); err != nil {
		c.failf("mprotect: %v", err)
		return
	}
	c.at("wait on PROT_NONE struct")
	c.expect("server umcg_wait with its struct PROT_NONE", umcg.Wait(0, 0), unix.EFAULT)
	c.at("unregister PROT_NONE struct")
	c.expect("server UNREGISTER with its struct PROT_NONE", umcg.Ctl(umcg.CtlUnregister, t.Addr(), 0), unix.EFAULT)
	// The thread exits now, still registered (the mapping stays PROT_NONE
	// for the life of the process).
}
