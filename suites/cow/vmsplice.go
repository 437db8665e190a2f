package main

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// vmsplice() takes plain page references (FOLL_GET, not a pin): the
// pages stay in the pipe after the process unmaps them. A write fault
// may therefore reuse a page only when nobody else holds a reference
// (do_wp_page: refcount, not mapcount), or the pipe's reader sees the
// writer's later data: CVE-2020-29374, Jann Horn's Project Zero 2045.

// vmspliceChild is the CVE shape (cow.c "vmsplice() + unmap in child"
// [with mprotect() optimization]): the child vmsplice()s the shared area
// into a pipe and unmaps it, the parent writes, and what the child reads
// from the pipe must still be the pre-fork data.
func vmspliceChild(kind memKind, mprot bool) func(*tcase) {
	return func(c *tcase) {
		r := c.region(kind)
		area := r.area
		p := c.pipe(len(area))
		buf := c.buffer(len(area))
		f := c.newForker()
		s := f.script()
		s.vmsplice(p[1], area)
		s.munmap(area)
		s.notify(f.childOut())
		s.wait(f.childIn())
		s.pipeCheck(p[0], buf, tagPre, "CVE-2020-29374: the child's vmsplice()d pages show the parent's write after fork")
		before := c.vmstat()
		ch := c.fork(f, s)
		c.expectEarlyCopies(before, c.vmstat(), 0, 0)
		c.await(ch)
		c.parentWrite(area, mprot)
		c.release(ch)
		c.finish(ch)
		c.spliced(int(f.rep.transferred), len(area))
		if m := mismatch(area, tagParent, 0); m != "" {
			c.Errorf("the parent does not see its own write: %s", m)
		}
	}
}

// vmspliceParent: the parent vmsplice()s the area, before or after the
// fork, and unmaps it after the fork; then the child writes. The pipe
// must hold the pre-fork data, not the child's (cow.c "vmsplice() before
// fork(), unmap in parent after fork()" and "vmsplice() + unmap in
// parent after fork()").
func vmspliceParent(kind memKind, beforeFork bool) func(*tcase) {
	return func(c *tcase) {
		r := c.region(kind)
		area := r.area
		p := c.pipe(len(area))
		f := c.newForker()
		s := f.script()
		s.notify(f.childOut())
		s.wait(f.childIn())
		s.fill(area, tagChild, 0)
		var n int
		splice := func() {
			var err error
			n, err = vmsplice(p[1], area)
			c.mustf(err, "vmsplice")
		}
		if beforeFork {
			splice()
		}
		before := c.vmstat()
		ch := c.fork(f, s)
		c.expectEarlyCopies(before, c.vmstat(), 0, 0)
		if !beforeFork {
			splice()
		}
		c.await(ch)
		r.unmap()
		c.release(ch)
		c.finish(ch)
		c.spliced(n, len(area))
		got := c.buffer(n)
		for off := 0; off < n; {
			m, err := unix.Read(p[0], got[off:n])
			c.mustf(err, "read pipe")
			if m == 0 {
				c.Fatalf("pipe ended after %d of %d bytes", off, n)
			}
			off += m
		}
		if m := mismatch(got, tagPre, 0); m != "" {
			c.Errorf("the child's write leaked into the parent's pipe: %s", m)
		}
	}
}

// vmsplice splices b into the pipe fd once.
func vmsplice(fd int, b []byte) (int, error) {
	iov := []unix.Iovec{{Base: &b[0]}}
	iov[0].SetLen(len(b))
	n, err := unix.Vmsplice(fd, iov, 0)
	if err != nil {
		return 0, fmt.Errorf("vmsplice: %w", err)
	}
	if n <= 0 {
		return 0, errors.New("vmsplice spliced nothing")
	}
	return n, nil
}

// spliced records how much vmsplice took; less than a page means the
// test compared nothing.
func (c *tcase) spliced(n, want int) {
	c.Metric("spliced_bytes", float64(n))
	if n < pageSize {
		c.Errorf("vmsplice took %d bytes of %d: nothing was compared", n, want)
	} else if n < want {
		c.Logf("vmsplice took %d of %d bytes (pipe size); compared those", n, want)
	}
}
