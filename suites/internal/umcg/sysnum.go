package umcg

// System call numbers of the kharness UMCG patch for Linux 6.12, the same
// in syscall_64.tbl ("common") and syscall_32.tbl ("i386"): 463 was the
// first free number in 6.12 on both tables. Mainline later gave 463-469
// to setxattrat ... file_setattr, so golang.org/x/sys names these numbers
// differently (unix.SYS_SETXATTRAT == 463): never use unix.SYS_* for them,
// and probe with Probe before trusting them on a given kernel.
const (
	SysCtl  = 463 // umcg_ctl(u32 flags, struct umcg_task *self, clockid_t which_clock)
	SysWait = 464 // umcg_wait(u32 flags, u64 abs_timeout)
	SysKick = 465 // umcg_kick(u32 flags, pid_t tid)
)
