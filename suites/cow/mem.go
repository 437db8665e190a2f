package main

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/gup"
	"github.com/kharness/kharness/suites/sysinfo"
)

// memKind is how the test area is backed.
type memKind int

const (
	memPage    memKind = iota // small pages (MADV_NOHUGEPAGE)
	memTHP                    // one PMD-mapped THP
	memTHPPTE                 // one THP mapped by PTEs (a partial mprotect split the PMD)
	memTHPHole                // one PTE-mapped THP with its last subpage zapped (MADV_DONTNEED)
)

func (k memKind) String() string {
	return [...]string{"page", "thp", "thp-pte", "thp-hole"}[k]
}

// smallPages is the size of a small-page test area.
const smallPages = 4

// region is a test area and the mapping around it.
type region struct {
	kind    memKind
	mapping []byte // the whole mmap, unmapped at the end of the test
	area    []byte // the pages under test, filled with tagPre
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// pages is the number of pages in b.
func pages(b []byte) int { return len(b) / pageSize }

// region maps an area of the given kind and fills it with tagPre. A
// kernel that gives no THP skips the test only when it is built without
// THP (thpVerdict); configured for THP, it fails.
func (c *tcase) region(kind memKind) *region {
	if kind == memPage {
		return c.regionPages(smallPages)
	}
	thp := c.env.thpSize
	if thp == 0 {
		thpVerdict(c.env.thpWhy, c.env.cfg, c.env.cfgErr).Apply(c)
	}
	m, err := unix.Mmap(-1, 0, 2*thp, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	c.mustf(err, "mmap")
	r := &region{kind: kind, mapping: m}
	c.later(r.unmap)
	off := int((uintptr(thp) - addrOf(m)%uintptr(thp)) % uintptr(thp))
	r.area = m[off : off+thp]
	c.mustf(unix.Madvise(r.area, unix.MADV_HUGEPAGE), "madvise(HUGEPAGE)")
	r.area[0] = 1 // one fault: a THP or a small page
	if err := c.checkTHP(r.area, true); err != nil {
		thpVerdict(fmt.Sprintf("a MADV_HUGEPAGE fault of a %d KiB aligned area gave no PMD-mapped THP: %v", thp>>10, err), c.env.cfg, c.env.cfgErr).Apply(c)
	}
	fill(r.area, tagPre, 0)
	switch kind {
	case memTHPPTE:
		// A partial mprotect splits the PMD; mapping the page R/W
		// again leaves a PTE-mapped THP.
		sub := r.area[pageSize : 2*pageSize]
		c.mustf(unix.Mprotect(sub, unix.PROT_READ), "mprotect(R) of one subpage")
		c.mustf(unix.Mprotect(sub, unix.PROT_READ|unix.PROT_WRITE), "mprotect(RW) of one subpage")
		c.mustf(c.checkTHP(r.area, false), "PTE-mapped THP after a partial mprotect")
	case memTHPHole:
		last := r.area[thp-pageSize:]
		c.mustf(unix.Madvise(last, unix.MADV_DONTNEED), "madvise(DONTNEED) of the last subpage")
		r.area = r.area[:thp-pageSize]
		c.mustf(c.checkTHP(r.area, false), "PTE-mapped THP after zapping a subpage")
	}
	return r
}

// regionPages maps an area of n small pages filled with tagPre.
func (c *tcase) regionPages(n int) *region {
	m, err := unix.Mmap(-1, 0, n*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	c.mustf(err, "mmap")
	r := &region{kind: memPage, mapping: m, area: m}
	c.later(r.unmap)
	// Keep THP faults and khugepaged away, also if the VMA merges with a
	// neighbour into a PMD-sized range.
	c.mustf(unix.Madvise(m, unix.MADV_NOHUGEPAGE), "madvise(NOHUGEPAGE)")
	fill(r.area, tagPre, 0)
	return r
}

// checkTHP checks that b is (part of) one THP, mapped by a PMD or not.
func (c *tcase) checkTHP(b []byte, pmdMapped bool) error {
	frames, err := pfns(b)
	if err != nil {
		return err
	}
	if err := contiguousFolio(frames, c.env.thpSize/pageSize); err != nil {
		return fmt.Errorf("pagemap: %w", err)
	}
	if fl, err := pageFlags(frames[0]); err == nil && fl&kpfTHP == 0 {
		return fmt.Errorf("kpageflags of pfn %#x (%#x) has no THP bit", frames[0], fl)
	}
	kb, err := anonHugeKB(addrOf(b))
	if err != nil {
		return err
	}
	switch {
	case pmdMapped && kb < c.env.thpSize>>10:
		return fmt.Errorf("smaps AnonHugePages %d kB: not PMD-mapped", kb)
	case !pmdMapped && kb != 0:
		return fmt.Errorf("smaps AnonHugePages %d kB: still PMD-mapped", kb)
	}
	return nil
}

// unmap unmaps the region (once; the test may have unmapped it).
func (r *region) unmap() {
	if r.mapping != nil {
		unix.Munmap(r.mapping)
		r.mapping = nil
	}
}

// pinSpan is the part of the area a R/W pin test pins: all of a
// small-page area; four subpages (not the head) of a THP, since one
// pinned subpage makes the whole folio "maybe pinned".
func (r *region) pinSpan() (off, size int) {
	if r.kind == memPage {
		return 0, len(r.area)
	}
	return pageSize, 4 * pageSize
}

// splits is how many PMDs fork must split for a pinned area of kind k.
func splits(k memKind) int {
	if k == memTHP {
		return 1
	}
	return 0
}

// buffer maps scratch memory outside the Go heap (a child may write to
// it, and big buffers should not wait for a GC that is off).
func (c *tcase) buffer(size int) []byte {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	c.mustf(err, "mmap %d-byte buffer", size)
	c.later(func() { unix.Munmap(b) })
	return b
}

// pin pins b with gup_test and unpins it at the end of the test.
func (c *tcase) pin(b []byte, flags uint32) {
	dev := c.gupDev()
	c.mustf(dev.PinStart(addrOf(b), len(b), flags), "pin")
	c.pinned(pages(b))
	c.later(func() {
		if err := dev.PinStop(); err != nil {
			c.Errorf("%v", err)
		}
	})
}

// pinRead returns what the pins see, n bytes.
func (c *tcase) pinRead(n int) []byte {
	buf := c.buffer(n)
	c.mustf(c.gupDev().PinRead(buf), "read through the pins")
	return buf
}

// gupDev returns the suite's gup_test descriptor; without one the test
// skips (a kernel built without CONFIG_GUP_TEST) or fails.
func (c *tcase) gupDev() *gup.Dev {
	if c.env.gup == nil {
		if gupMissing(c.env.gupErr) {
			gupTestVerdict(c.env.gupErr, sysinfo.Mounted("/sys/kernel/debug", "debugfs"), c.env.cfg, c.env.cfgErr).Apply(c)
		}
		c.Fatalf("%v", c.env.gupErr)
	}
	return c.env.gup
}

// pipe makes a pipe that can hold size bytes if the kernel allows
// (root may exceed pipe-max-size); both ends close at the end.
func (c *tcase) pipe(size int) [2]int {
	var p [2]int
	c.mustf(unix.Pipe2(p[:], unix.O_CLOEXEC), "pipe")
	c.later(func() { unix.Close(p[0]); unix.Close(p[1]) })
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
		c.Logf("F_SETPIPE_SZ %d: %v (the pipe takes what fits)", size, err)
	}
	return p
}

// tmpfile opens an unlinked file on tmpfs.
func (c *tcase) tmpfile() int {
	fd, err := unix.Open("/tmp", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	c.mustf(err, "O_TMPFILE in /tmp")
	c.later(func() { unix.Close(fd) })
	return fd
}
