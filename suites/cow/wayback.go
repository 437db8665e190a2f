package main

import (
	"fmt"
	"time"

	"github.com/kharness/kharness/suites/internal/gup"
)

// wayBackCycles is how many pin/unpin cycles the way-back test runs on
// the same pages: more than GUP_PIN_COUNTING_BIAS (1024), so that one
// reference an unpin leaves behind per cycle adds up to a refcount that
// looks pinned (folio_maybe_dma_pinned() of a small folio is refcount >=
// 1024) by the time the test forks.
const wayBackCycles = 1100

// unpinWayBack: the way back from pinned. The same pages are pinned and
// unpinned (gup_test, R/W, alternating GUP and GUP-fast) wayBackCycles
// times; after the last unpin they must be plain anonymous pages again:
//
//   - not "maybe pinned": a fork shares them copy-on-write instead of
//     copying them early (cow_fork_pinned_copy and _split do not move,
//     the pagemap shows them shared while the child lives), and each
//     side then sees only its own writes;
//   - freed when unmapped: once the last mapping goes, the PFNs must not
//     be left as anonymous pages nobody maps (/proc/kpageflags ANON with
//     a zero /proc/kpagecount): a reference an unpin forgot keeps them
//     forever.
func unpinWayBack(kind memKind) func(*tcase) {
	return func(c *tcase) {
		dev := c.gupDev()
		// Fault, pin, unmap and free on one CPU: a freshly faulted page
		// sits in that CPU's LRU batch, which munmap drains.
		c.onCPU(0)
		r := c.region(kind)
		off, size := r.pinSpan()
		span := r.area[off : off+size]
		frames, err := pfns(r.area)
		c.mustf(err, "pagemap before pinning")
		for i := 0; i < wayBackCycles; i++ {
			flags := gup.FlagWrite
			if i%2 == 1 {
				flags |= gup.FlagFast
			}
			c.mustf(dev.PinStart(addrOf(span), len(span), flags), "pin, cycle %d", i)
			c.mustf(dev.PinStop(), "unpin, cycle %d", i)
			c.Progress(1)
		}
		c.pinned(wayBackCycles * pages(span))
		now, err := pfns(r.area)
		c.mustf(err, "pagemap after the last unpin")
		for i := range frames {
			if now[i] != frames[i] {
				c.Fatalf("page %d moved from pfn %#x to %#x while pinned and unpinned: an exclusive page must stay put", i, frames[i], now[i])
			}
		}
		before := c.vmstat()
		c.forkWrite(r.area, parentFirst, false, func(*child) {
			c.expectEarlyCopies(before, c.vmstat(), 0, 0)
			c.expectExclusive(r.area, false, fmt.Sprintf("after %d pin/unpin cycles and a fork (unpinned pages must be shared copy-on-write again)", wayBackCycles))
		})
		r.unmap()
		if leaked := c.awaitFreed(frames); len(leaked) > 0 {
			c.Errorf("%d of %d pages still allocated after their last unpin and unmap (first: pfn %#x: kpageflags ANON, kpagecount 0): an unpin leaked a page reference",
				len(leaked), len(frames), leaked[0])
		}
	}
}

// kpfAnon, kpfBuddy: /proc/kpageflags bits (KPF_ANON, KPF_BUDDY).
const (
	kpfAnon  = 1 << 12
	kpfBuddy = 1 << 10
)

// awaitFreed returns the PFNs of frames that, after a short grace period,
// still hold an anonymous page that nothing maps: a page whose last
// mapping is gone is freed (its anon mapping cleared) unless someone
// still holds a reference. A reused PFN is mapped again or flagged
// otherwise, so it does not count.
func (c *tcase) awaitFreed(frames []uint64) []uint64 {
	var leaked []uint64
	for deadline := time.Now().Add(c.Params().Scaled(time.Second)); ; time.Sleep(10 * time.Millisecond) {
		leaked = leaked[:0]
		for _, pfn := range frames {
			if pfn == 0 {
				continue
			}
			fl, err := pageFlags(pfn)
			if err != nil {
				c.Errorf("%v", err)
				return nil
			}
			if fl&kpfAnon == 0 || fl&kpfBuddy != 0 {
				continue
			}
			n, err := pageCount(pfn)
			if err != nil {
				c.Errorf("%v", err)
				return nil
			}
			if n == 0 {
				leaked = append(leaked, pfn)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
	}
}
