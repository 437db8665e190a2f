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
// without the UMCG calls (ENOSYS); test with errors.Is.
var ErrAbsent = errors.New("kernel without UMCG")

// ErrForeign is what Probe returns (wrapped) when the UMCG syscall
// numbers answer, but not as UMCG does: other system calls (on a newer
// kernel 463-465 are setxattrat, getxattrat and listxattrat) or a broken
// UMCG. Unlike ErrAbsent it explains no skip.
var ErrForeign = errors.New("not the UMCG system calls")

// Probe tells whether the running kernel has the UMCG system calls. Three
// calls that are invalid by every rule and have no side effects must all
// answer EINVAL: umcg_ctl(0xff, NULL, 0) (no command, NULL self),
// umcg_wait(1, 0) and umcg_kick(1, 0) (flags must be 0). A kernel without
// the patch answers ENOSYS (ErrAbsent); anything else but three EINVALs
// is ErrForeign.
func Probe() error {
	ctl := Ctl(0xff, 0, 0)
	if ctl == unix.ENOSYS {
		return fmt.Errorf("%w: umcg_ctl (syscall %d) = ENOSYS (no patches/umcg, or CONFIG_UMCG=n)", ErrAbsent, SysCtl)
	}
	return probeAnswers(ctl, Wait(1, 0), Kick(1, 0))
}

// probeAnswers judges the answers of the probe's three calls when
// umcg_ctl did not say ENOSYS.
func probeAnswers(ctl, wait, kick error) error {
	if ctl != unix.EINVAL || wait != unix.EINVAL || kick != unix.EINVAL {
		return fmt.Errorf("%w: syscalls %d/%d/%d answer %v/%v/%v to calls UMCG refuses with EINVAL",
			ErrForeign, SysCtl, SysWait, SysKick, errName(ctl), errName(wait), errName(kick))
	}
	return nil
}

// errName names an errno for the probe's message ("success" for nil).
func errName(err error) string {
	if err == nil {
		return "success"
	}
	if e, ok := err.(unix.Errno); ok && unix.ErrnoName(e) != "" {
		return unix.ErrnoName(e)
	}
	return err.Error()
}
