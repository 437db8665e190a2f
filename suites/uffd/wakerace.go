package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// Populator operations of wakePopulateRace, one per iteration in turn.
const (
	popCopy         = iota // UFFDIO_COPY (wakes)
	popZeropage            // UFFDIO_ZEROPAGE (wakes)
	popCopyDontwake        // UFFDIO_COPY_MODE_DONTWAKE, then UFFDIO_WAKE
	popOps
)

var popNames = [popOps]string{"COPY", "ZEROPAGE", "COPY(DONTWAKE)+WAKE"}

// wakePopulateRace hunts missed wake-ups: a fault whose page is
// populated by someone else between the fault and its wait. One thread
// (the faulter) takes a kernel-mode fault on a missing page of a
// MISSING registration (pread() into it, or pwrite() from it for the
// ZEROPAGE iterations: a system call the Go runtime never interrupts,
// so a waiter only runs again when the kernel wakes it) while another
// (the populator) maps that very page at the same moment, by COPY,
// ZEROPAGE or COPY with DONTWAKE followed by WAKE. A handler resolves
// the fault messages it reads like missing-storm's: an EEXIST means the
// page is mapped and, as fs/userfaultfd.c promises (userfaultfd_must_wait
// rechecks the page table after queueing the fault "to avoid userland
// having to UFFDIO_WAKE any userfault that has already been resolved"),
// nobody is left asleep on it, so it does not wake.
//
// The two start each iteration from a spin barrier with a relative
// delay that a controller keeps where the two collide: a faulter that
// found the page mapped (no page fault counted) was late, one whose
// fault the handler resolved first (the populator got EEXIST) was early;
// a fault while the populator's operation succeeded is a contested
// iteration. A faulter still asleep a (scaled) while after its page was
// mapped is a missed wake-up: the report names its thread, the address
// and what populated it; then the test wakes it.
func wakePopulateRace(c *tcase) {
	budget := c.Params().Duration / 2
	deadline := time.Now().Add(budget)
	stuckAfter := c.Params().Scaled(2 * time.Second)
	// A multiple of popOps: each page gets the same operation in every
	// round, so that a fault message a handler read in one round and
	// resolves after the area was zapped for the next (a late handler)
	// maps the page with the content the next round expects.
	const pages = 63
	const seed = 0x77

	old := runtime.GOMAXPROCS(4) // the spinning pair never starves the handler
	defer runtime.GOMAXPROCS(old)

	f := c.newFD(0, 0, 0)
	data := pattern(pages*pageSize, seed)
	fdSrc := c.memfd("wake-race-src", data)
	fdSink := c.memfd("wake-race-sink", make([]byte, pageSize))
	area := c.anon(pages)
	_, err := f.Register(area.addr(), uintptr(area.n), uffd.ModeMissing)
	c.check(err, "register")
	src := c.anon(pages)
	copy(src.bytes(), data)
	zeros := make([]byte, pageSize)

	var (
		turn     atomic.Int64 // the iteration the faulter is to run
		doneIter atomic.Int64 // the iteration the faulter finished
		jitterF  atomic.Int64 // the faulter's spin before its access
		faulted  atomic.Bool  // the faulter's access took a fault
		stop     atomic.Bool
		msgs     [pages]atomic.Int32 // fault messages read per page
		hEexist  atomic.Int64
		hResolve atomic.Int64
	)
	doneIter.Store(-1)
	turn.Store(-1)

	c.serve(f, 1, func(_ context.Context, m uffd.Msg) error {
		if m.Event != uffd.EventPagefault || m.Address < uint64(area.addr()) || m.Address >= uint64(area.addr())+uint64(area.n) {
			return fmt.Errorf("unexpected %v", m)
		}
		pg := int(uintptr(m.Address)-area.addr()) / pageSize
		msgs[pg].Add(1)
		var err error
		if pg%popOps == popZeropage {
			_, err = f.Zeropage(area.pageAddr(pg), uintptr(pageSize), 0)
		} else {
			_, err = f.Copy(area.pageAddr(pg), src.pageAddr(pg), uintptr(pageSize), 0)
		}
		if uffd.IsExist(err) {
			hEexist.Add(1) // mapped by the populator, whose wake-up covers the waiter
			return nil
		}
		if err == nil {
			hResolve.Add(1)
		}
		return err
	})

	fth := c.start("faulting thread", func() error {
		pinCPU(1)
		for s := int64(0); ; s++ {
			for turn.Load() < s {
				if stop.Load() {
					return nil
				}
			}
			pg := int(s % pages)
			spin(jitterF.Load())
			before := threadFaults()
			var err error
			if pg%popOps == popZeropage {
				_, err = unix.Pwrite(fdSink, area.page(pg)[8:16], 0)
			} else {
				_, err = unix.Pread(fdSrc, area.page(pg)[8:16], int64(pg*pageSize+8))
			}
			faulted.Store(threadFaults() > before)
			doneIter.Store(s)
			if err != nil {
				return fmt.Errorf("iteration %d, page %d: %w", s, pg, err)
			}
		}
	})
	defer stop.Store(true)

	defer lockToCPU(0)()
	rng := newRand(testSeed(c.Params().Seed, c.Name()), 1)
	var offset [popOps]int64 // > 0: the faulter waits longer
	var iters, contested, early, late [popOps]int64
	var step, lastDir [popOps]int64
	for o := range step {
		step[o] = 8
	}
	var s int64
	broke := false
	for ; c.Running() && time.Now().Before(deadline) && !fth.finished(); s++ {
		pg := int(s % pages)
		if pg == 0 && s > 0 {
			c.check(zap(area), "iteration %d: MADV_DONTNEED of the area", s)
		}
		o := pg % popOps
		noise := rng.Int64N(64)
		jf, jp := noise, rng.Int64N(64)
		if offset[o] > 0 {
			jf += offset[o]
		} else {
			jp -= offset[o]
		}
		jitterF.Store(jf)
		turn.Store(s)
		spin(jp)
		dst := area.pageAddr(pg)
		var err error
		switch o {
		case popCopy:
			_, err = f.Copy(dst, src.pageAddr(pg), uintptr(pageSize), 0)
		case popZeropage:
			_, err = f.Zeropage(dst, uintptr(pageSize), 0)
		case popCopyDontwake:
			_, err = f.Copy(dst, src.pageAddr(pg), uintptr(pageSize), uffd.CopyModeDontWake)
			if err == nil {
				err = f.Wake(dst, uintptr(pageSize))
			}
		}
		populated := err == nil
		if err != nil && !uffd.IsExist(err) {
			c.Fatalf("iteration %d: %s of page %d: %v", s, popNames[o], pg, err)
		}
		if !waitIter(&doneIter, s, stuckAfter, fth) {
			c.Errorf("missed wake-up: the faulting thread (tid %d) is still asleep on %#x (page %d, iteration %d) %s after the page was mapped (%s by the populator: %s; fault messages read for the page: %d, handler EEXIST so far: %d)",
				fth.tid.Load(), dst, pg, s, stuckAfter, popNames[o], errName(err), msgs[pg].Load(), hEexist.Load())
			c.check(f.Wake(dst, uintptr(pageSize)), "UFFDIO_WAKE of the stuck thread's page")
			if !waitIter(&doneIter, s, stuckAfter, fth) {
				c.Fatalf("the faulting thread (tid %d) still asleep on %#x after an explicit UFFDIO_WAKE", fth.tid.Load(), dst)
			}
			broke = true
			break
		}
		iters[o]++
		dir := int64(0)
		switch {
		case !faulted.Load():
			late[o]++
			dir = -1
		case !populated:
			early[o]++
			dir = 1
		default:
			contested[o]++
		}
		// Big steps while the pair keeps missing on the same side,
		// smaller ones once they meet or overshoot.
		if dir != 0 && dir == lastDir[o] {
			step[o] = min(2*step[o], 1<<12)
		} else {
			step[o] = max(step[o]/2, 1)
		}
		lastDir[o] = dir
		offset[o] = max(-1<<20, min(offset[o]+dir*step[o], 1<<20))
		want := src.page(pg)
		if o == popZeropage {
			want = zeros
		}
		if !bytes.Equal(area.page(pg), want) {
			c.Errorf("iteration %d page %d (%s): content is %s, want %s", s, pg, popNames[o], describePage(area.page(pg), seed), describePage(want, seed))
			broke = true
			break
		}
	}
	stop.Store(true)
	if !fth.wait(stuckAfter) {
		c.Fatalf("the faulting thread (tid %d) did not stop", fth.tid.Load())
	}
	if fth.err != nil {
		c.Errorf("faulting thread: %v", fth.err)
	}
	var total, totalContested int64
	for o := range popOps {
		total += iters[o]
		totalContested += contested[o]
		c.Logf("%s: %d iterations, %d contested, %d faulter early, %d late, final offset %d", popNames[o], iters[o], contested[o], early[o], late[o], offset[o])
	}
	c.Metric("iterations", float64(total))
	c.Metric("contested", float64(totalContested))
	c.Metric("handler_eexist", float64(hEexist.Load()))
	c.Metric("handler_resolved", float64(hResolve.Load()))
	// Non-vacuity: the faulter and the populator met on a page, with the
	// fault in flight while the populator's operation mapped it.
	if !broke && totalContested == 0 {
		c.Errorf("non-vacuity: in %d iterations no fault was in flight while the populator mapped its page (early %v, late %v)", total, early, late)
	}
}

