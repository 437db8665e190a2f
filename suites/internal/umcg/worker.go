package umcg

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Worker is one UMCG worker: a slot in the arena and the thread that
// registers it. Methods other than the getters must run on that thread.
type Worker struct {
	ID   int   // the caller's name for it, used in reports
	Slot int   // arena slot of its struct umcg_task
	T    *Task // the struct itself
	srv  *Server

	tid      atomic.Int32
	final    atomic.Bool // its next NONE is its last: the server stops counting it
	departed atomic.Bool // the server saw it leave for good

	// Owned by the server thread.
	queued bool
}

// TID is the worker thread's tid, 0 before Register.
func (w *Worker) TID() int { return int(w.tid.Load()) }

// Departed reports whether the server has seen the worker leave for good
// (its final NONE); from then on the server no longer looks at its slot.
func (w *Worker) Departed() bool { return w.departed.Load() }

// Server is the server the worker belongs to.
func (w *Worker) Server() *Server { return w.srv }

// ErrNotRunning is returned (wrapped) when the kernel hands control back
// to a worker that is not RUNNING: the ABI says a worker runs user code
// only when RUNNING.
var ErrNotRunning = errors.New("umcg: worker runs user code but is not RUNNING")

// Register makes the calling thread this worker. It locks the goroutine
// to its thread for good (the thread carries kernel UMCG state; it should
// exit with the goroutine rather than go back to the Go scheduler's pool),
// waits until the server has registered, and returns once the server has
// scheduled the worker: umcg_ctl(REGISTER|WORKER) puts it RUNNABLE on the
// server's list and sleeps until it is RUNNING.
func (w *Worker) Register() error {
	runtime.LockOSThread()
	stid := w.srv.waitRegistered()
	w.tid.Store(int32(unix.Gettid()))
	w.T.Reset(StateBlocked, uint32(stid))
	if err := Ctl(CtlRegister|CtlWorker, w.T.Addr(), w.srv.cfg.Clock); err != nil {
		return fmt.Errorf("umcg: worker %d (tid %d) umcg_ctl(REGISTER|WORKER, server %d): %w", w.ID, w.TID(), stid, err)
	}
	if st := w.T.State(); !IsRunning(st) {
		return fmt.Errorf("umcg: worker %d (tid %d) back from register in state %s: %w", w.ID, w.TID(), FormatState(st), ErrNotRunning)
	}
	return nil
}

// Yield gives the CPU back to the server: RUNNABLE|COND_WAIT, then
// umcg_wait(0, 0), which queues the worker on its server's list, wakes the
// server and sleeps until the server picks the worker again. It returns
// the raw umcg_wait result: nil, or EAGAIN when the kernel already made
// the worker RUNNING again before the wait (it blocked between the store
// and the call, the R3 case); both mean "scheduled again". Any result
// with the worker not RUNNING afterwards is an error wrapping
// ErrNotRunning. User bits of the state word are kept.
func (w *Worker) Yield() error {
	st := w.T.State()
	w.T.SetState(st&UserMask | StateRunnable | TFCondWait)
	err := Wait(0, 0)
	if st := w.T.State(); !IsRunning(st) {
		return fmt.Errorf("umcg: worker %d yield: umcg_wait = %v, state %s: %w", w.ID, err, FormatState(st), ErrNotRunning)
	}
	return err
}

// Unregister leaves UMCG: the state must be exactly RUNNING (user bits
// and flags are cleared first); the kernel makes it NONE and wakes the
// server. final says the worker will not register again: the server
// stops waiting for it. After it the thread is an ordinary thread.
func (w *Worker) Unregister(final bool) error {
	if final {
		w.final.Store(true)
	}
	w.T.SetState(StateRunning)
	if err := Ctl(CtlUnregister|CtlWorker, w.T.Addr(), 0); err != nil {
		return fmt.Errorf("umcg: worker %d (tid %d) unregister: %w", w.ID, w.TID(), err)
	}
	if st := w.T.State(); st != StateNone {
		return fmt.Errorf("umcg: worker %d (tid %d) unregistered but state is %s, want NONE", w.ID, w.TID(), FormatState(st))
	}
	return nil
}

// Abandon is for a worker whose Register failed (so the kernel never
// knew it): the server stops waiting for it.
func (w *Worker) Abandon() {
	if !w.final.Swap(true) {
		w.srv.live.Add(-1)
	}
}

// MarkFinal tells the server that the worker's next NONE is its last,
// for a worker that ends by exiting its thread without unregistering
// (the kernel makes it NONE and wakes the server).
func (w *Worker) MarkFinal() { w.final.Store(true) }

// BeginPreemptible sets UserPreemptible: from now on a server with
// PreemptMarkedOnly may preempt this worker. Only code that holds no Go
// runtime resources belongs in such a section (a plain loop).
func (w *Worker) BeginPreemptible() {
	for {
		st := w.T.State()
		if w.T.CASState(st, st|UserPreemptible) {
			return
		}
	}
}

// EndPreemptible clears UserPreemptible. A TF_PREEMPT the server set but
// the kernel has not acted on yet is taken here, cooperatively, with a
// Yield (so the kernel cannot stop the worker later, outside the
// section). It reports whether it yielded.
func (w *Worker) EndPreemptible() (bool, error) {
	for {
		st := w.T.State()
		if st&TFPreempt != 0 {
			if w.T.CASState(st, st&^(UserPreemptible|TFPreempt)) {
				err := w.Yield()
				if err == unix.EAGAIN {
					err = nil
				}
				return true, err
			}
			continue
		}
		if w.T.CASState(st, st&^UserPreemptible) {
			return false, nil
		}
	}
}
