package main

import (
	"bytes"
	"sync/atomic"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// skipWithout ends the test when f's kernel does not offer feature: a
// skip on a kernel whose configuration leaves it out (i386: no
// HAVE_ARCH_USERFAULTFD_WP/MINOR in 6.12), a failure otherwise — never a
// silent pass.
func (c *tcase) skipWithout(f *uffd.FD, feature uint64) {
	if f.Supported()&feature == 0 {
		c.need(feature, f.Supported())
	}
}

// drainFaults reads the messages queued on f and checks each is a fault
// at page with flags: a user-mode writer in Go can be interrupted by the
// runtime's preemption signal while it waits, and then faults again.
func (c *tcase) drainFaults(f *uffd.FD, page uintptr, flags uint64, what string) int {
	n := 0
	for {
		m, err := tryRead(f)
		if err != nil {
			return n
		}
		c.checkFault(m, page, flags, what+" (repeated)")
		n++
	}
}

// writeProtect checks userfaultfd write-protect (x86_64): a page of a
// range registered MISSING|WP and protected with UFFDIO_WRITEPROTECT has
// the uffd-wp bit (57) in pagemap; a writer blocks with a WRITE|WP fault
// while readers still see the old data; removing the protection wakes it
// and the write lands; removing it with DONTWAKE maps the page writable
// but leaves the writer blocked until UFFDIO_WAKE; COPY with MODE_WP
// maps a missing page protected.
func writeProtect(c *tcase) {
	f := c.newFD(0, 0, uffd.FeaturePagefaultFlagWP)
	c.skipWithout(f, uffd.FeaturePagefaultFlagWP)
	buf := c.anon(3)
	copy(buf.bytes(), pattern(buf.n, 0x91))
	ioctls, err := f.Register(buf.addr(), uintptr(buf.n), uffd.ModeMissing|uffd.ModeWP)
	c.check(err, "register MISSING|WP")
	if ioctls&ioctlWriteProtect == 0 {
		c.Errorf("REGISTER(MISSING|WP) answered ioctls %#x without WRITEPROTECT", ioctls)
	}
	if e := c.pm(buf); e[0]&pmUffdWP != 0 {
		c.Errorf("pagemap shows uffd-wp on page 0 before UFFDIO_WRITEPROTECT")
	}
	ps := uintptr(pageSize)
	c.check(f.WriteProtect(buf.pageAddr(0), ps, uffd.WriteProtectModeWP), "protect page 0")
	if e := c.pm(buf); e[0]&pmUffdWP == 0 || e[1]&pmUffdWP != 0 {
		c.Errorf("pagemap uffd-wp bits after protecting page 0: page0 %v page1 %v, want true false", e[0]&pmUffdWP != 0, e[1]&pmUffdWP != 0)
	}

	const off = 5 * 4
	old := *buf.word(off)
	const val uint32 = 0xfeedf00d
	wr := c.start("writer to the protected page", func() error {
		atomic.StoreUint32(buf.word(off), val)
		return nil
	})
	m := c.read(f, "the write-protect fault")
	c.checkFault(m, buf.pageAddr(0), uffd.PagefaultFlagWrite|uffd.PagefaultFlagWP, "write to a protected page")
	c.stillBlocked("its page is write-protected", wr)
	if got := atomic.LoadUint32(buf.word(off)); got != old {
		c.Errorf("protected word changed to %#x while the writer was blocked", got)
	}
	atomic.StoreUint32(buf.word(pageSize+off), val) // page 1 is not protected
	c.check(f.WriteProtect(buf.pageAddr(0), ps, 0), "unprotect page 0")
	c.await(wr, "its page was unprotected")
	if got := atomic.LoadUint32(buf.word(off)); got != val {
		c.Errorf("word after unprotect: %#x, want the writer's %#x", got, val)
	}
	if e := c.pm(buf); e[0]&pmUffdWP != 0 {
		c.Errorf("pagemap still shows uffd-wp on page 0 after unprotect")
	}
	c.drainFaults(f, buf.pageAddr(0), uffd.PagefaultFlagWrite|uffd.PagefaultFlagWP, "write to a protected page")

	// Unprotect with DONTWAKE: writable, but the writer sleeps on. The
	// writer is a pread() into the page (a kernel-mode write fault), which
	// nothing but the kernel wakes: no runtime signals, one message.
	data := pattern(pageSize, 0x93)
	fd := c.memfd("wp", data)
	c.check(f.WriteProtect(buf.pageAddr(0), ps, uffd.WriteProtectModeWP), "protect page 0 again")
	wr2 := c.start("pread into the protected page", func() error { return uffd.PreadFull(fd, buf.page(0), 0) })
	m = c.read(f, "the pread's write-protect fault")
	c.checkFault(m, buf.pageAddr(0), uffd.PagefaultFlagWrite|uffd.PagefaultFlagWP, "pread into a protected page")
	c.check(f.WriteProtect(buf.pageAddr(0), ps, uffd.WriteProtectModeDontWake), "unprotect with DONTWAKE")
	if e := c.pm(buf); e[0]&pmUffdWP != 0 {
		c.Errorf("pagemap still shows uffd-wp after unprotect with DONTWAKE")
	}
	c.stillBlocked("unprotect with DONTWAKE", wr2)
	c.nothingQueued(f, "the pread's fault was reported once and nothing woke it")
	c.check(f.Wake(buf.pageAddr(0), ps), "WAKE page 0")
	c.await(wr2, "WAKE after unprotect with DONTWAKE")
	if !bytes.Equal(buf.page(0), data) {
		c.Errorf("page 0 after the pread: %s", describePage(buf.page(0), 0x93))
	}

	// COPY with MODE_WP into a missing page maps it protected.
	c.check(zap(buf.sub(2, 1)), "zap page 2")
	src := c.anon(1)
	copy(src.bytes(), pattern(pageSize, 0x92))
	_, err = f.Copy(buf.pageAddr(2), src.addr(), ps, uffd.CopyModeWP)
	c.check(err, "COPY with MODE_WP")
	if e := c.pm(buf); e[2]&pmUffdWP == 0 || e[2]&pmPresent == 0 {
		c.Errorf("page 2 after COPY(MODE_WP): present %v uffd-wp %v, want both", e[2]&pmPresent != 0, e[2]&pmUffdWP != 0)
	}
	wr3 := c.start("writer to the page copied protected", func() error {
		atomic.StoreUint32(buf.word(2*pageSize), val)
		return nil
	})
	m = c.read(f, "the fault on the page copied protected")
	c.checkFault(m, buf.pageAddr(2), uffd.PagefaultFlagWrite|uffd.PagefaultFlagWP, "write to a page copied with MODE_WP")
	c.check(f.WriteProtect(buf.pageAddr(2), ps, 0), "unprotect page 2")
	c.await(wr3, "its page was unprotected")
}
