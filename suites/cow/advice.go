package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/gup"
)

// pinAdvisedFork: a long-term R/W pin on an area that madvise() keeps
// out of the child. fork() must not copy its pages at all, pinned or not
// (no early copy: cow_fork_pinned_copy stays put), and the parent keeps
// exclusive, pinned pages that see its later writes:
//   - MADV_DONTFORK: the child has no mapping there (/proc/<child>/maps);
//   - MADV_WIPEONFORK: the child has the mapping, empty: it reads zeros
//     and its own writes stay its own.
func pinAdvisedFork(advice int) func(*tcase) {
	return func(c *tcase) {
		c.gupDev()
		r := c.region(memPage)
		name := adviceName(advice)
		c.mustf(unix.Madvise(r.area, advice), "madvise(%s)", name)
		c.pin(r.area, gup.FlagWrite)
		f := c.newForker()
		s := f.script()
		s.wait(f.childIn())
		if advice == unix.MADV_WIPEONFORK {
			s.zero(r.area, "a MADV_WIPEONFORK area must be empty in the child")
			s.fill(r.area, tagChild, 0)
		}
		s.notify(f.childOut())
		s.wait(f.childIn())
		if advice == unix.MADV_WIPEONFORK {
			s.check(r.area, tagChild, 0, "the parent's write leaked into the child's wiped area")
		}
		before := c.vmstat()
		ch := c.fork(f, s)
		c.expectEarlyCopies(before, c.vmstat(), 0, 0)
		c.expectExclusive(r.area, true, fmt.Sprintf("after fork (a %s area is not shared with the child)", name))
		if advice == unix.MADV_DONTFORK {
			if mapped, err := mapsCover(ch.pid, addrOf(r.area)); err != nil {
				c.Errorf("%v", err)
			} else if mapped {
				c.Errorf("the child has a mapping at %#x, which the parent marked MADV_DONTFORK", addrOf(r.area))
			}
		}
		c.release(ch)
		c.await(ch)
		if m := mismatch(r.area, tagPre, 0); m != "" {
			c.Errorf("the child's write leaked into the parent: %s", m)
		}
		c.parentWrite(r.area, false)
		c.release(ch)
		c.finish(ch)
		if m := mismatch(c.pinRead(len(r.area)), tagParent, 0); m != "" {
			c.Errorf("the pinned pages are no longer the pages the parent sees; through the pin: %s", m)
		}
	}
}

func adviceName(advice int) string {
	if advice == unix.MADV_DONTFORK {
		return "MADV_DONTFORK"
	}
	return "MADV_WIPEONFORK"
}

// mapsCover reports whether pid has a mapping containing addr.
func mapsCover(pid int, addr uintptr) (bool, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && uint64(addr) >= a && uint64(addr) < b {
			return true, nil
		}
	}
	return false, nil
}
