package umcg

import "unsafe"

// Task states, bits 0-7 of umcg_task.state (UMCG_TASK_*).
const (
	StateNone     uint32 = 0x0000
	StateRunning  uint32 = 0x0001
	StateRunnable uint32 = 0x0002
	StateBlocked  uint32 = 0x0003
	StateMask     uint32 = 0x00ff
)

// Flags, bits 8-15 of umcg_task.state (UMCG_TF_*).
const (
	// TFPreempt on a RUNNING worker makes its next return to user space
	// act like umcg_wait: RUNNABLE, queued on its server, asleep.
	TFPreempt uint32 = 0x0100
	// TFCondWait on RUNNABLE means "I will call umcg_wait myself": the
	// return-to-user hook must not put such a task to sleep (a signal
	// between the store and the system call would hang it otherwise).
	TFCondWait uint32 = 0x0200
	TFMask     uint32 = 0xff00
	// UserMask are the bits 16-31 the ABI leaves to user space; kernel
	// transitions must carry them over.
	UserMask uint32 = 0xffff0000
)

// UserPreemptible is this library's user bit (bit 16) on a RUNNING
// worker: "I am in a section where a kernel preemption is harmless". A
// server built with ServerConfig.PreemptMarkedOnly only preempts workers
// showing it, because a Go thread stopped by TF_PREEMPT inside the Go
// runtime (holding a runtime lock, or with its P when a stop-the-world
// starts) can deadlock the server that would have to resume it.
const UserPreemptible uint32 = 1 << 16

// Task IDs in next_tid (UMCG_TID_*).
const (
	// TIDRunning is set by the kernel in next_tid once it switched to
	// that task.
	TIDRunning uint32 = 0x80000000
	TIDMask    uint32 = 0x3fffffff
)

// Flags of umcg_ctl (enum umcg_ctl_flag).
const (
	CtlRegister   uint32 = 0x00001
	CtlUnregister uint32 = 0x00002
	CtlWorker     uint32 = 0x10000
)

// TaskAlign is UMCG_TASK_ALIGN: a struct umcg_task must start on it.
const TaskAlign = 64

// Task mirrors struct umcg_task (include/uapi/linux/umcg.h), 64 bytes,
// the same on i386 and x86_64: every field has a fixed width and every
// __u64 sits at a multiple of 8 from a 64-aligned start, so the 386 Go
// layout (4-byte alignment for uint64) cannot differ from the C one. The
// fields are unexported: the kernel changes them concurrently, so they are
// read and written only through the atomic accessors in task.go.
type Task struct {
	state              uint32    // 0x00 r/w: state | flags | user bits
	nextTID            uint32    // 0x04 r: the task umcg_wait switches to
	serverTID          uint32    // 0x08 r: the server owning this task
	hole               uint32    // 0x0c must be 0 at register
	blockedTS          uint64    // 0x10 w: clock ns when last BLOCKED
	runnableTS         uint64    // 0x18 w: clock ns when last RUNNABLE
	runnableWorkersPtr uint64    // 0x20 r/w: list head (server) / link (worker)
	zero               [3]uint64 // 0x28 must be 0 at register
}

// Field offsets of struct umcg_task, as the kernel sees them.
const (
	OffState              = 0x00
	OffNextTID            = 0x04
	OffServerTID          = 0x08
	OffHole               = 0x0c
	OffBlockedTS          = 0x10
	OffRunnableTS         = 0x18
	OffRunnableWorkersPtr = 0x20
	OffZero               = 0x28
	TaskSize              = 0x40
)

// Compile-time layout checks: each line fails to build (on the GOARCH
// being built, so `GOARCH=386 go vet` checks i386) when a field moves.
var (
	_ [unsafe.Sizeof(Task{}) - TaskSize]struct{}
	_ [TaskSize - unsafe.Sizeof(Task{})]struct{}
	_ [unsafe.Offsetof(Task{}.nextTID) - OffNextTID]struct{}
	_ [OffNextTID - unsafe.Offsetof(Task{}.nextTID)]struct{}
	_ [unsafe.Offsetof(Task{}.blockedTS) - OffBlockedTS]struct{}
	_ [OffBlockedTS - unsafe.Offsetof(Task{}.blockedTS)]struct{}
	_ [unsafe.Offsetof(Task{}.runnableWorkersPtr) - OffRunnableWorkersPtr]struct{}
	_ [OffRunnableWorkersPtr - unsafe.Offsetof(Task{}.runnableWorkersPtr)]struct{}
	_ [unsafe.Offsetof(Task{}.zero) - OffZero]struct{}
	_ [OffZero - unsafe.Offsetof(Task{}.zero)]struct{}
)
