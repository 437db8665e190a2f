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
	c.Metric("forks", float64(forks))
	c.Metric("pin_rounds", float64(rounds.Load()))
	if d, ok := before.Delta(after, vmEarlyCopy); ok {
		c.Metric("early_copies", float64(d))
	}
	for _, e := range errs {
		c.Errorf("the pinning thread did not read its own write through its pin: %s", e)
	}
	if forks == 0 || rounds.Load() == 0 {
		c.Errorf("nothing raced: %d forks, %d pin rounds in %s", forks, rounds.Load(), budget)
	}
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
