// Command cow checks that pages pinned for DMA stay the pages the
// process sees across fork(), and the copy-on-write rules around them
// (see suite.yaml and the COW-of-pinned-pages design thread this
// suite follows):
//
//   - cow-*: plain COW after fork, both write orders, with and without
//     the mprotect optimisation; small pages, PMD- and PTE-mapped THP.
//   - pin-rw-*: a long-term R/W pin (gup_test, GUP slow or fast) before
//     fork: fork must copy the pinned folio for the child at once.
//   - unpin-way-back-*: after many pin/unpin cycles the pages are plain
//     again: a fork shares them, and they are freed when unmapped.
//   - pin-rw-{dontfork,wipeonfork}-page: pinned areas fork keeps out of
//     the child: no copy at all, the child has no mapping / an empty one.
//   - pin-ro-*: a long-term R/O pin must keep seeing later writes of a
//     page that is shared, was shared, or is exclusive but mapped R/O.
//   - vmsplice-*: vmsplice()d (referenced, not pinned) pages and COW,
//     including the CVE-2020-29374 shape.
//   - iouring-*: io_uring fixed buffers across fork and mprotect.
//   - pin-fork-race-gup-fast: GUP-fast pinning racing with fork; -thp:
//     the same over a PTE-mapped THP, whose batched fork opens a window
//     wide enough to hit at CI durations.
//   - fork-tearing-*: a child of a multithreaded parent must get one
//     snapshot of pages that are being written (fails on stock 6.12.117
//     for pinned pages; fixed by patches/cow).
//
// Every test checks the FOLL_PIN accounting in /proc/vmstat balances
// (pin-leak oracle). With patches/cow the kernel also counts early
// copies (cow_fork_pinned_copy/_split) and shows HasPinned in
// /proc/<pid>/status; the tests then assert them exactly. When the
// kernel command line says the patch set is not applied they log that
// they could not; when it says it is, a missing counter or line fails
// them. Skips are earned the same way (verdict.go): no THP, gup_test or
// io_uring is a skip only on a kernel configured without them.
// gup_test keeps one pin set system-wide, so the suite keeps one
// descriptor and runs its tests one at a time.
package main

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/suite"
)

func main() {
	l := &lazyEnv{}
	suite.Main("cow", tests(l)...)
}

// tests is the suite's table, in run order.
func tests(l *lazyEnv) []suite.Test {
	var ts []suite.Test
	add := func(name string, body func(*tcase)) {
		ts = append(ts, suite.Test{Name: name, Run: run(l, body)})
	}
	add("has-pinned-status", hasPinnedStatus)
	for _, k := range []memKind{memPage, memTHP, memTHPPTE} {
		for _, o := range []order{parentFirst, childFirst} {
			add(fmt.Sprintf("cow-%s-%s", k, o), cowBasic(k, o, false))
			add(fmt.Sprintf("cow-%s-%s-mprotect", k, o), cowBasic(k, o, true))
		}
	}
	for _, k := range []memKind{memPage, memTHP, memTHPPTE, memTHPHole} {
		for _, fast := range []bool{false, true} {
			for _, o := range []order{parentFirst, childFirst} {
				add(fmt.Sprintf("pin-rw-%s-%s-%s", gupName(fast), k, o), pinRW(k, fast, o, false))
			}
		}
	}
	for _, k := range []memKind{memPage, memTHP} {
		add(fmt.Sprintf("pin-rw-gup-%s-parent-first-mprotect", k), pinRW(k, false, parentFirst, true))
	}
	for _, k := range []memKind{memPage, memTHP} {
		add(fmt.Sprintf("unpin-way-back-%s", k), unpinWayBack(k))
	}
	add("pin-rw-dontfork-page", pinAdvisedFork(unix.MADV_DONTFORK))
	add("pin-rw-wipeonfork-page", pinAdvisedFork(unix.MADV_WIPEONFORK))
	for _, k := range []memKind{memPage, memTHP} {
		for _, fast := range []bool{false, true} {
			for _, m := range []roMode{roShared, roPrevShared, roExclusive} {
				add(fmt.Sprintf("pin-ro-%s-%s-%s", gupName(fast), k, m), roPin(k, fast, m))
			}
		}
	}
	for _, k := range []memKind{memPage, memTHP, memTHPPTE} {
		add(fmt.Sprintf("vmsplice-child-unmap-%s", k), vmspliceChild(k, false))
		add(fmt.Sprintf("vmsplice-child-unmap-%s-mprotect", k), vmspliceChild(k, true))
	}
	for _, k := range []memKind{memPage, memTHP} {
		add(fmt.Sprintf("vmsplice-before-fork-unmap-parent-%s", k), vmspliceParent(k, true))
		add(fmt.Sprintf("vmsplice-after-fork-unmap-parent-%s", k), vmspliceParent(k, false))
	}
	for _, k := range []memKind{memPage, memTHP, memTHPPTE} {
		add(fmt.Sprintf("iouring-fork-%s", k), iouringFork(k))
	}
	for _, k := range []memKind{memPage, memTHP} {
		add(fmt.Sprintf("iouring-ro-%s", k), iouringRO(k))
	}
	add("pin-fork-race-gup-fast", pinForkRace)
	add("pin-fork-race-gup-fast-thp", pinForkRaceTHP)
	add("fork-tearing-unpinned", forkTearing(false))
	add("fork-tearing-pinned", forkTearing(true))
	return ts
}

func gupName(fast bool) string {
	if fast {
		return "gup-fast"
	}
	return "gup"
}
