package umcg

import (
	"fmt"
	"sync/atomic"
)

// ViolationKind names a broken scheduler invariant the server loop saw.
type ViolationKind int

// What a server can catch the kernel (or itself) doing wrong.
const (
	// VNextTIDMismatch: the current worker is RUNNING but next_tid is not
	// its tid|UMCG_TID_RUNNING (PZ's assertion in his test server).
	VNextTIDMismatch ViolationKind = iota + 1
	// VQueuedTwice: a worker came off the runnable list while it was
	// already in the server's queue.
	VQueuedTwice
	// VNotRunnableOnList: a worker on the runnable list is not RUNNABLE.
	VNotRunnableOnList
	// VForeignLink: a runnable list link that is not a slot of the arena.
	VForeignLink
	// VListCycle: a runnable list longer than the arena.
	VListCycle
	// VUnknownWorker: a listed slot that belongs to no worker of this server.
	VUnknownWorker
	// VServerNotRunning: umcg_wait returned and the server is not RUNNING.
	VServerNotRunning
	// VWaitError: umcg_wait failed with an errno the protocol never expects.
	VWaitError
	// VStuckTarget: the same next_tid refused (EAGAIN) too many times in a row.
	VStuckTarget
)

var violationNames = map[ViolationKind]string{
	VNextTIDMismatch:   "running worker but next_tid is not tid|TID_RUNNING",
	VQueuedTwice:       "worker on the runnable list while already queued",
	VNotRunnableOnList: "worker on the runnable list is not RUNNABLE",
	VForeignLink:       "runnable list link outside the arena",
	VListCycle:         "runnable list longer than the arena (cycle)",
	VUnknownWorker:     "runnable list names a slot that is no worker of this server",
	VServerNotRunning:  "server not RUNNING after umcg_wait returned",
	VWaitError:         "umcg_wait failed",
	VStuckTarget:       "next_tid refused with EAGAIN over and over",
}

// Violation is one broken invariant. It is a fixed-size record so that a
// server can log it without allocating (see the package doc).
type Violation struct {
	Kind   ViolationKind
	Worker int    // worker ID, -1 if none
	Got    uint64 // what was seen (a state word, a tid, an address, an errno)
	Want   uint64 // what was expected, if anything
	Loop   uint64 // server loop count when seen
}

func (v Violation) String() string {
	s := fmt.Sprintf("%s (worker %d, got %#x, want %#x, server loop %d)", violationNames[v.Kind], v.Worker, v.Got, v.Want, v.Loop)
	switch v.Kind {
	case VNotRunnableOnList, VServerNotRunning:
		s += " state " + FormatState(uint32(v.Got))
	case VNextTIDMismatch:
		s += " next_tid " + FormatTID(uint32(v.Got)) + " want " + FormatTID(uint32(v.Want))
	}
	return s
}

// violationLog keeps the first len(recs) violations; later ones are only
// counted.
type violationLog struct {
	recs  [32]Violation
	n     atomic.Int32 // records published
	total atomic.Int64 // all violations, kept or not
}

// add is called by the one thread that owns the log (a server loop:
// nosplit, no allocation).
//
//go:nosplit
func (l *violationLog) add(v Violation) {
	l.total.Add(1)
	n := l.n.Load()
	if int(n) >= len(l.recs) {
		return
	}
	l.recs[n] = v
	l.n.Store(n + 1) // publishes recs[n]
}

// list copies the published records; safe from any goroutine.
func (l *violationLog) list() ([]Violation, int64) {
	n := l.n.Load()
	out := make([]Violation, n)
	copy(out, l.recs[:n])
	return out, l.total.Load()
}
