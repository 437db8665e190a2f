package main

import (
	"errors"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// sigbusPoison checks the two ways a registration answers a fault with
// SIGBUS instead of a wait:
//   - UFFD_FEATURE_SIGBUS: a MISSING fault is never queued; a kernel-mode
//     fault (pread() into the area) fails at once with EFAULT, a user-mode
//     access raises SIGBUS at the address. A page mapped by UFFDIO_COPY
//     reads normally.
//   - UFFDIO_POISON (UFFD_FEATURE_POISON): a poisoned page raises SIGBUS
//     (EFAULT in the kernel) whatever the registration does; poisoning
//     it again fails with EEXIST, a COPY replaces the poison.
//
// Neither may leave a thread asleep: every access runs on its own thread
// and must finish within the test's wait.
func sigbusPoison(c *tcase) {
	const pages, seed = 4, 0x5b
	data := pattern(pages*pageSize, seed)
	fd := c.memfd("sigbus", data)
	src := c.anon(1)
	copy(src.bytes(), data[2*pageSize:3*pageSize])

	f := c.newFD(0, uffd.FeatureSigbus|uffd.FeaturePoison, 0)
	buf := c.anon(pages)
	_, err := f.Register(buf.addr(), uintptr(buf.n), uffd.ModeMissing)
	c.check(err, "register")

	// Page 0: a kernel-mode fault fails with EFAULT.
	c.wantErrno("pread into a missing page of a SIGBUS registration", c.onThread("pread into page 0", func() error {
		return uffd.PreadFull(fd, buf.page(0), 0)
	}), unix.EFAULT)
	// Page 1: a user-mode access raises SIGBUS at the address.
	c.wantFault("a load from a missing page of a SIGBUS registration", buf.pageAddr(1)+8, func() uint32 { return *buf.word(pageSize + 8) })
	c.nothingQueued(f, "a SIGBUS registration reports no fault")

	// Page 2: mapped by COPY, it reads normally.
	_, err = f.Copy(buf.pageAddr(2), src.addr(), uintptr(pageSize), 0)
	c.check(err, "UFFDIO_COPY of page 2")
	if got := *buf.word(2*pageSize + 64); got != patternWord(seed, 2*pageSize+64) {
		c.Errorf("page 2 after UFFDIO_COPY holds %#x at byte 64, want %#x", got, patternWord(seed, 2*pageSize+64))
	}

	// Page 3: poisoned.
	_, err = f.Poison(buf.pageAddr(3), uintptr(pageSize), 0)
	c.check(err, "UFFDIO_POISON of page 3")
	c.wantErrno("pread into a poisoned page", c.onThread("pread into page 3", func() error {
		return uffd.PreadFull(fd, buf.page(3), 3*int64(pageSize))
	}), unix.EFAULT)
	c.wantFault("a load from a poisoned page", buf.pageAddr(3)+16, func() uint32 { return *buf.word(3*pageSize + 16) })
	_, err = f.Poison(buf.pageAddr(3), uintptr(pageSize), 0)
	c.wantErrno("UFFDIO_POISON of a poisoned page", err, unix.EEXIST)
	// A poison marker is no page: COPY may replace it (as it replaces
	// any PTE marker, mfill_atomic_install_pte), and the page reads.
	_, err = f.Copy(buf.pageAddr(3), src.addr(), uintptr(pageSize), 0)
	c.check(err, "UFFDIO_COPY over a poisoned page")
	if got := *buf.word(3*pageSize + 64); got != patternWord(seed, 2*pageSize+64) {
		c.Errorf("page 3 after UFFDIO_COPY over its poison holds %#x at byte 64, want %#x", got, patternWord(seed, 2*pageSize+64))
	}
	c.nothingQueued(f, "neither SIGBUS nor poison reports a fault")
}

// onThread runs fn on a thread of its own and returns its error; a
// thread still blocked after waitDone ends the test (a fault that waited
// instead of failing).
func (c *tcase) onThread(name string, fn func() error) error {
	th := c.start(name, fn)
	if !th.wait(waitDone) {
		c.Fatalf("%s (tid %d) still blocked after %s: the fault waited instead of failing", name, th.tid.Load(), waitDone)
	}
	return th.err
}

// wantFault runs load on a thread of its own with faults turned into
// panics (debug.SetPanicOnFault) and checks that it faulted at addr.
func (c *tcase) wantFault(what string, addr uintptr, load func() uint32) {
	var got uintptr
	var val uint32
	faulted := false
	err := c.onThread(what, func() error {
		debug.SetPanicOnFault(true)
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			faulted = true
			var ae interface{ Addr() uintptr }
			if e, ok := r.(runtime.Error); ok && errors.As(e, &ae) {
				got = ae.Addr()
			}
		}()
		val = load()
		return nil
	})
	switch {
	case err != nil:
		c.Errorf("%s: %v", what, err)
	case !faulted:
		c.Errorf("%s read %#x, want SIGBUS", what, val)
	case got != addr:
		c.Errorf("%s faulted at %#x, want %#x", what, got, addr)
	}
}
