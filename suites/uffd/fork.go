package main

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forkArgs is everything a forked child reads. It is allocated before
// the fork: the child must not allocate.
type forkArgs struct {
	page0, page1 unsafe.Pointer // first words of two pages of a registered area
	want0, want1 uint32
}

// Child exit codes.
const (
	childOK       = 0
	childBadPage0 = 10 // the page populated before the fork has other data
	childBadPage1 = 11 // the page missing at fork has other data once resolved
)

// forkChild is the child's whole life (the raw-fork recipe of the
// kmaplocal suite): it runs on the parent's goroutine stack without a Go
// runtime behind it — no other threads, maybe a lock held by a thread
// that no longer exists — so it is nosplit, calls only raw system calls,
// allocates nothing and ends in exit_group. Its load of page1 is a
// user-mode fault of the child, which blocks on the child's userfaultfd
// when the parent's had EVENT_FORK.
//
//go:nosplit
//go:norace
func forkChild(a *forkArgs) {
	code := uintptr(childOK)
	if *(*uint32)(a.page0) != a.want0 {
		code = childBadPage0
	} else if *(*uint32)(a.page1) != a.want1 {
		code = childBadPage1
	}
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, code, 0, 0)
}

// rawFork forks with a raw fork() (fork+exec would drop the registered
// memory); the child runs forkChild and never returns. The calling
// goroutine must be locked to its thread, and the collector must be off:
// with EVENT_FORK the parent stays inside fork() until the FORK event is
// read, holding its P, where no stop-the-world can reach it.
func rawFork(a *forkArgs) (int, error) {
	pid, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("fork: %w", e)
	}
	if pid == 0 {
		forkChild(a)
	}
	return int(pid), nil
}

// waitChild reaps pid, waiting up to d; ok is false if it is still
// running then.
func waitChild(pid int, d time.Duration) (ws unix.WaitStatus, ok bool, err error) {
	deadline := time.Now().Add(d)
	for {
		wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return ws, false, fmt.Errorf("wait4(%d): %w", pid, err)
		}
		if wpid == pid {
			return ws, true, nil
		}
		if time.Now().After(deadline) {
			return ws, false, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childStatus describes how a child ended, "" if it exited with childOK.
func childStatus(ws unix.WaitStatus) string {
	switch {
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	case !ws.Exited():
		return fmt.Sprintf("wait status %#x", uint32(ws))
	case ws.ExitStatus() == childOK:
		return ""
	case ws.ExitStatus() == childBadPage0:
		return "saw other data in the page populated before the fork"
	case ws.ExitStatus() == childBadPage1:
		return "saw other data in the page that was missing at the fork"
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}

// forkAndReap forks (on a locked thread), registers the child for
// cleanup and returns its pid. With EVENT_FORK the fork only returns once
// the event is read, so the caller reads it in between: readEvent runs
// while the fork is in progress.
func (c *tcase) forkAndReap(a *forkArgs, readEvent func()) int {
	var pid int
	forker := c.start("fork", func() error {
		p, err := rawFork(a)
		pid = p
		return err
	})
	if readEvent != nil {
		readEvent()
	}
	if !forker.wait(waitDone) {
		c.Fatalf("fork() still blocked after %s", waitDone)
	}
	if forker.err != nil {
		c.Fatalf("%v", forker.err)
	}
	c.child(pid)
	return pid
}

// reapChild waits for the child and checks that it exited with childOK.
func (c *tcase) reapChild(pid int, what string) {
	ws, ok, err := waitChild(pid, waitDone)
	if err != nil {
		c.Fatalf("%v", err)
	}
	if !ok {
		c.Fatalf("child %d (%s) still running after %s", pid, what, waitDone)
	}
	c.reaped(pid)
	if s := childStatus(ws); s != "" {
		c.Errorf("child %d (%s) %s", pid, what, s)
	}
}
