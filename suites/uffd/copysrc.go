package main

import (
	"bytes"
	"context"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// copySource checks where UFFDIO_COPY takes its data from
// (mfill_atomic_pte_copy, mm/userfaultfd.c). The first copy of each page
// runs with page faults disabled under the mmap lock; a source page that
// is not mapped makes it fail with -ENOENT, and mfill_atomic copies that
// page again with faults allowed and retries the install. So:
//   - a multi-page COPY from shmem file mappings that were never touched
//     (every page takes the retry path) must give each page its own data;
//   - from untouched anonymous memory, zeros;
//   - from a source registered on another userfaultfd, the retry's copy
//     faults inside the ioctl, waits for that descriptor's handler and
//     then copies what it mapped;
//   - from an unmapped source, EFAULT, with the destination still
//     missing;
//   - onto a page that is already mapped, EEXIST, with the page
//     unchanged (COPY and ZEROPAGE alike).
func copySource(c *tcase) {
	const pages = 4
	f := c.newFD(0, 0, 0)
	dst := c.anon(4 * pages)
	_, err := f.Register(dst.addr(), uintptr(dst.n), uffd.ModeMissing)
	c.check(err, "register")

	// Untouched shmem source: every page through the retry path. Each
	// page is its own mapping (file pages in reverse order, so the VMAs
	// cannot merge): the retry's fault on one source page must not map
	// its neighbours by fault-around, or they would take the fast path.
	const seed = 0x71
	data := pattern(pages*pageSize, seed)
	fd := c.memfd("copysrc", data)
	shm := c.reversedFileMap(fd, pages)
	for i, p := range c.present(shm) {
		if p {
			c.Errorf("source page %d is mapped before the COPY: the retry path would not be taken", i)
		}
	}
	d := dst.sub(0, pages)
	n, err := f.Copy(d.addr(), shm.addr(), uintptr(d.n), 0)
	if err != nil || n != int64(d.n) {
		c.Errorf("COPY %d pages from an untouched shmem mapping: %d bytes, %v", pages, n, err)
	}
	// Only the retry's copy can fault a source page in: a page mapped now
	// took the retry path.
	for i, p := range c.present(shm) {
		if !p {
			c.Errorf("source page %d is not mapped after the COPY: it did not take the -ENOENT retry path", i)
		}
	}
	for p := 0; p < pages; p++ {
		fp := pages - 1 - p
		if want := data[fp*pageSize : (fp+1)*pageSize]; !bytes.Equal(d.page(p), want) {
			c.Errorf("page %d copied from an untouched shmem source holds %s, want page %d", p, describePage(d.page(p), seed), fp)
		}
	}

	// Untouched anonymous source: zeros.
	anon := c.anon(pages)
	d = dst.sub(pages, pages)
	n, err = f.Copy(d.addr(), anon.addr(), uintptr(d.n), 0)
	if err != nil || n != int64(d.n) {
		c.Errorf("COPY from untouched anonymous memory: %d bytes, %v", n, err)
	}
	if !bytes.Equal(d.bytes(), make([]byte, d.n)) {
		c.Errorf("COPY from untouched anonymous memory did not give zeros")
	}

	// Source registered on a second userfaultfd.
	g := c.newFD(0, 0, 0)
	reg := c.anon(pages)
	_, err = g.Register(reg.addr(), uintptr(reg.n), uffd.ModeMissing)
	c.check(err, "register the source")
	const seed2 = 0x72
	fill := c.anon(pages)
	copy(fill.bytes(), pattern(fill.n, seed2))
	var srcFaults atomic.Int32
	c.serve(g, 1, func(_ context.Context, m uffd.Msg) error {
		srcFaults.Add(1)
		off := uintptr(m.Address) - reg.addr()
		_, err := g.Copy(uintptr(m.Address), fill.addr()+off, uintptr(pageSize), 0)
		if uffd.IsExist(err) {
			return nil
		}
		return err
	})
	d = dst.sub(2*pages, pages)
	n, err = f.Copy(d.addr(), reg.addr(), uintptr(d.n), 0)
	if err != nil || n != int64(d.n) {
		c.Errorf("COPY from a userfaultfd-registered source: %d bytes, %v", n, err)
	}
	if nf := srcFaults.Load(); nf < pages {
		c.Errorf("the COPY from a registered source raised %d faults on it, want at least %d (one per page)", nf, pages)
	}
	for p := 0; p < pages; p++ {
		if !bytes.Equal(d.page(p), fill.page(p)) {
			c.Errorf("page %d copied from a registered source holds %s, want page %d", p, describePage(d.page(p), seed2), p)
		}
	}

	// Unmapped source.
	d = dst.sub(3*pages, pages)
	gone := c.hole(pages)
	n, err = f.Copy(d.addr(), gone.addr(), uintptr(d.n), 0)
	c.wantErrno("COPY from an unmapped source", err, unix.EFAULT)
	if n != 0 {
		c.Errorf("COPY from an unmapped source reported %d bytes copied", n)
	}
	for i, p := range c.present(d) {
		if p {
			c.Errorf("page %d mapped by a COPY from an unmapped source", i)
		}
	}

	// Already mapped destination.
	before := append([]byte(nil), dst.page(0)...)
	n, err = f.Copy(dst.pageAddr(0), fill.addr(), uintptr(pageSize), 0)
	c.wantErrno("COPY onto a mapped page", err, unix.EEXIST)
	if n != 0 {
		c.Errorf("COPY onto a mapped page reported %d bytes copied", n)
	}
	_, err = f.Zeropage(dst.pageAddr(1), uintptr(pageSize), 0)
	c.wantErrno("ZEROPAGE onto a mapped page", err, unix.EEXIST)
	if !bytes.Equal(dst.page(0), before) {
		c.Errorf("a refused COPY changed the mapped page: now %s", describePage(dst.page(0), seed))
	}
	c.Metric("source_faults", float64(srcFaults.Load()))
}

// reversedFileMap maps pages of the file fd into consecutive pages of
// address space, page i showing file page pages-1-i, each its own VMA
// (non-contiguous file offsets never merge). A fault on one of them maps
// no neighbour by fault-around, which works within a VMA.
func (c *tcase) reversedFileMap(fd, pages int) region {
	r := c.mmap(pages, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1)
	for i := 0; i < pages; i++ {
		_, err := unix.MmapPtr(fd, int64((pages-1-i)*pageSize), unsafe.Add(r.p, i*pageSize), uintptr(pageSize),
			unix.PROT_READ, unix.MAP_SHARED|unix.MAP_FIXED)
		c.check(err, "map file page %d at slot %d", pages-1-i, i)
	}
	return r
}
