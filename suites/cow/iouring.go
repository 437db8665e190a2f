package main

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ring sets up an io_uring with area registered as fixed buffer 0; the
// buffer is unregistered (unpinned) and the ring closed at the end.
func (c *tcase) ring(area []byte) *uring {
	u, err := newUring()
	if err != nil {
		disabled, _ := os.ReadFile("/proc/sys/kernel/io_uring_disabled")
		if v, ok := iouringVerdict(err, strings.TrimSpace(string(disabled)), c.env.cfg, c.env.cfgErr); ok {
			v.Apply(c)
		}
	}
	c.mustf(err, "io_uring")
	c.later(u.close)
	c.mustf(u.registerBuffer(area), "register the area")
	c.pinned(pages(area))
	c.later(func() {
		if err := u.unregisterBuffers(); err != nil {
			c.Errorf("%v", err)
		}
	})
	return u
}

// checkFixedBuffer writes fixed buffer 0 to a tmpfs file and checks
// that the file holds the parent's data: the pinned pages must still be
// the pages the parent writes to.
func (c *tcase) checkFixedBuffer(u *uring, area []byte) {
	fd := c.tmpfile()
	n, err := u.writeFixed(fd, area)
	c.mustf(err, "write the fixed buffer")
	if n != len(area) {
		c.Fatalf("IORING_OP_WRITE_FIXED wrote %d of %d bytes", n, len(area))
	}
	got := c.buffer(len(area))
	for off := 0; off < len(got); {
		m, err := unix.Pread(fd, got[off:], int64(off))
		c.mustf(err, "pread")
		if m == 0 {
			c.Fatalf("file ends after %d bytes", off)
		}
		off += m
	}
	if m := mismatch(got, tagParent, 0); m != "" {
		c.Errorf("the io_uring fixed buffer is not the parent's memory any more (file written from it): %s", m)
	}
}

// iouringFork: fork while the area is an io_uring fixed buffer (cow.c
// "fork() with an iouring fixed buffer"); fork must copy it for the
// child, the parent's writes must reach the file through the pins, and
// the child keeps the pre-fork data.
func iouringFork(kind memKind) func(*tcase) {
	return func(c *tcase) {
		r := c.region(kind)
		u := c.ring(r.area)
		f := c.newForker()
		s := f.script()
		s.notify(f.childOut())
		s.wait(f.childIn())
		s.check(r.area, tagPre, 0, "the parent's write to its fixed buffer leaked into the child")
		before := c.vmstat()
		ch := c.fork(f, s)
		c.expectEarlyCopies(before, c.vmstat(), pages(r.area), splits(kind))
		c.expectExclusive(r.area, true, "right after fork (a fixed buffer must not be shared with the child)")
		c.await(ch)
		fill(r.area, tagParent, 0)
		c.checkFixedBuffer(u, r.area)
		c.release(ch)
		c.finish(ch)
	}
}

// iouringRO: map a registered buffer R/O and R/W again, then write
// (cow.c "R/O-mapping a page registered as iouring fixed buffer"): the
// write fault must reuse the pinned page, not replace it.
func iouringRO(kind memKind) func(*tcase) {
	return func(c *tcase) {
		r := c.region(kind)
		u := c.ring(r.area)
		c.mprotectDance(r.area)
		fill(r.area, tagParent, 0)
		c.checkFixedBuffer(u, r.area)
	}
}
