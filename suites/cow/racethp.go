package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/gup"
)

// pinForkRaceTHP is the GUP-fast vs fork race with a window wide enough
// to hit at CI durations. fork() handles a PTE-mapped THP as one batch
// (copy_present_ptes): it checks the folio for pins once, then clears
// PageAnonExclusive and raises the mapcount of all its subpages, then
// write-protects all its PTEs. A GUP-fast R/W pin of the folio's last
// subpages that starts after the check reads PTEs that are still
// writable and pins pages fork is about to share: the window is a few
// hundred atomic operations wide instead of a few instructions. The
// kernel closes it with mm->write_protect_seq (GUP-fast backs off when a
// fork ran during its walk and retries under the mmap lock, where the
// write fault unshares); without that check (mutant cow-gup-fast-no-seq)
// the pin ends on a page shared with the child, CONFIG_DEBUG_VM's
// sanity_check_pinned_pages() trips, and the parent's next write goes to
// a copy the pin never sees.
//
// Every round maps a fresh PTE-mapped THP (a fork leaves the parent's
// PTEs write-protected, and the next write fault would copy the folio
// into small pages), the pinning thread pins and unpins its last
// raceSpan pages over and over, and the forking thread forks once. A
// pin that overlapped a fork (a fork generation counter moved, or was
// odd, around PinStart) is checked: the parent writes each pinned page
// and reads it back through the pin.
func pinForkRaceTHP(c *tcase) {
	dev := c.gupDev()
	if c.env.thpSize == 0 {
		thpVerdict(c.env.thpWhy, c.env.cfg, c.env.cfgErr).Apply(c)
	}
	if len(c.env.cpus) < 2 {
		c.Fatalf("the race needs two CPUs, the guest has %d", len(c.env.cpus))
	}
	budget := c.Params().Duration / 4
	deadline := time.Now().Add(budget)

	var (
		area  []byte        // the round's area, published by next
		next  atomic.Uint64 // the round whose area is ready
		begun atomic.Uint64 // the round the pinner has pinned in
		end   atomic.Uint64 // the round the forker has ended
		left  atomic.Uint64 // the round the pinner has left
		gen   atomic.Uint64 // odd while a fork() runs
		done  atomic.Bool
		pins  atomic.Int64
		raced atomic.Int64
		mu    sync.Mutex
		errs  []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 3 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	// waitFor spins until v reaches round or the test is over.
	waitFor := func(v *atomic.Uint64, round uint64) bool {
		for v.Load() < round {
			if done.Load() {
				return false
			}
		}
		return true
	}
	buf := c.buffer(raceSpan * pageSize)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer done.Store(true)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		c.onCPU(1)
		for round := uint64(1); waitFor(&next, round); round++ {
			span := area[len(area)-raceSpan*pageSize:]
			for first := true; first || end.Load() < round; first = false {
				g0 := gen.Load()
				err := dev.PinStart(addrOf(span), len(span), gup.FlagFast|gup.FlagWrite)
				g1 := gen.Load()
				if err != nil {
					fail("round %d: pin: %v", round, err)
					return
				}
				if first {
					begun.Store(round)
				}
				pins.Add(1)
				if g0&1 == 1 || g0 != g1 {
					raced.Add(1)
					if m := checkThroughPin(dev, span, buf, uint32(round)); m != "" {
						fail("round %d, a pin that raced fork: %s", round, m)
					}
				}
				if err := dev.PinStop(); err != nil {
					fail("round %d: unpin: %v", round, err)
					return
				}
			}
			left.Store(round)
		}
	}()

	c.onCPU(0)
	f := c.newForker()
	s := f.script() // the child just exits
	before := c.vmstat()
	var forks, thpRounds int
	for round := uint64(1); time.Now().Before(deadline) && !done.Load(); round++ {
		m, a, isTHP := c.freshTHPPTE()
		if isTHP {
			thpRounds++
		}
		area = a
		next.Store(round)
		if waitFor(&begun, round) {
			gen.Add(1)
			ch, err := f.fork(s)
			gen.Add(1)
			if err != nil {
				c.Errorf("%v", err)
				done.Store(true)
			} else {
				forks++
				if err := ch.finish(); err != nil {
					c.Errorf("%v", err)
				}
			}
		}
		end.Store(round)
		waitFor(&left, round)
		if done.Load() {
			// The pinner may still be in the round; the test's end
			// unmaps what is left.
			c.later(func() { unix.Munmap(m) })
			break
		}
		unix.Munmap(m)
	}
	done.Store(true)
	wg.Wait()
	after := c.vmstat()
	c.pinned(int(pins.Load()) * raceSpan)
	c.Metric("forks", float64(forks))
	c.Metric("thp_rounds", float64(thpRounds))
	c.Metric("pins", float64(pins.Load()))
	c.Metric("pins_racing_fork", float64(raced.Load()))
	for _, e := range errs {
		c.Errorf("the pin did not see the parent's write: %s", e)
	}
	if forks == 0 || thpRounds*2 < forks {
		c.Errorf("non-vacuity: %d of %d rounds had a PTE-mapped THP", thpRounds, forks)
	}
	if raced.Load() == 0 {
		c.Errorf("non-vacuity: none of %d pins overlapped one of %d forks", pins.Load(), forks)
	}
	if d, ok := before.Delta(after, vmEarlyCopy); ok {
		// Informational: how often fork found the folio pinned.
		c.Metric("early_copies", float64(d))
	}
}

