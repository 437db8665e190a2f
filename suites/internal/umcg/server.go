package umcg

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ServerConfig is how a server schedules.
type ServerConfig struct {
	// Clock is the clock registered with umcg_ctl and used for timeouts
	// and the kernel's timestamps (unix.CLOCK_MONOTONIC and friends).
	Clock int32
	// Tick bounds each umcg_wait while a worker runs; 0 waits without a
	// timeout (a lost wakeup then hangs, which is what a lost-wakeup test
	// wants to see).
	Tick time.Duration
	// Preempt makes a timed-out wait preempt the running worker:
	// RUNNING -> RUNNING|TF_PREEMPT, then umcg_kick.
	Preempt bool
	// PreemptMarkedOnly limits preemption to workers inside a
	// BeginPreemptible section (see UserPreemptible).
	PreemptMarkedOnly bool
}

// ServerStats are a server's counters; they are updated with atomics and
// can be read while it runs.
type ServerStats struct {
	Loops    atomic.Uint64 // iterations of the server loop
	Waits    atomic.Uint64 // umcg_wait calls
	Switches atomic.Uint64 // next_tid values the kernel consumed
	Requeues atomic.Uint64 // next_tid not consumed, worker put back
	Popped   atomic.Uint64 // workers taken off the runnable list
	Idle     atomic.Uint64 // waits with nobody to run
	EAGAIN   atomic.Uint64
	EINTR    atomic.Uint64
	ESRCH    atomic.Uint64 // next_tid named no UMCG task (the running worker left)
	Timeouts atomic.Uint64
	Preempts atomic.Uint64 // TF_PREEMPT set and kick sent
	KickErrs atomic.Uint64 // umcg_kick failed (the worker left meanwhile)
	Departed atomic.Uint64 // final workers seen NONE
	Refusals atomic.Uint64 // next_tid refused with EAGAIN
	Rejoins  atomic.Uint64 // non-final workers seen NONE (they register again)
	// LeftInWait counts running workers that left between pick and
	// umcg_wait (ESRCH for next_tid|TID_RUNNING): the race a server
	// must not lose a departure to.
	LeftInWait atomic.Uint64
	QueueLen   atomic.Int32 // current length of the local queue
	Current    atomic.Int32 // ID of the current worker, -1 if none
	LastError  atomic.Int32 // errno of the last unexpected umcg_wait error
}

// Server is one UMCG server: a slot, the locked thread that runs Run,
// and the workers added to it.
type Server struct {
	ID   int
	Slot int
	T    *Task
	cfg  ServerConfig
	a    *Arena

	tid        atomic.Int32
	registered atomic.Bool
	exited     atomic.Bool
	closing    atomic.Bool
	live       atomic.Int32 // workers added and not yet departed

	byIndex []unsafe.Pointer // arena slot -> *Worker of this server (atomic)

	// Owned by the server thread.
	queue      []*Worker // ring buffer, capacity = arena slots
	qhead, qn  int
	cur        *Worker
	refusedTID uint32
	refusals   int

	Stats ServerStats
	viol  violationLog
}

// maxRefusals is how many EAGAINs in a row the same next_tid may get
// before the server calls it a violation: a queued worker is RUNNABLE, so
// the kernel should accept it at once.
const maxRefusals = 10000

// NewServer takes a slot of a for a new server.
func NewServer(a *Arena, id int, cfg ServerConfig) (*Server, error) {
	slot, err := a.Alloc()
	if err != nil {
		return nil, fmt.Errorf("umcg: server %d: %w", id, err)
	}
	s := &Server{ID: id, Slot: slot, T: a.Task(slot), cfg: cfg, a: a,
		byIndex: make([]unsafe.Pointer, a.Len()), queue: make([]*Worker, a.Len())}
	s.Stats.Current.Store(-1)
	return s, nil
}

// NewWorker takes a slot for a new worker of s. Workers may be added
// until Close.
func (s *Server) NewWorker(id int) (*Worker, error) {
	if s.closing.Load() {
		return nil, fmt.Errorf("umcg: server %d is closing, no new worker %d", s.ID, id)
	}
	slot, err := s.a.Alloc()
	if err != nil {
		return nil, fmt.Errorf("umcg: worker %d of server %d: %w", id, s.ID, err)
	}
	w := &Worker{ID: id, Slot: slot, T: s.a.Task(slot), srv: s}
	s.live.Add(1)
	atomic.StorePointer(&s.byIndex[slot], unsafe.Pointer(w))
	return w, nil
}

