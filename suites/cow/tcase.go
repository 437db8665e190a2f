package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/kharness/kharness/suites/internal/gup"
	"github.com/kharness/kharness/suites/suite"
)

// tcase is one running test: the suite's T plus the environment, the
// cleanups the test registered and the /proc/vmstat baseline of its
// oracles.
type tcase struct {
	*suite.T
	env      *env
	cleanups []func()
	vm0      gup.VMStat
	noted    map[string]bool
	// pinnedPages counts the pages the test pinned itself (gup_test,
	// io_uring registrations, its children's pins): the floor of
	// pins_acquired.
	pinnedPages int64
}

// pinned records n pages the test has pinned.
func (c *tcase) pinned(n int) { c.pinnedPages += int64(n) }

// run adapts a test body to the suite API. Every test runs on a locked
// OS thread with the garbage collector off (the raw-fork recipe), first
// drops any pins a failed earlier test left, and afterwards undoes what
// it set up and checks that every page it pinned was unpinned.
func run(l *lazyEnv, body func(c *tcase)) func(t *suite.T) {
	return func(t *suite.T) {
		e, err := l.get()
		if err != nil {
			t.Fatalf("environment: %v", err)
		}
		runtime.LockOSThread()
		old := debug.SetGCPercent(-1)
		defer func() {
			debug.SetGCPercent(old)
			runtime.GC()
		}()
		c := &tcase{T: t, env: e, noted: map[string]bool{}}
		if e.gup != nil {
			if err := e.gup.PinStop(); err != nil {
				t.Fatalf("dropping stale pins: %v", err)
			}
		}
		c.vm0 = c.vmstat()
		defer c.checkPinBalance()
		defer c.runCleanups()
		body(c)
	}
}

// later registers fn to run when the test ends, last registered first.
func (c *tcase) later(fn func()) { c.cleanups = append(c.cleanups, fn) }

func (c *tcase) runCleanups() {
	for i := len(c.cleanups) - 1; i >= 0; i-- {
		c.cleanups[i]()
	}
	c.cleanups = nil
}

// note logs a sub-assertion that this kernel cannot check, once per test.
func (c *tcase) note(key, format string, args ...any) {
	if !c.noted[key] {
		c.noted[key] = true
		c.Logf("not checked: "+format, args...)
	}
}

// cowMissing handles a patches/cow feature the kernel does not show
// (what): a sub-assertion left unchecked (noted once) on a kernel without
// the patch set, a failure when the patch set is applied.
func (c *tcase) cowMissing(key, what string) {
	v := cowVerdict(what, c.env.boot, c.env.bootErr)
	if !v.Skip {
		c.Errorf("%s", v.Why)
		return
	}
	c.note(key, "%s", v.Why)
}

// vmstat reads /proc/vmstat with the per-CPU deltas folded in.
func (c *tcase) vmstat() gup.VMStat {
	v, err := gup.ReadVMStat(true)
	if err != nil {
		c.Fatalf("%v", err)
	}
	return v
}

// checkPinBalance is the pin-leak oracle: every page pinned (FOLL_PIN)
// during the test must have been unpinned by its end. Unpinning can lag
// (io_uring frees registered buffers from a worker), so it polls a
// little before failing.
func (c *tcase) checkPinBalance() {
	if c.vm0 == nil {
		return
	}
	a0, r0, ok := c.vm0.Pins()
	if !ok {
		c.Errorf("no nr_foll_pin_acquired/released in /proc/vmstat (every kernel since 5.7 has them): the pin-leak oracle cannot run")
		return
	}
	var da, dr int64
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		v, err := gup.ReadVMStat(true)
		if err != nil {
			c.Errorf("pin balance: %v", err)
			return
		}
		a, r, _ := v.Pins()
		da, dr = a-a0, r-r0
		if da == dr || time.Now().After(deadline) {
			break
		}
	}
	c.Metric("pins_acquired", float64(da))
	c.Metric("pins_released", float64(dr))
	if da != dr {
		c.Errorf("pin leak: %d pages pinned during the test but %d unpinned (nr_foll_pin_acquired/released)", da, dr)
	}
	if da < c.pinnedPages {
		c.Errorf("nr_foll_pin_acquired rose by %d during the test, but the test itself pinned %d pages: its pins were not accounted, so the pin-leak oracle saw nothing", da, c.pinnedPages)
	}
}

// Names of the patches/cow counters.
const (
	vmEarlyCopy  = "cow_fork_pinned_copy"
	vmEarlySplit = "cow_fork_pinned_split"
)

// expectEarlyCopies checks how a fork between before and after copied
// pages early: exactly, with patches/cow's counters; without them a
// logged "not checked" on a kernel without the patch set, a failure on
// one with it (cowMissing). wantCopies < 0 means "at least one".
func (c *tcase) expectEarlyCopies(before, after gup.VMStat, wantCopies, wantSplits int) {
	copies, ok := before.Delta(after, vmEarlyCopy)
	if !ok {
		c.cowMissing("copycount", fmt.Sprintf("no %s in /proc/vmstat: the early-copy path is not observed", vmEarlyCopy))
		return
	}
	c.Metric("early_copies", float64(copies))
	switch {
	case wantCopies < 0 && copies < 1:
		c.Errorf("fork copied no page early (%s +%d), want at least one", vmEarlyCopy, copies)
	case wantCopies >= 0 && copies != int64(wantCopies):
		c.Errorf("fork copied %d pages early (%s), want %d", copies, vmEarlyCopy, wantCopies)
	}
	splits, ok := before.Delta(after, vmEarlySplit)
	if !ok {
		c.cowMissing("splitcount", fmt.Sprintf("no %s in /proc/vmstat: fork-time splits of pinned THPs are not observed", vmEarlySplit))
		return
	}
	c.Metric("early_splits", float64(splits))
	if splits != int64(wantSplits) {
		c.Errorf("fork split %d possibly pinned THP PMDs (%s), want %d", splits, vmEarlySplit, wantSplits)
	}
}

// expectHasPinned checks pid's HasPinned line (patches/cow).
func (c *tcase) expectHasPinned(pid int, want int, who string) {
	v, ok, err := hasPinned(pid)
	switch {
	case err != nil:
		c.Errorf("%s: %v", who, err)
	case !ok:
		c.cowMissing("haspinned", fmt.Sprintf("%s: no HasPinned line in /proc/%d/status", who, pid))
	case v != want:
		c.Errorf("%s: HasPinned is %d, want %d", who, v, want)
	}
}

// expectExclusive checks the pagemap "exclusively mapped" bit of b's
// pages.
func (c *tcase) expectExclusive(b []byte, want bool, when string) {
	pm, err := pagemap(b)
	if err != nil {
		c.Errorf("%s: %v", when, err)
		return
	}
	if i := exclusiveMismatch(pm, want); i >= 0 {
		state := "shared"
		if pm[i]&pmPresent == 0 {
			state = "not present"
		} else if pm[i]&pmExclusive != 0 {
			state = "exclusive"
		}
		wantS := "shared with the child"
		if want {
			wantS = "exclusive"
		}
		c.Errorf("%s: page %d of %d is %s in the pagemap, want %s", when, i, len(pm), state, wantS)
	}
}

// mustf fails the test when err is not nil.
func (c *tcase) mustf(err error, format string, args ...any) {
	if err != nil {
		c.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
