package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// read waits up to waitDone for one message on f; what says what the
// test expects (for the failure message).
func (c *tcase) read(f *uffd.FD, what string) uffd.Msg {
	ctx, cancel := context.WithTimeout(c.Context(), waitDone)
	defer cancel()
	m, err := f.ReadMsg(ctx)
	if err != nil {
		c.Fatalf("waiting for %s: %v", what, err)
	}
	return m
}

// tryRead reads one message from the nonblocking f without waiting; the
// error is unix.EAGAIN when nothing is queued.
func tryRead(f *uffd.FD) (uffd.Msg, error) {
	var b [uffd.MsgSize]byte
	for {
		n, err := unix.Read(f.Fd(), b[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return uffd.Msg{}, err
		}
		if n != uffd.MsgSize {
			return uffd.Msg{}, fmt.Errorf("read returned %d bytes, want %d", n, uffd.MsgSize)
		}
		return uffd.DecodeMsg(b[:])
	}
}

// nothingQueued checks that f has no message: a read must fail with
// EAGAIN. why says what would be wrong.
func (c *tcase) nothingQueued(f *uffd.FD, why string) bool {
	m, err := tryRead(f)
	if errors.Is(err, unix.EAGAIN) {
		return true
	}
	if err != nil {
		c.Errorf("nonblocking read: %v, want EAGAIN (%s)", err, why)
	} else {
		c.Errorf("unexpected message %v: %s", m, why)
	}
	return false
}

// pollIn waits up to d for POLLIN on f.
func pollIn(f *uffd.FD, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(min(left, 100*time.Millisecond)/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll: %w", err)
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			return true, nil
		}
		if n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			return false, fmt.Errorf("poll: revents %#x", fds[0].Revents)
		}
	}
}

// checkFault checks that m is a page fault at page with exactly flags.
func (c *tcase) checkFault(m uffd.Msg, page uintptr, flags uint64, what string) bool {
	if m.Event != uffd.EventPagefault || m.Address != uint64(page) || m.Flags != flags {
		c.Errorf("%s: got %v (flags %#x), want a PAGEFAULT at %#x with flags %#x", what, m, m.Flags, page, flags)
		return false
	}
	return true
}
