package main

import (
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// minorShmem checks minor faults on shmem (x86_64 kernels offering
// MINOR_SHMEM): a memfd is mapped twice, once registered MINOR and once
// plain. Its pages are in the page cache, so touching them through the
// registered mapping raises a MINOR fault (a read fault, then a write
// fault). The handler changes the page through the plain mapping and
// resolves with UFFDIO_CONTINUE, which maps the existing page-cache page:
// the faulting thread sees the handler's change, and a write through the
// registered mapping shows in the plain one. A second CONTINUE of a
// mapped page fails with EEXIST.
func minorShmem(c *tcase) {
	f := c.newFD(0, 0, uffd.FeatureMinorShmem)
	c.skipWithout(f, uffd.FeatureMinorShmem)
	const seed = 0xa1
	fd := c.memfd("minor", pattern(2*pageSize, seed))
	reg := c.mmap(2, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED, fd)
	plain := c.mmap(2, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED, fd)
	ioctls, err := f.Register(reg.addr(), uintptr(reg.n), uffd.ModeMinor)
	c.check(err, "register MINOR")
	if want := rangeIoctls(uffd.ModeMinor); ioctls != want {
		c.Errorf("REGISTER(MINOR) answered ioctls %#x, want %#x (with CONTINUE)", ioctls, want)
	}
	ps := uintptr(pageSize)

	var got atomic.Uint32
	rd := c.start("reader through the MINOR registration", func() error {
		got.Store(atomic.LoadUint32(reg.word(8)))
		return nil
	})
	m := c.read(f, "the minor read fault")
	c.checkFault(m, reg.pageAddr(0), uffd.PagefaultFlagMinor, "read of a page-cache page")
	const changed uint32 = 0x5eed5eed
	atomic.StoreUint32(plain.word(8), changed) // the handler's edit, in the page cache
	n, err := f.Continue(reg.pageAddr(0), ps, 0)
	if err != nil || n != int64(ps) {
		c.Errorf("CONTINUE page 0: %d bytes, %v", n, err)
	}
	c.await(rd, "CONTINUE of its page")
	if got.Load() != changed {
		c.Errorf("reader saw %#x, want the page-cache page's %#x", got.Load(), changed)
	}
	c.drainFaults(f, reg.pageAddr(0), uffd.PagefaultFlagMinor, "read of a page-cache page")
	_, err = f.Continue(reg.pageAddr(0), ps, 0)
	c.wantErrno("CONTINUE of a mapped page", err, unix.EEXIST)

	const written uint32 = 0xabcd1234
	wr := c.start("writer through the MINOR registration", func() error {
		atomic.StoreUint32(reg.word(pageSize+12), written)
		return nil
	})
	m = c.read(f, "the minor write fault")
	c.checkFault(m, reg.pageAddr(1), uffd.PagefaultFlagMinor|uffd.PagefaultFlagWrite, "write to a page-cache page")
	_, err = f.Continue(reg.pageAddr(1), ps, 0)
	c.check(err, "CONTINUE page 1")
	c.await(wr, "CONTINUE of its page")
	if v := atomic.LoadUint32(plain.word(pageSize + 12)); v != written {
		c.Errorf("the plain mapping reads %#x after the write through the registered one, want %#x", v, written)
	}
	c.drainFaults(f, reg.pageAddr(1), uffd.PagefaultFlagMinor|uffd.PagefaultFlagWrite, "write to a page-cache page")
}
