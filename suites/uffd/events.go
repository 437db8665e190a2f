package main

import (
	"bytes"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// forkSetup registers a two-page area on f, populates page 0 with COPY
// and returns the area and the source of the two pages' data.
func (c *tcase) forkSetup(f *uffd.FD) (area, src region) {
	area = c.anon(2)
	_, err := f.Register(area.addr(), uintptr(area.n), uffd.ModeMissing)
	c.check(err, "register")
	src = c.anon(2)
	copy(src.bytes(), pattern(src.n, 0x61))
	_, err = f.Copy(area.pageAddr(0), src.addr(), uintptr(pageSize), 0)
	c.check(err, "COPY page 0 before the fork")
	return area, src
}

// eventFork checks UFFD_FEATURE_EVENT_FORK: fork() of a process with a
// registered area blocks until the FORK event is read; the event carries
// a new userfaultfd, now in our file table, which serves the child's
// faults — the child's read of the page missing at fork is reported
// there (by the child's thread), not on the parent's descriptor, and is
// resolved in the child's address space only. The new context inherits
// the parent's features.
func eventFork(c *tcase) {
	f := c.newFD(0, uffd.FeatureEventFork, uffd.FeatureThreadID)
	area, src := c.forkSetup(f)
	a := &forkArgs{page0: area.p, page1: unsafe.Add(area.p, pageSize), want0: *src.word(0), want1: *src.word(pageSize)}
	var ev uffd.Msg
	pid := c.forkAndReap(a, func() { ev = c.read(f, "the FORK event") })
	if ev.Event != uffd.EventFork || ev.UFD == 0 {
		c.Fatalf("got %v, want a FORK event with a descriptor", ev)
	}
	cf := c.track(uffd.Adopt(int(ev.UFD), f.Flags(), f.Features()))
	if fi, err := readFdinfo(cf.Fd()); err != nil {
		c.Errorf("fdinfo of the child's userfaultfd: %v", err)
	} else if want := f.Features() | featureInitialized; fi.Features != want {
		c.Errorf("child's userfaultfd has features %#x, want the parent's %#x", fi.Features, want)
	}

	m := c.read(cf, "the child's fault on page 1 (on the child's userfaultfd)")
	c.checkFault(m, area.pageAddr(1), 0, "the child's read of page 1")
	if f.Has(uffd.FeatureThreadID) && int(m.PTID) != pid {
		c.Errorf("child's fault carries thread id %d, the child is %d", m.PTID, pid)
	}
	_, err := cf.Copy(area.pageAddr(1), src.pageAddr(1), uintptr(pageSize), 0)
	c.check(err, "COPY into the child through its userfaultfd")
	c.reapChild(pid, "EVENT_FORK")
	c.nothingQueued(f, "the child's faults belong to the child's userfaultfd")
	if c.present(area)[1] {
		c.Errorf("the parent's page 1 is mapped after the child's was resolved")
	}
}

// eventForkDisabled: without EVENT_FORK, fork() resets the child's
// registration (dup_userfaultfd): the child's read of the page missing at
// fork gets a zero page without blocking, and nothing reaches the
// parent's descriptor, whose own registration stays in force.
func eventForkDisabled(c *tcase) {
	f := c.newFD(0, 0, 0)
	area, src := c.forkSetup(f)
	a := &forkArgs{page0: area.p, page1: unsafe.Add(area.p, pageSize), want0: *src.word(0), want1: 0}
	pid := c.forkAndReap(a, nil)
	c.reapChild(pid, "no EVENT_FORK")
	c.nothingQueued(f, "without EVENT_FORK the child's memory is not registered")

	rd := c.start("parent reader of page 1", func() error {
		sink.Add(atomic.LoadUint32(area.word(pageSize)))
		return nil
	})
	m := c.read(f, "the parent's own fault on page 1")
	c.checkFault(m, area.pageAddr(1), 0, "the parent's read of page 1")
	_, err := f.Zeropage(area.pageAddr(1), uintptr(pageSize), 0)
	c.check(err, "ZEROPAGE")
	c.await(rd, "its page was zero-filled")
}

// eventRemap checks UFFD_FEATURE_EVENT_REMAP: mremap() of a registered
// area blocks until the REMAP event (from, to, len) is read, and the
// registration moves with the mapping: data stays, missing pages of the
// new range are still reported.
func eventRemap(c *tcase) {
	f := c.newFD(0, uffd.FeatureEventRemap, 0)
	area := c.anon(4)
	_, err := f.Register(area.addr(), uintptr(area.n), uffd.ModeMissing)
	c.check(err, "register")
	src := c.anon(1)
	copy(src.bytes(), pattern(pageSize, 0x62))
	_, err = f.Copy(area.pageAddr(0), src.addr(), uintptr(pageSize), 0)
	c.check(err, "COPY page 0")
	target := c.mmap(4, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1)

	mover := c.start("mremap", func() error {
		_, err := unix.MremapPtr(area.p, uintptr(area.n), target.p, uintptr(area.n), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED)
		return err
	})
	c.stillBlocked("its REMAP event is unread", mover)
	m := c.read(f, "the REMAP event")
	if m.Event != uffd.EventRemap || m.From != uint64(area.addr()) || m.To != uint64(target.addr()) || m.Len != uint64(area.n) {
		c.Errorf("got %v, want REMAP from=%#x to=%#x len=%#x", m, area.addr(), target.addr(), area.n)
	}
	c.await(mover, "its REMAP event was read")
	if mover.err != nil {
		c.Fatalf("mremap failed; the rest depends on it")
	}
	c.forget(area)
	if !bytes.Equal(target.page(0), src.page(0)) {
		c.Errorf("page 0 after mremap: %s, want the data copied before", describePage(target.page(0), 0x62))
	}
	rd := c.start("reader of the moved range", func() error {
		sink.Add(atomic.LoadUint32(target.word(2 * pageSize)))
		return nil
	})
	m = c.read(f, "a fault in the moved range")
	c.checkFault(m, target.pageAddr(2), 0, "read of page 2 at its new address")
	_, err = f.Zeropage(target.pageAddr(2), uintptr(pageSize), 0)
	c.check(err, "ZEROPAGE at the new address")
	c.await(rd, "its page was zero-filled")
	for i, p := range c.present(area) {
		if p {
			c.Errorf("old address of page %d still mapped after mremap", i)
		}
	}
}

// eventRemove checks UFFD_FEATURE_EVENT_REMOVE: madvise(MADV_DONTNEED) on
// part of a registered area blocks until the REMOVE event [start, end) is
// read; the pages are then missing again and their next access is
// reported again.
func eventRemove(c *tcase) {
	f := c.newFD(0, uffd.FeatureEventRemove, 0)
	area := c.anon(4)
	_, err := f.Register(area.addr(), uintptr(area.n), uffd.ModeMissing)
	c.check(err, "register")
	src := c.anon(4)
	copy(src.bytes(), pattern(src.n, 0x63))
	_, err = f.Copy(area.addr(), src.addr(), uintptr(area.n), 0)
	c.check(err, "COPY all pages")

	zap := area.sub(1, 2)
	th := c.start("madvise(DONTNEED)", func() error { return unix.Madvise(zap.bytes(), unix.MADV_DONTNEED) })
	c.stillBlocked("its REMOVE event is unread", th)
	m := c.read(f, "the REMOVE event")
	if m.Event != uffd.EventRemove || m.Start != uint64(zap.addr()) || m.End != uint64(zap.addr())+uint64(zap.n) {
		c.Errorf("got %v, want REMOVE [%#x, %#x)", m, zap.addr(), zap.addr()+uintptr(zap.n))
	}
	c.await(th, "its REMOVE event was read")
	for i, p := range c.present(area) {
		if want := i == 0 || i == 3; p != want {
			c.Errorf("page %d mapped=%v after MADV_DONTNEED of pages 1-2, want %v", i, p, want)
		}
	}
	rd := c.start("reader of a removed page", func() error {
		sink.Add(atomic.LoadUint32(area.word(pageSize)))
		return nil
	})
	m = c.read(f, "the fault on a removed page")
	c.checkFault(m, area.pageAddr(1), 0, "read of removed page 1")
	_, err = f.Copy(area.pageAddr(1), src.pageAddr(1), uintptr(pageSize), 0)
	c.check(err, "COPY page 1 again")
	c.await(rd, "its page was copied again")
}

// eventUnmap checks UFFD_FEATURE_EVENT_UNMAP: munmap() of part of a
// registered area blocks until the UNMAP event [start, end) is read; the
// rest of the area stays mapped and registered.
func eventUnmap(c *tcase) {
	f := c.newFD(0, uffd.FeatureEventUnmap, 0)
	area := c.anon(4)
	_, err := f.Register(area.addr(), uintptr(area.n), uffd.ModeMissing)
	c.check(err, "register")
	src := c.anon(1)
	_, err = f.Copy(area.addr(), src.addr(), uintptr(pageSize), 0)
	c.check(err, "COPY page 0")

	hole := area.sub(1, 2)
	th := c.start("munmap", hole.unmap)
	c.stillBlocked("its UNMAP event is unread", th)
	m := c.read(f, "the UNMAP event")
	if m.Event != uffd.EventUnmap || m.Start != uint64(hole.addr()) || m.End != uint64(hole.addr())+uint64(hole.n) {
		c.Errorf("got %v, want UNMAP [%#x, %#x)", m, hole.addr(), hole.addr()+uintptr(hole.n))
	}
	c.await(th, "its UNMAP event was read")
	c.forget(area)
	c.keep(area.sub(0, 1))
	c.keep(area.sub(3, 1))
	if p := c.present(area.sub(0, 1)); !p[0] {
		c.Errorf("page 0 is not mapped after munmap of pages 1-2")
	}
	rd := c.start("reader of page 3", func() error {
		sink.Add(atomic.LoadUint32(area.word(3 * pageSize)))
		return nil
	})
	m = c.read(f, "the fault on page 3, still registered")
	c.checkFault(m, area.pageAddr(3), 0, "read of page 3")
	_, err = f.Zeropage(area.pageAddr(3), uintptr(pageSize), 0)
	c.check(err, "ZEROPAGE page 3")
	c.await(rd, "its page was zero-filled")
}

// eventBlocksCopy: while a non-cooperative event is unread the address
// space is changing (ctx->mmap_changing) and COPY, ZEROPAGE and MOVE fail
// with EAGAIN rather than racing with it; once the event is read and the
// madvise() that raised it has returned, COPY works.
func eventBlocksCopy(c *tcase) {
	f := c.newFD(0, uffd.FeatureEventRemove, uffd.FeatureMove)
	area := c.anon(4)
	_, err := f.Register(area.addr(), uintptr(area.n), uffd.ModeMissing)
	c.check(err, "register")
	src := c.anon(2)
	copy(src.bytes(), pattern(src.n, 0x64))
	_, err = f.Copy(area.addr(), src.addr(), 2*uintptr(pageSize), 0)
	c.check(err, "COPY pages 0-1")

	zap := area.sub(0, 2)
	th := c.start("madvise(DONTNEED)", func() error { return unix.Madvise(zap.bytes(), unix.MADV_DONTNEED) })
	ok, err := pollIn(f, waitDone)
	if err != nil || !ok {
		c.Fatalf("no event became readable within %s (poll: %v)", waitDone, err)
	}
	ps := uintptr(pageSize)
	n, err := f.Copy(area.pageAddr(3), src.addr(), ps, 0)
	c.wantErrno("COPY while the REMOVE event is unread", err, unix.EAGAIN)
	if n != 0 {
		c.Errorf("COPY while the REMOVE event is unread copied %d bytes", n)
	}
	_, err = f.Zeropage(area.pageAddr(3), ps, 0)
	c.wantErrno("ZEROPAGE while the REMOVE event is unread", err, unix.EAGAIN)
	if f.Has(uffd.FeatureMove) {
		msrc := c.anon(1)
		copy(msrc.bytes(), pattern(pageSize, 0x65))
		_, err = f.Move(area.pageAddr(3), msrc.addr(), ps, 0)
		c.wantErrno("MOVE while the REMOVE event is unread", err, unix.EAGAIN)
	}
	if c.present(area)[3] {
		c.Errorf("page 3 was mapped by a refused resolution")
	}
	c.stillBlocked("its REMOVE event is unread", th)
	m := c.read(f, "the REMOVE event")
	if m.Event != uffd.EventRemove {
		c.Errorf("got %v, want REMOVE", m)
	}
	c.await(th, "its REMOVE event was read")
	_, err = f.Copy(area.pageAddr(3), src.addr(), ps, 0)
	if err != nil {
		c.Errorf("COPY after the event was read and madvise returned: %v", err)
	} else if !bytes.Equal(area.page(3), src.page(0)) {
		c.Errorf("page 3 after COPY: %s", describePage(area.page(3), 0x64))
	}
}

// keep adds a region for unmapping at the end (a piece of a region the
// test split).
func (c *tcase) keep(r region) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.regions = append(c.regions, r)
}
