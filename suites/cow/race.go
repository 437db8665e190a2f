package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kharness/kharness/suites/internal/gup"
	"golang.org/x/sys/unix"
)

// pinForkRace: one thread pins the area with GUP-fast over and over
// (START(USE_FAST|USE_WRITE), write, READ, STOP) while another thread
// forks. GUP-fast walks the page tables without the mmap lock; it must
// not pin a page that a concurrent fork is making shared (fork bumps
// mm->write_protect_seq, GUP-fast backs off), and fork must copy a page
// pinned before its check. Either way, what the pin reads must be what
// the pinning thread just wrote; with CONFIG_DEBUG_VM a pinned page that
// is not exclusive also trips sanity_check_pinned_pages().
func pinForkRace(c *tcase) {
	dev := c.gupDev()
	r := c.region(memPage)
	area := r.area
	budget := c.Params().Duration / 4
	deadline := time.Now().Add(budget)
	var stop atomic.Bool
	var rounds atomic.Int64
	var mu sync.Mutex
	var errs []string
	buf := c.buffer(len(area))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stop.Store(true)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		c.onCPU(1)
		for k := uint32(1); time.Now().Before(deadline) && !stop.Load(); k++ {
			err := pinWriteRead(dev, area, buf, 0x1000+k)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("round %d: %v", k, err))
				mu.Unlock()
				if len(errs) >= 3 {
					return
				}
			}
			rounds.Add(1)
		}
	}()
	c.onCPU(0)
	f := c.newForker()
	s := f.script() // the child just exits
	before := c.vmstat()
	forks := 0
	for time.Now().Before(deadline) && !stop.Load() {
		ch, err := f.fork(s)
		if err != nil {
			stop.Store(true)
			c.Errorf("%v", err)
			break
		}
		if err := ch.finish(); err != nil {
			c.Errorf("%v", err)
		}
		forks++
	}
	stop.Store(true)
	wg.Wait()
	after := c.vmstat()
	c.pinned(int(rounds.Load()) * pages(area))
	c.Metric("forks", float64(forks))
	c.Metric("pin_rounds", float64(rounds.Load()))
	for _, e := range errs {
		c.Errorf("the pinning thread did not read its own write through its pin: %s", e)
	}
	if forks == 0 || rounds.Load() == 0 {
		c.Errorf("nothing raced: %d forks, %d pin rounds in %s", forks, rounds.Load(), budget)
	}
	d, ok := before.Delta(after, vmEarlyCopy)
	if !ok {
		c.cowMissing("copycount", fmt.Sprintf("no %s in /proc/vmstat: whether fork ever met a live pin is not observed", vmEarlyCopy))
		return
	}
	c.Metric("early_copies", float64(d))
	if msg := raceOverlap(forks, d); msg != "" {
		c.Errorf("%s", msg)
	}
}

// minRaceForks is how many forks must have raced the pinning thread
// before the race is required to have met a live pin at least once. The
// pinning thread holds its pin for about half of each round, so the
// chance that this many forks all fell between its pins is below 1e-12.
const minRaceForks = 40

// raceOverlap is the race's non-vacuity check on the early-copy counter
// (patches/cow): in enough forks, fork must have found the area pinned
// at least once and copied it early; otherwise nothing raced.
func raceOverlap(forks int, copies int64) string {
	if forks >= minRaceForks && copies == 0 {
		return fmt.Sprintf("non-vacuity: in %d forks racing the pinning thread, fork never copied a pinned page early (%s +0): fork and pin never overlapped", forks, vmEarlyCopy)
	}
	return ""
}

// pinWriteRead pins area (GUP-fast, R/W), writes pattern tag over it,
// reads it back through the pin and unpins.
func pinWriteRead(dev *gup.Dev, area, buf []byte, tag uint32) error {
	if err := dev.PinStart(addrOf(area), len(area), gup.FlagFast|gup.FlagWrite); err != nil {
		return err
	}
	fill(area, tag, 0)
	err := dev.PinRead(buf)
	if stopErr := dev.PinStop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return err
	}
	if m := mismatch(buf, tag, 0); m != "" {
		return fmt.Errorf("through the pin: %s", m)
	}
	return nil
}

// onCPU binds the calling (locked) thread to the i-th usable CPU, if
// there is one: the racing threads should really run in parallel.
func (c *tcase) onCPU(i int) {
	if i >= len(c.env.cpus) {
		return
	}
	var set unix.CPUSet
	set.Set(c.env.cpus[i])
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		c.Logf("sched_setaffinity(cpu %d): %v", c.env.cpus[i], err)
	}
}
