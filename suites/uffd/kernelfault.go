package main

import (
	"bytes"
	"errors"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// kernelModeFault checks faults the kernel takes on a registered buffer
// inside a system call (copy_to_user in read()). On a normal userfaultfd
// the read blocks, its faults are reported as write faults of the reading
// thread, and it completes with the file's data once they are resolved
// (COPY for one page, ZEROPAGE for the others: the kernel then writes
// over the zero page through a normal copy-on-write). With
// UFFD_USER_MODE_ONLY the same read fails at once with EFAULT and nothing
// is reported, while a user-mode access to the same registration is
// still reported and served.
func kernelModeFault(c *tcase) {
	const pages, seed = 4, 0x4b
	data := pattern(pages*pageSize, seed)
	fd := c.memfd("kfault", data)
	src := c.anon(1)
	copy(src.bytes(), pattern(pageSize, 0x12))

	f := c.newFD(0, uffd.FeatureThreadID, 0)
	buf := c.anon(pages)
	_, err := f.Register(buf.addr(), uintptr(buf.n), uffd.ModeMissing)
	c.check(err, "register")
	rd := c.start("pread into the registered buffer", func() error { return uffd.PreadFull(fd, buf.bytes(), 0) })
	for p := 0; p < pages; p++ {
		m := c.read(f, "the pread's next fault")
		c.checkFault(m, buf.pageAddr(p), uffd.PagefaultFlagWrite, "copy_to_user in pread")
		if int32(m.PTID) != rd.tid.Load() {
			c.Errorf("fault on page %d from thread %d, the reader is %d", p, m.PTID, rd.tid.Load())
		}
		c.stillBlocked("its fault on page "+strconv.Itoa(p)+" was read but not resolved", rd)
		if p == 0 {
			_, err = f.Copy(buf.pageAddr(p), src.addr(), uintptr(pageSize), 0)
		} else {
			_, err = f.Zeropage(buf.pageAddr(p), uintptr(pageSize), 0)
		}
		c.check(err, "resolve page %d", p)
	}
	c.await(rd, "all its faults were resolved")
	for p := 0; p < pages; p++ {
		if !bytes.Equal(buf.page(p), data[p*pageSize:(p+1)*pageSize]) {
			c.Errorf("page %d after pread: %s, want the file's page %d", p, describePage(buf.page(p), seed), p)
		}
	}
	c.nothingQueued(f, "every fault of the read was resolved")

	// USER_MODE_ONLY: the kernel's access fails, the user's is served.
	u := c.newFD(uffd.UserModeOnly, 0, 0)
	ubuf := c.anon(2)
	_, err = u.Register(ubuf.addr(), uintptr(ubuf.n), uffd.ModeMissing)
	c.check(err, "register on the USER_MODE_ONLY descriptor")
	var res atomic.Value
	rd2 := c.start("pread into a USER_MODE_ONLY registration", func() error {
		_, err := unix.Pread(fd, ubuf.page(0), 0)
		res.Store(errBox{err})
		return nil
	})
	c.await(rd2, "a kernel access to USER_MODE_ONLY memory must not block")
	if e, _ := res.Load().(errBox); !errors.Is(e.err, unix.EFAULT) {
		c.Errorf("pread into USER_MODE_ONLY-registered memory: %s (%v), want EFAULT", errName(e.err), e.err)
	}
	c.nothingQueued(u, "kernel-mode faults are not reported on a USER_MODE_ONLY descriptor")
	user := c.start("user-mode reader", func() error {
		sink.Add(atomic.LoadUint32(ubuf.word(pageSize)))
		return nil
	})
	m := c.read(u, "the user-mode fault")
	c.checkFault(m, ubuf.pageAddr(1), 0, "user-mode read on a USER_MODE_ONLY descriptor")
	_, err = u.Zeropage(ubuf.pageAddr(1), uintptr(pageSize), 0)
	c.check(err, "ZEROPAGE")
	c.await(user, "its page was zero-filled")
}

// errBox carries a possibly nil error through an atomic.Value.
type errBox struct{ err error }