// waitIter waits up to d for the faulter to finish iteration s (or die).
func waitIter(done *atomic.Int64, s int64, d time.Duration, th *thread) bool {
	for i := 0; done.Load() < s; i++ {
		if th.finished() {
			return true
		}
		if i < 1<<12 {
			continue
		}
		if i == 1<<12 {
			d0 := time.Now()
			for done.Load() < s && !th.finished() {
				if time.Since(d0) > d {
					return false
				}
				time.Sleep(50 * time.Microsecond)
			}
			return true
		}
	}
	return true
}

// spinSink keeps spin's loop from being optimised away.
var spinSink atomic.Int64

// spin burns n loop iterations: the sub-microsecond delays of the race.
func spin(n int64) {
	var x int64
	for i := int64(0); i < n; i++ {
		x += i ^ x>>3
	}
	if x == 42 {
		spinSink.Add(x)
	}
}

// threadFaults is the calling thread's page fault count: minor and
// major, since a fault retried after a userfaultfd wait is counted as
// major (mm_account_fault: FAULT_FLAG_TRIED).
func threadFaults() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return -1
	}
	return int64(ru.Minflt) + int64(ru.Majflt)
}

// lockToCPU locks the calling goroutine to its thread and binds the
// thread to CPU i (if the guest has it); the function it returns undoes
// both.
func lockToCPU(i int) (restore func()) {
	runtime.LockOSThread()
	var all unix.CPUSet
	saved := unix.SchedGetaffinity(0, &all) == nil
	pinCPU(i)
	return func() {
		if saved {
			// Best effort: the thread is unlocked next either way.
			_ = unix.SchedSetaffinity(0, &all)
		}
		runtime.UnlockOSThread()
	}
}

// pinCPU binds the calling (locked) thread to CPU i if the guest has it.
func pinCPU(i int) {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil || set.Count() <= i {
		return
	}
	set.Zero()
	set.Set(i)
	unix.SchedSetaffinity(0, &set)
}
