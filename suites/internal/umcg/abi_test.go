package umcg

import (
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestTaskLayout pins struct umcg_task to the kernel's layout (UMCG-DESIGN
// ABI): a moved field makes the kernel read tids as timestamps. The
// compile-time checks in abi.go cover the build architecture too; this
// test names the field that moved.
func TestTaskLayout(t *testing.T) {
	var x Task
	for _, tc := range []struct {
		field     string
		got, want uintptr
	}{
		{"sizeof", unsafe.Sizeof(x), 64},
		{"state", unsafe.Offsetof(x.state), OffState},
		{"next_tid", unsafe.Offsetof(x.nextTID), OffNextTID},
		{"server_tid", unsafe.Offsetof(x.serverTID), OffServerTID},
		{"__hole", unsafe.Offsetof(x.hole), OffHole},
		{"blocked_ts", unsafe.Offsetof(x.blockedTS), OffBlockedTS},
		{"runnable_ts", unsafe.Offsetof(x.runnableTS), OffRunnableTS},
		{"runnable_workers_ptr", unsafe.Offsetof(x.runnableWorkersPtr), OffRunnableWorkersPtr},
		{"__zero", unsafe.Offsetof(x.zero), OffZero},
		{"sizeof __zero", unsafe.Sizeof(x.zero), 24},
		// the C header's absolute offsets, independent of our constants
		{"state (C)", unsafe.Offsetof(x.state), 0x00},
		{"next_tid (C)", unsafe.Offsetof(x.nextTID), 0x04},
		{"server_tid (C)", unsafe.Offsetof(x.serverTID), 0x08},
		{"blocked_ts (C)", unsafe.Offsetof(x.blockedTS), 0x10},
		{"runnable_ts (C)", unsafe.Offsetof(x.runnableTS), 0x18},
		{"runnable_workers_ptr (C)", unsafe.Offsetof(x.runnableWorkersPtr), 0x20},
		{"__zero (C)", unsafe.Offsetof(x.zero), 0x28},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.field, tc.got, tc.want)
		}
	}
	if TaskAlign != 64 || TaskSize != 64 {
		t.Errorf("TaskAlign %d TaskSize %d, want 64 64", TaskAlign, TaskSize)
	}
}

// TestConstants pins the ABI numbers to the uapi header values.
func TestConstants(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uint64
	}{
		{"UMCG_TASK_NONE", uint64(StateNone), 0},
		{"UMCG_TASK_RUNNING", uint64(StateRunning), 1},
		{"UMCG_TASK_RUNNABLE", uint64(StateRunnable), 2},
		{"UMCG_TASK_BLOCKED", uint64(StateBlocked), 3},
		{"UMCG_TASK_MASK", uint64(StateMask), 0xff},
		{"UMCG_TF_PREEMPT", uint64(TFPreempt), 0x100},
		{"UMCG_TF_COND_WAIT", uint64(TFCondWait), 0x200},
		{"UMCG_TF_MASK", uint64(TFMask), 0xff00},
		{"UMCG_TID_RUNNING", uint64(TIDRunning), 0x80000000},
		{"UMCG_TID_MASK", uint64(TIDMask), 0x3fffffff},
		{"UMCG_CTL_REGISTER", uint64(CtlRegister), 1},
		{"UMCG_CTL_UNREGISTER", uint64(CtlUnregister), 2},
		{"UMCG_CTL_WORKER", uint64(CtlWorker), 0x10000},
		{"__NR_umcg_ctl", SysCtl, 463},
		{"__NR_umcg_wait", SysWait, 464},
		{"__NR_umcg_kick", SysKick, 465},
		{"user bits disjoint from state and flags", uint64(UserMask & (StateMask | TFMask)), 0},
		{"UserPreemptible is a user bit", uint64(UserPreemptible &^ UserMask), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// TestU64Args checks how a 64-bit argument is split into registers on the
// architecture the test runs on.
func TestU64Args(t *testing.T) {
	for _, v := range []uint64{0, 1, 0xffffffff, 0x100000000, 0x123456789abcdef0} {
		lo, hi := u64Args(v)
		var got uint64
		if unsafe.Sizeof(uintptr(0)) == 8 {
			got = uint64(lo)
			if hi != 0 {
				t.Errorf("u64Args(%#x): second register %#x on a 64-bit target", v, hi)
			}
		} else {
			got = uint64(lo) | uint64(hi)<<32
		}
		if got != v {
			t.Errorf("u64Args(%#x) = %#x, %#x: reassembles to %#x", v, lo, hi, got)
		}
	}
}

func TestProbeAnswers(t *testing.T) {
	for _, tc := range []struct {
		ctl, wait, kick error
		foreign         bool
	}{
		{unix.EINVAL, unix.EINVAL, unix.EINVAL, false},
		{unix.EFAULT, unix.EINVAL, unix.EINVAL, true}, // setxattrat with a NULL path
		{unix.EINVAL, nil, unix.EINVAL, true},
		{unix.EINVAL, unix.EINVAL, unix.EPERM, true},
	} {
		err := probeAnswers(tc.ctl, tc.wait, tc.kick)
		if got := errors.Is(err, ErrForeign); got != tc.foreign || (err == nil) == tc.foreign {
			t.Errorf("probeAnswers(%v, %v, %v) = %v, want foreign %v", tc.ctl, tc.wait, tc.kick, err, tc.foreign)
		}
		if errors.Is(err, ErrAbsent) {
			t.Errorf("probeAnswers(%v, %v, %v) = %v: only ENOSYS means absent", tc.ctl, tc.wait, tc.kick, err)
		}
	}
}
