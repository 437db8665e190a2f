package umcg

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Addr is the task's user address, the value umcg_ctl takes as self and
// runnable_workers_ptr links hold.
//
//go:nosplit
func (t *Task) Addr() uintptr { return uintptr(unsafe.Pointer(t)) }

// State loads the state word.
//
//go:nosplit
func (t *Task) State() uint32 { return atomic.LoadUint32(&t.state) }

// SetState stores the state word.
//
//go:nosplit
func (t *Task) SetState(v uint32) { atomic.StoreUint32(&t.state, v) }

// CASState is cmpxchg on the state word.
//
//go:nosplit
func (t *Task) CASState(old, new uint32) bool { return atomic.CompareAndSwapUint32(&t.state, old, new) }

// NextTID loads next_tid.
//
//go:nosplit
func (t *Task) NextTID() uint32 { return atomic.LoadUint32(&t.nextTID) }

// SetNextTID stores next_tid.
//
//go:nosplit
func (t *Task) SetNextTID(v uint32) { atomic.StoreUint32(&t.nextTID, v) }

// ServerTID loads server_tid.
//
//go:nosplit
func (t *Task) ServerTID() uint32 { return atomic.LoadUint32(&t.serverTID) }

// SetServerTID stores server_tid.
//
//go:nosplit
func (t *Task) SetServerTID(v uint32) { atomic.StoreUint32(&t.serverTID, v) }

// BlockedTS loads blocked_ts.
//
//go:nosplit
func (t *Task) BlockedTS() uint64 { return atomic.LoadUint64(&t.blockedTS) }

// RunnableTS loads runnable_ts.
//
//go:nosplit
func (t *Task) RunnableTS() uint64 { return atomic.LoadUint64(&t.runnableTS) }

// RunnableWorkers loads runnable_workers_ptr (list head on a server, next
// link on a worker).
//
//go:nosplit
func (t *Task) RunnableWorkers() uint64 { return atomic.LoadUint64(&t.runnableWorkersPtr) }

// SetRunnableWorkers stores runnable_workers_ptr.
//
//go:nosplit
func (t *Task) SetRunnableWorkers(v uint64) { atomic.StoreUint64(&t.runnableWorkersPtr, v) }

// TakeRunnableWorkers is xchg(runnable_workers_ptr, 0): a server takes
// its whole runnable list at once.
//
//go:nosplit
func (t *Task) TakeRunnableWorkers() uint64 { return atomic.SwapUint64(&t.runnableWorkersPtr, 0) }

// PushRunnable pushes w on t's runnable list the way the kernel does
// (w.link = head; cmpxchg(&t.head, head, w)). The kernel does this for
// real; user space uses it to hand a worker to another server and the
// tests use it to build lists.
func (t *Task) PushRunnable(w *Task) {
	for {
		head := t.RunnableWorkers()
		w.SetRunnableWorkers(head)
		if atomic.CompareAndSwapUint64(&t.runnableWorkersPtr, head, uint64(w.Addr())) {
			return
		}
	}
}

// Word32 and SetWord32 read and write any 32-bit word of the struct by
// offset, atomically: for the ABI tests that must plant non-zero values
// in the reserved fields (__hole) the typed accessors do not cover.
func (t *Task) Word32(off uintptr) uint32 { return atomic.LoadUint32(t.word32(off)) }

// SetWord32 stores a 32-bit word by offset; see Word32.
func (t *Task) SetWord32(off uintptr, v uint32) { atomic.StoreUint32(t.word32(off), v) }

// Word64 and SetWord64 do the same for the 64-bit words (__zero[]).
func (t *Task) Word64(off uintptr) uint64 { return atomic.LoadUint64(t.word64(off)) }

// SetWord64 stores a 64-bit word by offset; see Word64.
func (t *Task) SetWord64(off uintptr, v uint64) { atomic.StoreUint64(t.word64(off), v) }

func (t *Task) word32(off uintptr) *uint32 {
	if off%4 != 0 || off+4 > TaskSize {
		panic(fmt.Sprintf("umcg: 32-bit word at offset %#x", off))
	}
	return (*uint32)(unsafe.Add(unsafe.Pointer(t), off))
}

func (t *Task) word64(off uintptr) *uint64 {
	if off%8 != 0 || off+8 > TaskSize {
		panic(fmt.Sprintf("umcg: 64-bit word at offset %#x", off))
	}
	return (*uint64)(unsafe.Add(unsafe.Pointer(t), off))
}

// Reset zeroes the struct and sets the fields a registration needs:
// state and server_tid; everything else must be 0 for umcg_ctl.
func (t *Task) Reset(state, serverTID uint32) {
	for off := uintptr(OffBlockedTS); off < TaskSize; off += 8 {
		t.SetWord64(off, 0)
	}
	t.SetNextTID(0)
	t.SetWord32(OffHole, 0)
	t.SetServerTID(serverTID)
	t.SetState(state)
}

// Snapshot is a plain copy of a task's words for reports.
type Snapshot struct {
	State, NextTID, ServerTID, Hole uint32
	BlockedTS, RunnableTS           uint64
	RunnableWorkers                 uint64
	Zero                            [3]uint64
}

// Snapshot reads every word (each atomically; the whole is not a
// consistent cut).
func (t *Task) Snapshot() Snapshot {
	return Snapshot{State: t.State(), NextTID: t.NextTID(), ServerTID: t.ServerTID(), Hole: t.Word32(OffHole),
		BlockedTS: t.BlockedTS(), RunnableTS: t.RunnableTS(), RunnableWorkers: t.RunnableWorkers(),
		Zero: [3]uint64{t.Word64(OffZero), t.Word64(OffZero + 8), t.Word64(OffZero + 16)}}
}

// DecodeSnapshot reads a Snapshot from the 64 raw bytes of a struct
// umcg_task (little endian, both targets), e.g. read from another
// process's /proc/<pid>/mem.
func DecodeSnapshot(b []byte) (Snapshot, error) {
	if len(b) < TaskSize {
		return Snapshot{}, fmt.Errorf("umcg: %d bytes, a struct umcg_task has %d", len(b), TaskSize)
	}
	u32 := func(o int) uint32 { return uint32(b[o]) | uint32(b[o+1])<<8 | uint32(b[o+2])<<16 | uint32(b[o+3])<<24 }
	u64 := func(o int) uint64 { return uint64(u32(o)) | uint64(u32(o+4))<<32 }
	return Snapshot{State: u32(OffState), NextTID: u32(OffNextTID), ServerTID: u32(OffServerTID), Hole: u32(OffHole),
		BlockedTS: u64(OffBlockedTS), RunnableTS: u64(OffRunnableTS), RunnableWorkers: u64(OffRunnableWorkersPtr),
		Zero: [3]uint64{u64(OffZero), u64(OffZero + 8), u64(OffZero + 16)}}, nil
}

// String renders a snapshot in one line.
func (s Snapshot) String() string {
	z := ""
	if s.Hole != 0 || s.Zero != [3]uint64{} {
		z = fmt.Sprintf(" hole=%#x zero=%#x", s.Hole, s.Zero)
	}
	return fmt.Sprintf("state=%s next_tid=%s server_tid=%d blocked_ts=%d runnable_ts=%d runnable_workers_ptr=%#x%s",
		FormatState(s.State), FormatTID(s.NextTID), s.ServerTID, s.BlockedTS, s.RunnableTS, s.RunnableWorkers, z)
}
