package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/kharness/kharness/suites/internal/gup"
)

// Threaded-fork snapshot coherence (Jann Horn, 2025, "mm/memory: fix
// memory tearing on threaded fork"). A writer thread keeps counting:
// round r = 1, 2, ... stores r into the first and then the last word of
// each page of the area, page after page. Another thread forks, and the
// child checks its copy.
//
// Pages fork shares are write-protected during fork, so the writer
// faults and waits for the mmap lock: the child sees the memory as it
// was when the writer stopped, one snapshot. Pages fork copies early
// because they may be pinned (copy_present_page) stay writable in the
// parent on 6.12.117: the writer goes on while fork copies them one by
// one (dropping the locks in between to allocate), so the child gets
// pages from different rounds, and a page can be torn by a copy that
// races a round. The fix in patches/cow write-protects and flushes each
// such page before copying it; the writer then stops at its first store
// to a page fork has already copied, so every counter the child sees is
// the last round r or r-1, and within a page first >= last.
//
// The child's check (coherentPages): per page first == last or
// first == last+1, and over all pages max-min <= 1.

// tearPages is the size of the area: enough pages that copying them
// takes much longer than one writer round.
const tearPages = 32

// coherentPages is the child's check (see above); it also leaves the
// smallest and largest counter in the report.
//
//go:nosplit
//go:norace
func coherentPages(r *report, p unsafe.Pointer, n uintptr) bool {
	last := uintptr(pageSize) - 4
	lo, hi := ^uint32(0), uint32(0)
	for i := uintptr(0); i < n; i++ {
		pg := unsafe.Add(p, i*uintptr(pageSize))
		a, b := *(*uint32)(pg), *(*uint32)(unsafe.Add(pg, last))
		lo, hi = min(lo, a, b), max(hi, a, b)
		if a < b || a-b > 1 {
			r.index, r.got, r.want, r.lo, r.hi = i, a, b, lo, hi
			return false
		}
	}
	r.lo, r.hi = lo, hi
	if hi-lo > 1 {
		r.index, r.got, r.want = n, lo, hi
		return false
	}
	return true
}

// writeCounters is the writer thread's loop.
func writeCounters(area []byte, stop *atomic.Bool, rounds *atomic.Uint32) {
	last := pageSize - 4
	for r := uint32(1); !stop.Load(); r++ {
		for p := 0; p < len(area); p += pageSize {
			*(*uint32)(unsafe.Pointer(&area[p])) = r
			*(*uint32)(unsafe.Pointer(&area[p+last])) = r
		}
		rounds.Store(r)
	}
}

// forkTearing runs the writer against a fork loop for a quarter of the
// duration (or until a few torn snapshots), with the area pinned R/W by
// gup_test (every fork copies it early) or not (the control: every fork
// shares it).
func forkTearing(pinned bool) func(*tcase) {
	return func(c *tcase) {
		r := c.regionPages(tearPages)
		area := r.area
		clear(area)
		if pinned {
			c.gupDev()
			c.pin(area, gup.FlagWrite)
		}
		var stop atomic.Bool
		var rounds atomic.Uint32
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			c.onCPU(1)
			writeCounters(area, &stop, &rounds)
		}()
		defer func() { stop.Store(true); wg.Wait() }()
		c.onCPU(0)
		for rounds.Load() == 0 {
			runtime.Gosched()
		}
		f := c.newForker()
		s := f.script()
		s.coherent(area)
		budget := c.Params().Duration / 4
		deadline := time.Now().Add(budget)
		before := c.vmstat()
		forks, tears, moved := 0, 0, 0
		var lastLo uint32
		var first string
		for time.Now().Before(deadline) && tears < 3 {
			ch, err := f.fork(s)
			c.mustf(err, "fork")
			err = ch.finish()
			if forks++; forks > 1 && f.rep.lo > lastLo {
				moved++
			}
			lastLo = f.rep.lo
			if err != nil {
				if tears++; first == "" {
					first = err.Error()
				}
			}
		}
		after := c.vmstat()
		stop.Store(true)
		wg.Wait()
		c.Metric("forks", float64(forks))
		c.Metric("torn_snapshots", float64(tears))
		c.Metric("writer_rounds", float64(rounds.Load()))
		c.Metric("forks_with_writer_progress", float64(moved))
		want := 0
		if pinned {
			want = forks * tearPages
		}
		c.expectEarlyCopies(before, after, want, 0)
		if tears > 0 {
			kind := "shared (unpinned)"
			if pinned {
				kind = "pinned, so copied early,"
			}
			c.Errorf("%d of %d forks gave the child a torn snapshot of %s pages that another thread was writing; first: %s",
				tears, forks, kind, first)
		}
		if moved == 0 {
			c.Errorf("non-vacuity: the writer made no progress between any two of %d forks (%d rounds in all): nothing raced", forks, rounds.Load())
		}
	}
}
