package main

import (
	"github.com/kharness/kharness/suites/internal/gup"
	"golang.org/x/sys/unix"
)

// cowBasic: fork without any pin. Right after fork the area must be
// shared (pagemap: not exclusive) and nothing copied early; afterwards
// each side sees only its own writes, with or without the mprotect
// optimisation (cow.c "Basic COW after fork()" [with mprotect()]).
func cowBasic(kind memKind, ord order, mprot bool) func(*tcase) {
	return func(c *tcase) {
		r := c.region(kind)
		before := c.vmstat()
		c.forkWrite(r.area, ord, mprot, func(*child) {
			c.expectEarlyCopies(before, c.vmstat(), 0, 0)
			c.expectExclusive(r.area, false, "after fork, before any write (the pages must be shared copy-on-write)")
		})
		c.expectExclusive(r.area, true, "after both wrote")
	}
}

// pinRW: a long-term R/W pin (gup_test, slow or fast GUP) taken before
// fork. fork must copy the pinned pages for the child right away (the
// whole folio for a THP, after splitting its PMD) instead of sharing
// them: otherwise the next write fault would move the parent away from
// the page the "device" sees. Then parent and child write in both
// orders; the pin must see the parent's data (Peter Xu's 2020 scenario,
// the reason for early COW).
func pinRW(kind memKind, fast bool, ord order, mprot bool) func(*tcase) {
	return func(c *tcase) {
		c.gupDev()
		r := c.region(kind)
		off, size := r.pinSpan()
		flags := gup.FlagWrite
		if fast {
			flags |= gup.FlagFast
		}
		c.pin(r.area[off:off+size], flags)
		c.expectHasPinned(unix.Getpid(), 1, "the parent after pinning")
		before := c.vmstat()
		c.forkWrite(r.area, ord, mprot, func(ch *child) {
			c.expectEarlyCopies(before, c.vmstat(), pages(r.area), splits(kind))
			c.expectExclusive(r.area, true, "right after fork (fork must not share a pinned folio with the child)")
			c.expectHasPinned(ch.pid, 0, "the new child (MMF_HAS_PINNED is not inherited)")
		})
		if m := mismatch(c.pinRead(size), tagParent, off/4); m != "" {
			c.Errorf("the pinned pages are no longer the pages the parent sees; through the pin: %s", m)
		}
	}
}

// roMode is the state of the area when a R/O pin is taken.
type roMode int

const (
	roShared     roMode = iota // shared with a live child
	roPrevShared               // was shared; the child has exited
	roExclusive                // exclusive, mapped R/O
)

func (m roMode) String() string {
	return [...]string{"shared", "prev-shared", "ro-exclusive"}[m]
}

// roPin: a long-term R/O pin must keep seeing the process's later
// writes, whatever the state of the pages when it was taken (cow.c
// "R/O GUP[-fast] pin on R/O-mapped shared / previously-shared /
// exclusive page ... Longterm R/O pin is reliable"). A R/O pin of a page
// that is or was shared must unshare it first (gup_must_unshare(),
// FAULT_FLAG_UNSHARE); of an exclusive page, it must not copy it.
func roPin(kind memKind, fast bool, mode roMode) func(*tcase) {
	return func(c *tcase) {
		c.gupDev()
		r := c.region(kind)
		area := r.area
		var ch *child
		if mode == roExclusive {
			c.mustf(unix.Mprotect(area, unix.PROT_READ), "mprotect(R)")
		} else {
			f := c.newForker()
			s := f.script()
			s.notify(f.childOut())
			s.wait(f.childIn())
			if mode == roShared {
				s.check(area, tagPre, 0, "the parent's write after its R/O pin leaked into the child")
			}
			before := c.vmstat()
			ch = c.fork(f, s)
			c.expectEarlyCopies(before, c.vmstat(), 0, 0)
			c.await(ch)
			c.expectExclusive(area, false, "before the pin (shared with the child)")
			if mode == roPrevShared {
				c.release(ch)
				c.finish(ch)
			}
		}
		frames, err := pfns(area)
		c.mustf(err, "pagemap")
		var flags uint32
		if fast {
			flags = gup.FlagFast
		}
		c.pin(area, flags)
		switch mode {
		case roExclusive:
			after, err := pfns(area)
			c.mustf(err, "pagemap")
			for i := range after {
				if after[i] != frames[i] {
					c.Errorf("the R/O pin replaced page %d of an exclusive R/O mapping (pfn %#x -> %#x): exclusive pages need no unsharing", i, frames[i], after[i])
					break
				}
			}
			c.mustf(unix.Mprotect(area, unix.PROT_READ|unix.PROT_WRITE), "mprotect(RW)")
		case roShared:
			c.expectExclusive(area, true, "after the R/O pin (it must unshare the pages it pins)")
		}
		fill(area, tagParent, 0)
		if m := mismatch(c.pinRead(len(area)), tagParent, 0); m != "" {
			c.Errorf("the R/O pin is unreliable: it does not see the parent's later write: %s", m)
		}
		if mode == roShared {
			c.release(ch)
			c.finish(ch)
		}
	}
}
