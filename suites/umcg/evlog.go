package main

import (
	"fmt"
	"sync/atomic"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// evKind is an invariant a worker can see broken.
type evKind int

const (
	evOverlap     evKind = iota + 1 // another worker of my server ran while I ran user code
	evNotRunning                    // I run user code but my state is not RUNNING
	evTSBackwards                   // blocked_ts or runnable_ts went back
	evTSRange                       // a timestamp outside the interval of the op that caused it
	evTSOrder                       // runnable_ts < blocked_ts after a block
	evNoBlock                       // a sleep that must block did not change blocked_ts
	evYieldErr                      // umcg_wait from a yield failed
	evR3                            // COND_WAIT + block: umcg_wait did not answer EAGAIN
	evSyscall                       // an op's own system call failed
	evUserBits                      // the kernel dropped the user bits of the state word
	evForkChild                     // a forked child of a worker found itself still UMCG
	evCondWait                      // after a block in a COND_WAIT section the state is wrong
)

// evlog is a worker's fixed-size record of broken invariants: workers
// must not allocate or lock while they run (see the umcg package doc), so
// they store numbers and the coordinator formats them afterwards.
type evlog struct {
	recs  [16]evrec
	n     atomic.Int32
	total atomic.Int64
}

type evrec struct {
	kind       evKind
	a, b, c, d uint64
}

func (l *evlog) add(kind evKind, a, b, c, d uint64) {
	l.total.Add(1)
	n := l.n.Load()
	if int(n) >= len(l.recs) {
		return
	}
	l.recs[n] = evrec{kind, a, b, c, d}
	l.n.Store(n + 1)
}

func (l *evlog) list() ([]evrec, int64) {
	n := l.n.Load()
	return append([]evrec(nil), l.recs[:n]...), l.total.Load()
}

// String renders a record; the meaning of a..d depends on the kind.
func (e evrec) String() string {
	switch e.kind {
	case evOverlap:
		return fmt.Sprintf("on-cpu overlap: worker %d ran user code while worker %d was in a user-code section of the same server and had neither blocked nor been preempted (its state %s, mine %s)",
			e.b, e.a, umcg.FormatState(uint32(e.c)), umcg.FormatState(uint32(e.d)))
	case evNotRunning:
		return fmt.Sprintf("running user code in state %s (after op %s)", umcg.FormatState(uint32(e.a)), opName(int(e.b)))
	case evTSBackwards:
		return fmt.Sprintf("timestamps went back: blocked_ts %d -> %d, runnable_ts %d -> %d", e.a, e.b, e.c, e.d)
	case evTSRange:
		return fmt.Sprintf("timestamp %d outside the op's interval [%d, %d] (op %s)", e.a, e.b, e.c, opName(int(e.d)))
	case evTSOrder:
		return fmt.Sprintf("after a block runnable_ts %d < blocked_ts %d (op %s)", e.a, e.b, opName(int(e.c)))
	case evNoBlock:
		return fmt.Sprintf("a %d ns sleep (op %s) did not register a block: blocked_ts stayed %d", e.a, opName(int(e.b)), e.c)
	case evYieldErr:
		return fmt.Sprintf("yield: umcg_wait = errno %d, state %s", e.a, umcg.FormatState(uint32(e.b)))
	case evR3:
		return fmt.Sprintf("R3: blocked in a COND_WAIT section, then umcg_wait = errno %d (want EAGAIN), state %s", e.a, umcg.FormatState(uint32(e.b)))
	case evSyscall:
		return fmt.Sprintf("op %s: system call failed with errno %d", opName(int(e.a)), e.b)
	case evUserBits:
		return fmt.Sprintf("user bits of the state word lost across a kernel transition: %s, had %#x", umcg.FormatState(uint32(e.a)), e.b)
	case evForkChild:
		return fmt.Sprintf("forked child of a worker: %s", forkChildFailure(int(e.a), e.b))
	case evCondWait:
		return fmt.Sprintf("COND_WAIT section: after the sleep (blocked=%d) the state is %s", e.b, umcg.FormatState(uint32(e.a)))
	}
	return fmt.Sprintf("event %d %d %d %d %d", e.kind, e.a, e.b, e.c, e.d)
}