// Release gives the slot of a departed worker back to the arena, for a
// successor; the server must have seen it go (Departed), or it could still
// be looking at the slot.
func (s *Server) Release(w *Worker) error {
	if w.srv != s || !w.departed.Load() {
		return fmt.Errorf("umcg: server %d cannot release worker %d: not one of its departed workers", s.ID, w.ID)
	}
	atomic.StorePointer(&s.byIndex[w.Slot], nil)
	s.a.Free(w.Slot)
	return nil
}

// TID is the server thread's tid, 0 before Run registered it.
func (s *Server) TID() int { return int(s.tid.Load()) }

// Registered reports whether Run has registered the server.
func (s *Server) Registered() bool { return s.registered.Load() }

// Exited reports whether Run has returned.
func (s *Server) Exited() bool { return s.exited.Load() }

// Live is the number of workers the server still waits for.
func (s *Server) Live() int { return int(s.live.Load()) }

// Config is the server's configuration.
func (s *Server) Config() ServerConfig { return s.cfg }

// Violations returns the violations recorded so far and how many there
// were in all.
func (s *Server) Violations() ([]Violation, int64) { return s.viol.list() }

// Worker returns the worker of s on arena slot i, or nil.
func (s *Server) Worker(i int) *Worker {
	if i < 0 || i >= len(s.byIndex) {
		return nil
	}
	return s.worker(i)
}

// waitRegistered blocks (a worker, before it registers) until Run has
// registered the server, and returns its tid.
func (s *Server) waitRegistered() int {
	for !s.registered.Load() {
		time.Sleep(200 * time.Microsecond)
	}
	return s.TID()
}

