package main

import (
	"bytes"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// move checks UFFDIO_MOVE (move_pages, mm/userfaultfd.c), which moves
// anonymous pages into a registered range instead of copying them:
//   - the data arrives, in the very same page frames (pagemap PFNs), and
//     the source becomes a hole (not mapped; reads as zeros);
//   - onto a mapped destination page: EEXIST, both sides unchanged;
//   - from a hole: ENOENT, unless ALLOW_SRC_HOLES, which skips holes and
//     moves the pages that are there;
//   - into memory not registered on the descriptor, or with an unknown
//     mode bit: EINVAL;
//   - a MOVE resolves a fault: the waiter sees the moved data.
func move(c *tcase) {
	const pages, seed = 4, 0x81
	ps := uintptr(pageSize)
	f := c.newFD(0, uffd.FeatureMove, 0)
	dst := c.anon(4 * pages)
	_, err := f.Register(dst.addr(), uintptr(dst.n), uffd.ModeMissing)
	c.check(err, "register")

	src := c.anon(pages)
	data := pattern(src.n, seed)
	copy(src.bytes(), data)
	before := c.pm(src)
	d := dst.sub(0, pages)
	n, err := f.Move(d.addr(), src.addr(), uintptr(d.n), 0)
	if err != nil || n != int64(d.n) {
		c.Fatalf("MOVE %d pages: %d bytes, %v", pages, n, err)
	}
	after := c.pm(d)
	for p := 0; p < pages; p++ {
		if !bytes.Equal(d.page(p), data[p*pageSize:(p+1)*pageSize]) {
			c.Errorf("moved page %d holds %s, want page %d", p, describePage(d.page(p), seed), p)
		}
		if pfn := before[p] & pmPFNMask; pfn != 0 && after[p]&pmPFNMask != pfn {
			c.Errorf("moved page %d is in frame %#x, the source was in %#x: copied, not moved", p, after[p]&pmPFNMask, pfn)
		}
	}
	for i, p := range c.present(src) {
		if p {
			c.Errorf("source page %d still mapped after MOVE; want a hole", i)
		}
	}
	if !bytes.Equal(src.bytes(), make([]byte, src.n)) {
		c.Errorf("source reads non-zero data after MOVE; want a hole")
	}

	// Mapped destination: EEXIST, nothing changes.
	one := c.anon(1)
	copy(one.bytes(), pattern(pageSize, 0x82))
	_, err = f.Move(d.addr(), one.addr(), ps, 0)
	c.wantErrno("MOVE onto a mapped page", err, unix.EEXIST)
	if !bytes.Equal(d.page(0), data[:pageSize]) || !bytes.Equal(one.bytes(), pattern(pageSize, 0x82)) {
		c.Errorf("a refused MOVE changed the destination or the source")
	}

	// Holes.
	holes := c.anon(2) // never touched
	d = dst.sub(pages, 2)
	_, err = f.Move(d.addr(), holes.addr(), uintptr(d.n), 0)
	c.wantErrno("MOVE from a hole", err, unix.ENOENT)
	n, err = f.Move(d.addr(), holes.addr(), uintptr(d.n), uffd.MoveModeAllowSrcHoles)
	if err != nil || n != int64(d.n) {
		c.Errorf("MOVE from holes with ALLOW_SRC_HOLES: %d bytes, %v; want %d, success", n, err, d.n)
	}
	for i, p := range c.present(d) {
		if p {
			c.Errorf("destination page %d mapped by a MOVE of a hole", i)
		}
	}
	mixed := c.anon(2)
	copy(mixed.page(1), pattern(pageSize, 0x83)) // page 0 stays a hole
	d = dst.sub(pages+2, 2)
	n, err = f.Move(d.addr(), mixed.addr(), uintptr(d.n), uffd.MoveModeAllowSrcHoles)
	if err != nil || n != int64(d.n) {
		c.Errorf("MOVE of a hole and a page with ALLOW_SRC_HOLES: %d bytes, %v", n, err)
	}
	if p := c.present(d); p[0] || !p[1] {
		c.Errorf("after moving [hole, page]: destination mapped=%v, want [false true]", p)
	} else if !bytes.Equal(d.page(1), pattern(pageSize, 0x83)) {
		c.Errorf("page moved after a hole holds %s", describePage(d.page(1), 0x83))
	}

	// Refusals.
	plain := c.anon(1)
	_, err = f.Move(plain.addr(), one.addr(), ps, 0)
	c.wantErrno("MOVE into unregistered memory", err, unix.EINVAL)
	_, err = f.Move(dst.pageAddr(3*pages), one.addr(), ps, 1<<5)
	c.wantErrno("MOVE with an unknown mode bit", err, unix.EINVAL)

	// MOVE as the resolution of a fault.
	target := dst.pageAddr(3 * pages)
	var got atomic.Uint32
	rd := c.start("reader of a missing page", func() error {
		got.Store(atomic.LoadUint32(dst.word(3 * pages * pageSize)))
		return nil
	})
	m := c.read(f, "the reader's fault")
	c.checkFault(m, target, 0, "read of a missing page")
	_, err = f.Move(target, one.addr(), ps, 0)
	c.check(err, "MOVE to resolve the fault")
	c.await(rd, "its page was moved in")
	if want := patternWord(0x82, 0); got.Load() != want {
		c.Errorf("the reader saw %#x, want the moved page's first word %#x", got.Load(), want)
	}
}
