package umcg

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// errnoErr turns a raw errno into nil or the unix.Errno itself, so that
// callers compare with errors.Is(err, unix.EAGAIN) or err == unix.EAGAIN.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Ctl is umcg_ctl(flags, self, clock). self is a user address, not a
// *Task, so that tests can hand the kernel NULL, misaligned or unmapped
// pointers. REGISTER|WORKER sleeps until a server runs the new worker, so
// this is a unix.Syscall (the goroutine's P is handed off meanwhile).
func Ctl(flags uint32, self uintptr, clock int32) error {
	_, _, e := unix.Syscall(SysCtl, uintptr(flags), self, uintptr(clock))
	return errnoErr(e)
}

// Wait is umcg_wait(flags, abs_timeout): abs_timeout is in nanoseconds of
// the clock the caller registered with, 0 means no timeout. It sleeps
// until the caller is RUNNING again, hence unix.Syscall.
func Wait(flags uint32, absTimeout uint64) error {
	lo, hi := u64Args(absTimeout)
	_, _, e := unix.Syscall(SysWait, uintptr(flags), lo, hi)
	return errnoErr(e)
}

// Kick is umcg_kick(flags, tid): make tid pass the return-to-user hook,
// where RUNNING|TF_PREEMPT turns into a preemption.
func Kick(flags uint32, tid int) error {
	_, _, e := unix.Syscall(SysKick, uintptr(flags), uintptr(tid), 0)
	return errnoErr(e)
}

// ErrAbsent is what Probe returns (wrapped, with the details) on a kernel
// without the UMCG calls; test with errors.Is.
var ErrAbsent = errors.New("kernel without UMCG")

// Probe tells whether the running kernel has the UMCG system calls. Three
// calls that are invalid by every rule and have no side effects must all
// answer EINVAL: umcg_ctl(0xff, NULL, 0) (no command, NULL self),
// umcg_wait(1, 0) and umcg_kick(1, 0) (flags must be 0). A kernel without
// the patch answers ENOSYS; a newer kernel, where 463-465 are setxattrat,
// getxattrat and listxattrat, answers something else (EFAULT for the NULL
// path) to at least one. Both are ErrAbsent.
func Probe() error {
	ctl := Ctl(0xff, 0, 0)
	if ctl == unix.ENOSYS {
		return fmt.Errorf("%w: umcg_ctl (syscall %d) = ENOSYS (no patches/umcg, or CONFIG_UMCG=n)", ErrAbsent, SysCtl)
	}
	wait, kick := Wait(1, 0), Kick(1, 0)
	if ctl != unix.EINVAL || wait != unix.EINVAL || kick != unix.EINVAL {
		return fmt.Errorf("%w: syscalls %d/%d/%d answer %v/%v/%v to calls UMCG refuses with EINVAL: they are other system calls on this kernel",
			ErrAbsent, SysCtl, SysWait, SysKick, ctl, wait, kick)
	}
	return nil
}