// Close says no more workers will be added: Run returns once every worker
// has departed (unregistered or exited for good). A server asleep with
// nobody to run is woken by signal until it has noticed; sig is the
// signal for that (unix.SIGURG is harmless to Go programs).
func (s *Server) Close(sig unix.Signal) {
	s.closing.Store(true)
	for !s.exited.Load() {
		if tid := s.TID(); tid != 0 && s.live.Load() == 0 {
			unix.Tgkill(unix.Getpid(), tid, sig)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run registers the calling thread as the server and schedules its
// workers until Close was called and every worker has departed; then it
// unregisters. It locks the goroutine to its thread for good. An error
// return means the server could not go on; invariant violations are
// recorded (Violations) and scheduling goes on.
func (s *Server) Run() error {
	runtime.LockOSThread()
	defer s.exited.Store(true)
	s.tid.Store(int32(unix.Gettid()))
	s.T.Reset(StateRunning, uint32(s.TID()))
	if err := Ctl(CtlRegister, s.T.Addr(), s.cfg.Clock); err != nil {
		return fmt.Errorf("umcg: server %d (tid %d) umcg_ctl(REGISTER): %w", s.ID, s.TID(), err)
	}
	s.registered.Store(true)
	if e := s.loop(); e != 0 {
		return fmt.Errorf("umcg: server %d (tid %d) umcg_wait(next_tid %s): %w", s.ID, s.TID(), FormatTID(s.T.NextTID()), e)
	}
	s.T.SetState(StateRunning)
	if err := Ctl(CtlUnregister, s.T.Addr(), 0); err != nil {
		return fmt.Errorf("umcg: server %d (tid %d) unregister: %w", s.ID, s.TID(), err)
	}
	return nil
}

// loop is the scheduler. It and everything it calls are nosplit (or
// inlined) and make raw system calls, so that once running the server
// never enters the Go scheduler: no stack-growth check can take a
// preemption request, no exitsyscall can find its P taken and go for the
// scheduler lock. A worker the kernel descheduled (blocked in a page
// fault, preempted) may hold that lock or any other runtime lock, and only
// this loop can run it again: a server that waited for the Go runtime
// could deadlock with its own workers. The price is a P held while the
// server sleeps in umcg_wait (GOMAXPROCS must leave room) and a goroutine
// a stop-the-world cannot stop: run servers with the garbage collector
// off.
//
//go:nosplit
func (s *Server) loop() unix.Errno {
	for {
		s.Stats.Loops.Add(1)
		if s.closing.Load() && s.live.Load() == 0 {
			return 0
		}
		// Announce RUNNABLE before taking the list: a worker queued
		// after the xchg flips us RUNNING, and umcg_wait then fails
		// with EAGAIN instead of sleeping on queued work (R2).
		s.T.SetState(StateRunnable | TFCondWait)
		s.takeRunnable()
		s.pick()
		if e := s.wait(); e != 0 {
			return e
		}
	}
}

// takeRunnable moves the kernel's runnable list into the local queue.
//
//go:nosplit
func (s *Server) takeRunnable() {
	head := s.T.TakeRunnableWorkers()
	for walked := 0; head != 0; walked++ {
		i, next, kind := s.a.step(head, walked)
		if kind != 0 {
			v := VForeignLink
			if kind == ListTooLong {
				v = VListCycle
			}
			s.violate(v, -1, head, 0)
			return
		}
		t := s.a.task(i)
		t.SetRunnableWorkers(0)
		head = next
		w := s.worker(i)
		if w == nil {
			s.violate(VUnknownWorker, -1, uint64(i), 0)
			continue
		}
		s.Stats.Popped.Add(1)
		if st := t.State(); !IsRunnable(st) {
			s.violate(VNotRunnableOnList, w.ID, uint64(st), uint64(StateRunnable))
		}
		if w.queued {
			s.violate(VQueuedTwice, w.ID, uint64(i), 0)
			continue
		}
		s.push(w)
	}
}

// pick keeps a worker that is still RUNNING or sets next_tid to the next
// one in the queue (0 if none).
//
//go:nosplit
func (s *Server) pick() {
	if w := s.cur; w != nil {
		st := w.T.State()
		switch {
		case IsRunning(st):
			want := uint32(w.tid.Load()) | TIDRunning
			if nt := s.T.NextTID(); nt != want {
				s.violate(VNextTIDMismatch, w.ID, uint64(nt), uint64(want))
			}
			return
		case StateOf(st) == StateNone:
			s.left(w)
		}
		// BLOCKED or RUNNABLE: it comes back through the runnable list.
		s.setCur(nil)
	}
	w := s.pop()
	s.setCur(w)
	var next uint32
	if w != nil {
		next = uint32(w.tid.Load())
	}
	s.T.SetNextTID(next)
}

// wait is one umcg_wait and what follows from its result; it returns an
// errno the loop cannot go on with, 0 otherwise.
//
//go:nosplit
func (s *Server) wait() unix.Errno {
	var abs uint64
	if s.cur != nil && s.cfg.Tick > 0 {
		abs = uint64(rawNow(s.cfg.Clock) + int64(s.cfg.Tick))
	}
	fresh := s.cur != nil && s.T.NextTID()&TIDRunning == 0
	if s.cur == nil {
		s.Stats.Idle.Add(1)
	}
	s.Stats.Waits.Add(1)
	return s.settle(rawWait(0, abs), fresh)
}

// settle is what follows from umcg_wait's result e; fresh says whether
// next_tid named a worker to switch to (not one already running). It
// returns an errno the loop cannot go on with, 0 otherwise.
//
//go:nosplit
func (s *Server) settle(e unix.Errno, fresh bool) unix.Errno {
	if e == unix.ESRCH {
		// next_tid names no UMCG task. With TID_RUNNING: the running
		// worker unregistered (or exited) after pick looked at it. It
		// is NONE now and this is the only time the server hears of
		// it: the wake-up it sent on its way out only made this wait
		// fail. Without TID_RUNNING: a queued worker is gone, which
		// cannot be: record it, drop the worker.
		s.Stats.ESRCH.Add(1)
		if nt := s.T.NextTID(); nt&TIDRunning == 0 {
			s.violate(VWaitError, curID(s.cur), uint64(e), uint64(nt))
		} else if w := s.cur; w != nil && StateOf(w.T.State()) == StateNone {
			s.Stats.LeftInWait.Add(1)
			s.left(w)
		}
		s.setCur(nil)
		s.T.SetNextTID(0)
		e = 0
	}
	if s.cur != nil {
		if nt := s.T.NextTID(); nt&TIDRunning == 0 {
			// Not consumed: the worker never ran; put it back first.
			s.Stats.Requeues.Add(1)
			s.unpop(s.cur)
			s.noteRefusal(e, nt)
			s.setCur(nil)
		} else if fresh {
			s.Stats.Switches.Add(1)
			s.refusals = 0
		}
	}
	switch e {
	case 0:
	case unix.EAGAIN:
		s.Stats.EAGAIN.Add(1)
	case unix.EINTR:
		s.Stats.EINTR.Add(1)
	case unix.ETIMEDOUT:
		s.Stats.Timeouts.Add(1)
		if s.cfg.Preempt && s.cur != nil {
			s.preempt(s.cur)
		}
	default:
		s.Stats.LastError.Store(int32(e))
		s.violate(VWaitError, curID(s.cur), uint64(e), 0)
		return e
	}
	if st := s.T.State(); !IsRunning(st) {
		s.violate(VServerNotRunning, curID(s.cur), uint64(st), uint64(StateRunning))
		s.T.SetState(StateRunning)
	}
	return 0
}

// noteRefusal counts EAGAINs for the same target in a row.
//
//go:nosplit
func (s *Server) noteRefusal(e unix.Errno, nt uint32) {
	if e != unix.EAGAIN || nt == 0 {
		return
	}
	s.Stats.Refusals.Add(1)
	if nt != s.refusedTID {
		s.refusedTID, s.refusals = nt, 0
	}
	s.refusals++
	if s.refusals == maxRefusals {
		s.violate(VStuckTarget, -1, uint64(nt), 0)
	}
}

// preempt asks the kernel to preempt w: RUNNING -> RUNNING|TF_PREEMPT,
// then a kick so w passes the return-to-user hook soon.
//
//go:nosplit
func (s *Server) preempt(w *Worker) {
	st := w.T.State()
	if !IsRunning(st) || st&TFPreempt != 0 {
		return
	}
	if s.cfg.PreemptMarkedOnly && st&UserPreemptible == 0 {
		return
	}
	if !w.T.CASState(st, st|TFPreempt) {
		return // it blocked, yielded or left meanwhile
	}
	if _, _, e := syscall.RawSyscall(SysKick, 0, uintptr(w.tid.Load()), 0); e != 0 {
		s.Stats.KickErrs.Add(1)
		return
	}
	s.Stats.Preempts.Add(1)
}

// left accounts for a worker seen NONE: gone for good if it said so
// (final), else it registers again and comes back through the list.
//
//go:nosplit
func (s *Server) left(w *Worker) {
	if !w.final.Load() {
		s.Stats.Rejoins.Add(1)
		return
	}
	s.Stats.Departed.Add(1)
	s.live.Add(-1)
	w.departed.Store(true)
}

//go:nosplit
func (s *Server) violate(kind ViolationKind, worker int, got, want uint64) {
	s.viol.add(Violation{Kind: kind, Worker: worker, Got: got, Want: want, Loop: s.Stats.Loops.Load()})
}

// worker is the worker of s on slot i (nil if none), for the loop.
//
//go:nosplit
func (s *Server) worker(i int) *Worker {
	return (*Worker)(atomic.LoadPointer(&s.byIndex[i]))
}

//go:nosplit
func (s *Server) setCur(w *Worker) {
	s.cur = w
	s.Stats.Current.Store(int32(curID(w)))
}

//go:nosplit
func curID(w *Worker) int {
	if w == nil {
		return -1
	}
	return w.ID
}

// push appends w to the local queue.
//
//go:nosplit
func (s *Server) push(w *Worker) {
	s.queue[(s.qhead+s.qn)%len(s.queue)] = w
	s.qn++
	w.queued = true
	s.Stats.QueueLen.Store(int32(s.qn))
}

// unpop puts w back at the front of the local queue.
//
//go:nosplit
func (s *Server) unpop(w *Worker) {
	s.qhead = (s.qhead - 1 + len(s.queue)) % len(s.queue)
	s.queue[s.qhead] = w
	s.qn++
	w.queued = true
	s.Stats.QueueLen.Store(int32(s.qn))
}

// pop takes the first worker of the local queue, nil if empty.
//
//go:nosplit
func (s *Server) pop() *Worker {
	if s.qn == 0 {
		return nil
	}
	w := s.queue[s.qhead]
	s.queue[s.qhead] = nil
	s.qhead = (s.qhead + 1) % len(s.queue)
	s.qn--
	w.queued = false
	s.Stats.QueueLen.Store(int32(s.qn))
	return w
}

// rawWait is umcg_wait as a raw system call (see loop).
//
//go:nosplit
func rawWait(flags uint32, absTimeout uint64) unix.Errno {
	lo, hi := u64Args(absTimeout)
	_, _, e := syscall.RawSyscall(SysWait, uintptr(flags), lo, hi)
	return e
}

// rawNow is Now as a raw system call (see loop).
//
//go:nosplit
func rawNow(clock int32) int64 {
	var ts unix.Timespec
	syscall.RawSyscall(unix.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0)
	return int64(ts.Sec)*1e9 + int64(ts.Nsec)
}

// Now reads clock in nanoseconds, the unit of umcg_wait's timeout and the
// kernel's timestamps.
func Now(clock int32) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
