package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = os.Getpagesize()

// region is a mapping outside the Go heap: the only memory a test may
// register with userfaultfd, move, remap or hand to a forked child, since
// the runtime never touches it. It is addressed by pointer rather than
// through x/sys's Mmap bookkeeping because mremap and UFFDIO_MOVE change
// what is mapped where.
type region struct {
	p unsafe.Pointer
	n int
}

func (r region) addr() uintptr { return uintptr(r.p) }

// bytes is the whole region as a slice.
func (r region) bytes() []byte { return unsafe.Slice((*byte)(r.p), r.n) }

// page returns page i as a slice.
func (r region) page(i int) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(r.p, i*pageSize)), pageSize)
}

// pageAddr is the address of page i.
func (r region) pageAddr(i int) uintptr { return r.addr() + uintptr(i*pageSize) }

// pages is the region's size in pages.
func (r region) pages() int { return r.n / pageSize }

// sub is pages [i, i+n) of the region (not separately unmapped).
func (r region) sub(i, n int) region {
	return region{p: unsafe.Add(r.p, i*pageSize), n: n * pageSize}
}

// word is a pointer to the 32-bit word at byte offset off: faulting loads
// and stores go through sync/atomic on it, plain instructions in Go code
// that the runtime can preempt, never runtime.memmove.
func (r region) word(off int) *uint32 { return (*uint32)(unsafe.Add(r.p, off)) }

func (r region) unmap() error { return unix.MunmapPtr(r.p, uintptr(r.n)) }

// mmap maps pages with prot and flags (fd -1 for anonymous memory); the
// mapping is unmapped at the end of the test.
func (c *tcase) mmap(pages, prot, flags, fd int) region {
	r, err := mmapRegion(pages, prot, flags, fd)
	c.check(err, "mmap %d pages", pages)
	c.mu.Lock()
	c.regions = append(c.regions, r)
	c.mu.Unlock()
	return r
}

func mmapRegion(pages, prot, flags, fd int) (region, error) {
	n := pages * pageSize
	p, err := unix.MmapPtr(fd, 0, nil, uintptr(n), prot, flags)
	if err != nil {
		return region{}, fmt.Errorf("mmap %d bytes: %w", n, err)
	}
	return region{p: p, n: n}, nil
}

// anon maps private anonymous read-write memory.
func (c *tcase) anon(pages int) region {
	return c.mmap(pages, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1)
}

// forget drops a region from the end-of-test unmapping: the test unmapped
// it, or mremap moved it away.
func (c *tcase) forget(r region) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.regions {
		if x == r {
			c.regions = append(c.regions[:i], c.regions[i+1:]...)
			return
		}
	}
}

// hole returns the address of pages of address space that are not mapped
// (mapped and unmapped again; nothing else in the test maps memory
// meanwhile).
func (c *tcase) hole(pages int) region {
	r, err := mmapRegion(pages, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1)
	c.check(err, "reserve address space")
	c.check(r.unmap(), "munmap")
	return r
}

// memfd creates a shmem file holding data and returns its descriptor
// (closed at the end).
func (c *tcase) memfd(name string, data []byte) int {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	c.check(err, "memfd_create")
	c.onClose(func() error { return unix.Close(fd) })
	for off := 0; off < len(data); {
		n, err := unix.Pwrite(fd, data[off:], int64(off))
		c.check(err, "write memfd")
		off += n
	}
	return fd
}

// pattern fills n bytes so that every 32-bit word names its seed, page
// and offset: a page that shows up in the wrong place says where it
// came from.
func pattern(n int, seed uint32) []byte {
	b := make([]byte, n)
	for off := 0; off+4 <= n; off += 4 {
		binary.LittleEndian.PutUint32(b[off:], patternWord(seed, off))
	}
	return b
}

// patternWord is word off/4 of pattern(_, seed). Never zero, so a zero
// page is never mistaken for data.
func patternWord(seed uint32, off int) uint32 {
	pg, w := uint32(off/pageSize), uint32(off%pageSize)/4
	return seed<<24 ^ pg<<12 ^ w | 0x80000000
}

// describePage says which page of pattern(_, seed) a page holds ("page 3
// of seed 0x5a", "zeros", "unknown data"), for failure messages.
func describePage(b []byte, seed uint32) string {
	w := binary.LittleEndian.Uint32(b)
	if w == 0 {
		for _, x := range b {
			if x != 0 {
				return "data starting with zeros"
			}
		}
		return "zeros"
	}
	if w&0x80000000 != 0 && (w>>24)&0x7f == seed&0x7f {
		return fmt.Sprintf("page %d of the pattern", (w>>12)&0xfff)
	}
	return fmt.Sprintf("unknown data (first word %#08x)", w)
}

// Pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent = 1 << 63
	pmUffdWP  = 1 << 57
	pmPFNMask = 1<<55 - 1
)

// pagemap returns the /proc/self/pagemap entries of r's pages.
func pagemap(r region) ([]uint64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := r.pages()
	buf := make([]byte, 8*n)
	if _, err := f.ReadAt(buf, int64(r.addr()/uintptr(pageSize))*8); err != nil {
		return nil, fmt.Errorf("pagemap: %w", err)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(buf[8*i:])
	}
	return out, nil
}

// pm reads r's pagemap entries or ends the test.
func (c *tcase) pm(r region) []uint64 {
	e, err := pagemap(r)
	c.check(err, "read pagemap")
	return e
}

// present lists which pages of r are mapped, without touching them.
func (c *tcase) present(r region) []bool {
	e := c.pm(r)
	out := make([]bool, len(e))
	for i, v := range e {
		out[i] = v&pmPresent != 0
	}
	return out
}

// zap drops r's pages (MADV_DONTNEED): they are missing again.
func zap(r region) error {
	if err := unix.Madvise(r.bytes(), unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("madvise(DONTNEED): %w", err)
	}
	return nil
}

// sink keeps loads done only to fault from being optimised away.
var sink atomic.Uint32
