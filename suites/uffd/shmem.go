package main

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// missingShmem checks MISSING faults on shared memory
// (UFFD_FEATURE_MISSING_SHMEM): a kernel-mode fault on a hole of a
// MAP_SHARED memfd mapping is reported, and UFFDIO_COPY / UFFDIO_ZEROPAGE
// fill the file itself, not just this mapping: what the faulting system
// call and the mapping see is what pread() of the file returns. A
// ZEROPAGE'd page must read zeros although shmem allocates a real page
// for it: right before each ZEROPAGE the resolving thread frees a page
// full of a pattern on its own CPU, which the page allocator is likely to
// hand back next, so a page that is not cleared leaks that pattern.
func missingShmem(c *tcase) {
	const pages = 8
	f := c.newFD(0, uffd.FeatureMissingShmem, 0)
	fd, err := unix.MemfdCreate("uffd-missing-shmem", unix.MFD_CLOEXEC)
	c.check(err, "memfd_create")
	c.onClose(func() error { return unix.Close(fd) })
	c.check(unix.Ftruncate(fd, int64(pages*pageSize)), "ftruncate") // all holes
	sink := c.memfd("uffd-missing-shmem-sink", make([]byte, pageSize))
	area := c.mmap(pages, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED, fd)
	_, err = f.Register(area.addr(), uintptr(area.n), uffd.ModeMissing)
	c.check(err, "register MISSING on a MAP_SHARED memfd mapping")
	const seed = 0x6d
	src := c.anon(pages)
	copy(src.bytes(), pattern(src.n, seed))
	zeros := make([]byte, pageSize)
	stale := bytes.Repeat([]byte{0xdb}, pageSize)

	defer lockToCPU(0)()

	for p := 0; p < pages; p++ {
		zero := p%2 == 1
		how := "COPY"
		if zero {
			how = "ZEROPAGE"
		}
		// A read fault in the kernel: pwrite() from the page.
		th := c.start(fmt.Sprintf("pwrite from page %d", p), func() error {
			_, err := unix.Pwrite(sink, area.page(p)[:64], 0)
			return err
		})
		m := c.read(f, fmt.Sprintf("the fault on shmem page %d", p))
		c.checkFault(m, area.pageAddr(p), 0, "copy_from_user in pwrite")
		if zero {
			dirtyAndFree(stale)
			_, err = f.Zeropage(area.pageAddr(p), uintptr(pageSize), 0)
		} else {
			_, err = f.Copy(area.pageAddr(p), src.pageAddr(p), uintptr(pageSize), 0)
		}
		c.check(err, "%s of shmem page %d", how, p)
		c.await(th, fmt.Sprintf("%s of its page", how))
		want := src.page(p)
		if zero {
			want = zeros
		}
		if got := area.page(p); !bytes.Equal(got, want) {
			what := describePage(got, seed)
			if bytes.Equal(got, stale) {
				what = "the pattern of the page freed right before: stale contents of a freed page"
			}
			c.Errorf("shmem page %d after %s holds %s through the mapping, want %s", p, how, what, describePage(want, seed))
			continue
		}
		file := make([]byte, pageSize)
		if _, err := unix.Pread(fd, file, int64(p*pageSize)); err != nil {
			c.Errorf("pread of page %d of the memfd: %v", p, err)
		} else if !bytes.Equal(file, want) {
			c.Errorf("page %d of the memfd after %s reads %s through pread, but the mapping shows %s: the resolution did not fill the file", p, how, describePage(file, seed), describePage(want, seed))
		}
	}
	c.nothingQueued(f, "every shmem page was faulted once")
}

// dirtyAndFree fills a fresh anonymous page with b and unmaps it: its
// page goes back to this CPU's free list, first in line.
func dirtyAndFree(b []byte) {
	r, err := mmapRegion(1, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1)
	if err != nil {
		return
	}
	copy(r.bytes(), b)
	r.unmap()
}