// raceSpan is how many of the THP's last subpages the race pins.
const raceSpan = 16

// freshTHPPTE maps an aligned THP-sized area, faults it in as one THP
// and splits the PMD mapping with a partial mprotect: a PTE-mapped THP.
// It returns the mapping (to unmap), the area and whether the area is
// one THP (the allocation may fall back to small pages when memory is
// fragmented; the caller counts).
func (c *tcase) freshTHPPTE() (mapping, area []byte, isTHP bool) {
	thp := c.env.thpSize
	m, err := unix.Mmap(-1, 0, 2*thp, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	c.mustf(err, "mmap")
	off := int((uintptr(thp) - addrOf(m)%uintptr(thp)) % uintptr(thp))
	a := m[off : off+thp]
	c.mustf(unix.Madvise(a, unix.MADV_HUGEPAGE), "madvise(HUGEPAGE)")
	a[0] = 1
	sub := a[pageSize : 2*pageSize]
	c.mustf(unix.Mprotect(sub, unix.PROT_READ), "mprotect(R) of one subpage")
	c.mustf(unix.Mprotect(sub, unix.PROT_READ|unix.PROT_WRITE), "mprotect(RW) of one subpage")
	frames, err := pfns(a)
	isTHP = err == nil && contiguousFolio(frames, thp/pageSize) == nil
	return m, a, isTHP
}

// checkThroughPin writes a tagged word into each page of span (the
// parent's write: a page fork shared is copied by the write fault) and
// reads the pinned pages back: each must hold it.
func checkThroughPin(dev *gup.Dev, span, buf []byte, round uint32) string {
	tag := 0x40000000 | round
	for p := 0; p < len(span); p += pageSize {
		*(*uint32)(unsafe.Pointer(&span[p])) = patWord(tag, uintptr(p/4))
	}
	if err := dev.PinRead(buf); err != nil {
		return fmt.Sprintf("read through the pin: %v", err)
	}
	for p := 0; p < len(span); p += pageSize {
		want := patWord(tag, uintptr(p/4))
		if got := *(*uint32)(unsafe.Pointer(&buf[p])); got != want {
			return fmt.Sprintf("pinned page %d of the THP's last %d holds %#08x, the parent wrote %#08x: the pin is on a page fork shared with the child",
				p/pageSize, len(span)/pageSize, got, want)
		}
	}
	return ""
}
