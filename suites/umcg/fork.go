package main

import (
	"syscall"
	"unsafe"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// A worker forks (raw fork(2), from its RUNNING state). The child is a
// copy of the worker thread alone and, per the design, no UMCG task: its
// umcg_ctl(UNREGISTER) and umcg_wait fail with EINVAL (not registered),
// umcg_kick of the parent's server fails with ESRCH (another mm), and its
// sleeps wake nobody and change nothing in its copy of the struct. It runs
// without a Go runtime behind it (see forkChild) and reports through its
// exit status.

// Exit codes of a forked child.
const (
	forkOK = iota
	forkUnregister
	forkWait
	forkKick
	forkStateChanged
	forkTSChanged
)

func forkChildFailure(code int, got uint64) string {
	switch code {
	case forkUnregister:
		return "umcg_ctl(UNREGISTER|WORKER) answered " + errnoName(got) + ", want EINVAL (the child is no UMCG task)"
	case forkWait:
		return "umcg_wait(0, 0) answered " + errnoName(got) + ", want EINVAL"
	case forkKick:
		return "umcg_kick(0, parent's server) answered " + errnoName(got) + ", want ESRCH (another mm)"
	case forkStateChanged:
		return "its copy of the struct changed state across a sleep to " + umcg.FormatState(uint32(got))
	case forkTSChanged:
		return "its copy of blocked_ts changed across a sleep (the kernel treated its sleep as a worker block)"
	}
	if code > 100 {
		return "killed by " + syscall.Signal(code-100).String()
	}
	return "exit status " + errnoName(got)
}

func errnoName(e uint64) string {
	if e == 0 {
		return "0"
	}
	return syscall.Errno(e).Error()
}

// forkArgs is everything the child touches; prepared before the fork.
type forkArgs struct {
	self      unsafe.Pointer // the worker's struct umcg_task (the child's copy)
	serverTID uintptr
	report    unsafe.Pointer // a MAP_SHARED word pair: the child's code and what it got
	sleep     syscall.Timespec
}

// forkChild is the child's whole life: nosplit, raw system calls only, no
// allocation, exit_group at the end (the Go runtime of the parent is not
// there: its other threads do not exist in the child).
//
//go:nosplit
//go:norace
func forkChild(a *forkArgs) {
	// The child's copy of the struct is whatever it was when fork copied
	// the page (the parent may have blocked inside fork): compare with
	// that, not with the parent's state before the fork.
	state0 := *(*uint32)(a.self)
	bts0 := *(*uint32)(unsafe.Add(a.self, umcg.OffBlockedTS))
	if _, _, e := syscall.RawSyscall(umcg.SysCtl, uintptr(umcg.CtlUnregister|umcg.CtlWorker), uintptr(a.self), 0); e != syscall.EINVAL {
		forkExit(a, forkUnregister, uint32(e))
	}
	if _, _, e := syscall.RawSyscall(umcg.SysWait, 0, 0, 0); e != syscall.EINVAL {
		forkExit(a, forkWait, uint32(e))
	}
	if _, _, e := syscall.RawSyscall(umcg.SysKick, 0, a.serverTID, 0); e != syscall.ESRCH {
		forkExit(a, forkKick, uint32(e))
	}
	syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&a.sleep)), 0, 0)
	if st := *(*uint32)(a.self); st != state0 {
		forkExit(a, forkStateChanged, st)
	}
	if *(*uint32)(unsafe.Add(a.self, umcg.OffBlockedTS)) != bts0 {
		forkExit(a, forkTSChanged, 0)
	}
	forkExit(a, forkOK, 0)
}

// forkExit stores the child's verdict in the shared report words and
// ends it with the code as exit status.
//
//go:nosplit
//go:norace
func forkExit(a *forkArgs, code int, got uint32) {
	*(*uint32)(a.report) = uint32(code)
	*(*uint32)(unsafe.Add(a.report, 4)) = got
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, uintptr(code), 0, 0)
}
