package main

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"

	"golang.org/x/sys/unix"
)

// runReq issues r on dev, with the worker's current request recorded so
// that a hang names it.
func (c *tcase) runReq(dev kmtDev, id, cpu int, r *kmtReq) bool {
	c.inflight.begin(id, r.String())
	err := dev.Run(r)
	c.inflight.end(id)
	if err != nil {
		c.fail("%s: cpu=%d depth=%d page=-: %v", c.name, cpu, r.Depth, err)
		return false
	}
	c.done.add(opName(r.Op), 1)
	return true
}

// checkReq checks a completed request and reports every problem.
func (c *tcase) checkReq(r *kmtReq, tid int, sl *slots, moved bool) bool {
	ps := checkResult(c.env.expect, r, moved)
	if sl != nil {
		ps = append(ps, sl.observe(c.env.expect, r, tid)...)
	}
	for _, p := range ps {
		c.fail("%s", describe(c.name, r, p))
	}
	return len(ps) == 0
}

// openWorkerDev opens a driver file for a worker goroutine (which must
// not Skipf/Fatalf).
func (c *tcase) openWorkerDev(cpu int) (kmtDev, bool) {
	d, err := c.env.newDev()
	if err != nil {
		c.fail("%s: cpu=%d depth=- page=-: open %s: %v", c.name, cpu, kmtRunPath, err)
		return nil, false
	}
	return d, true
}

// driverNest walks every depth 1..16, with highmem and lowmem pages, on
// every CPU at once, and checks every field of every answer: the
// baseline the other driver tests disturb.
func driverNest(c *tcase) {
	c.dev().Close()
	before := c.stats(true)
	c.checkBoundaries()
	sl := newSlots()
	var k counter
	c.driverWorkers(c.intensity, func(id, cpu, tid int, dev kmtDev, rng *rand.Rand) {
		// Always one full sweep, then sweeps until the deadline.
		for sweep := 0; sweep == 0 || c.Running(); sweep++ {
			for depth := 1; depth <= kmtMaxDepth; depth++ {
				for _, flags := range []uint32{0, kmtFlagLowmem} {
					if depth > c.depthCap(opNest, flags) {
						continue // checkBoundaries saw ENOSPC there
					}
					r := &kmtReq{Op: opNest, Depth: uint32(depth), Flags: flags, Seed: rng.Uint64()}
					if !c.runReq(dev, id, cpu, r) {
						continue
					}
					if c.checkReq(r, tid, sl, false) {
						k.add("runs_ok", 1)
					}
					k.add("runs", 1)
					k.add("highmem_maps", int64(r.NrHighmem))
				}
			}
			k.add("sweeps", 1)
		}
	})
	k.report(c)
	// Measurements: with one worker per CPU (intensity 1) no two
	// threads share a slot here; driver-sleep-preempt and
	// driver-uffd-fault check sharing. kmap_real_expected is the
	// configuration the answers are checked against.
	c.Metric("slots_shared", float64(sl.shared()))
	c.Metric("kmap_real_expected", b2f(c.env.kmapReal))
	if k.load("runs") == 0 {
		c.errorAll("no request completed")
	}
	if c.env.kmapReal && k.load("highmem_maps") == 0 {
		c.errorAll("%d requests on a kernel whose kmap_local really maps, and not one highmem page mapped (nr_highmem=0)", k.load("runs"))
	}
	c.checkStats(before)
}

// checkBoundaries checks, once, what the driver must refuse — it guards
// kmap_local_idx_push()'s BUG_ON on a full slot stack and its own out
// arrays — and that it takes the deepest request of every op. It runs on
// a thread pinned to the first CPU: unpinned, an x86_64 task may migrate
// inside a SLEEP section, which is no error there.
func (c *tcase) checkBoundaries() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		cpu := c.env.cpus[0]
		if _, err := pinSelf(cpu); err != nil {
			c.fail("%s: cpu=%d depth=- page=-: %v", c.name, cpu, err)
			return
		}
		if dev, ok := c.openWorkerDev(cpu); ok {
			defer dev.Close()
			c.boundaries(dev, cpu)
		}
	}()
	<-done
}

func (c *tcase) boundaries(dev kmtDev, cpu int) {
	buf, err := mmapAnon(kmtMaxDepth * pageSize)
	if err != nil {
		c.errorAll("%v", err)
		return
	}
	defer munmap(buf)
	fillWord(buf, 0x5a5a5a5a) // populated: these copies do not fault
	ub := uint64(addrOf(buf))
	for _, tc := range []struct {
		name string
		r    kmtReq
	}{
		{"depth 0", kmtReq{Op: opNest}},
		{"depth 17", kmtReq{Op: opNest, Depth: kmtMaxDepth + 1}},
		{"op 0", kmtReq{Op: 0, Depth: 1}},
		{"op 7", kmtReq{Op: opIRQ + 1, Depth: 1}},
		{"unknown flag", kmtReq{Op: opNest, Depth: 1, Flags: 2}},
		{"__pad0 set", kmtReq{Op: opNest, Depth: 1, Pad0: 1}},
		{"copy of 0 bytes", kmtReq{Op: opCopyToUser, Depth: 1, UserBuf: ub}},
		{"copy past depth pages", kmtReq{Op: opCopyFromUser, Depth: 2, UserBuf: ub, UserLen: uint64(2*pageSize + 1)}},
		{"sleep over 10 s", kmtReq{Op: opSleep, Depth: 1, SleepUS: 10_000_001}},
	} {
		r := tc.r
		r.Seed = uint64(c.seed)
		if err := dev.Run(&r); !errors.Is(err, unix.EINVAL) {
			c.errorAll("bad request (%s) answered with %v, want EINVAL", tc.name, err)
		}
	}
	rng := newRand(c.seed, 1<<40)
	for _, op := range allOps {
		lim := c.depthCap(op, 0)
		r := boundaryReq(op, lim, ub, rng.Uint64())
		if c.runReq(dev, -1, cpu, r) {
			c.checkReq(r, unix.Gettid(), nil, false)
		}
		if lim < kmtMaxDepth {
			r := boundaryReq(op, lim+1, ub, rng.Uint64())
			if err := dev.Run(r); !errors.Is(err, unix.ENOSPC) {
				c.errorAll("%s at depth %d, one more than max_depth_%s: %v, want ENOSPC", opName(op), lim+1, statOpNames[op], err)
			}
		}
		c.Metric("max_depth_"+statOpNames[op], float64(lim)) // the driver's limit: configuration
	}
}

// boundaryReq is a short request of op at depth.
func boundaryReq(op uint32, depth int, ub, seed uint64) *kmtReq {
	r := &kmtReq{Op: op, Depth: uint32(depth), Seed: seed, SleepUS: 100, SpinUS: 300}
	if op == opCopyToUser || op == opCopyFromUser {
		r.UserBuf, r.UserLen = ub, uint64(depth*pageSize)
	}
	return r
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// churnReq returns a random NEST or COPY_FROM_USER request (COPY_FROM_USER
// copies buf, which the caller fills) for churn threads: short sections
// that reuse the fixmap slots of whoever sleeps on the same CPU.
func (c *tcase) churnReq(rng *rand.Rand, buf []byte) *kmtReq {
	r := &kmtReq{Op: opNest, Seed: rng.Uint64()}
	if rng.IntN(4) == 0 {
		r.Flags = kmtFlagLowmem
	}
	if rng.IntN(2) == 0 {
		r.Op = opCopyFromUser
	}
	depth := c.randDepth(rng, r.Op, r.Flags)
	r.Depth = uint32(depth)
	if r.Op == opCopyFromUser {
		r.UserBuf = uint64(addrOf(buf))
		r.UserLen = uint64(depth * pageSize)
	}
	return r
}

// churn runs churn requests on cpu until stop is closed and checks them.
// COPY_FROM_USER must leave the user buffer alone.
func (c *tcase) churn(id, cpu int, stop <-chan struct{}, sl *slots, k *counter) {
	tid, err := pinSelf(cpu)
	if err != nil {
		c.fail("%s: churn cpu=%d depth=- page=-: %v", c.name, cpu, err)
		return
	}
	dev, ok := c.openWorkerDev(cpu)
	if !ok {
		return
	}
	defer dev.Close()
	buf, err := mmapAnon(kmtMaxDepth * pageSize)
	if err != nil {
		c.fail("%s: churn cpu=%d depth=- page=-: %v", c.name, cpu, err)
		return
	}
	defer munmap(buf)
	want := make([]byte, len(buf))
	rng := newRand(c.seed, uint64(id)|1<<32)
	for {
		select {
		case <-stop:
			return
		default:
		}
		fillRandom(rng, buf[:pageSize]) // vary the data a little each time
		copy(want, buf)
		r := c.churnReq(rng, buf)
		if !c.runReq(dev, id, cpu, r) {
			continue
		}
		c.checkReq(r, tid, sl, false)
		k.add("churn_runs", 1)
		k.add("sleeps_in_section", int64(r.Nvcsw))
		k.add("preemptions_in_section", int64(r.Nivcsw))
		if r.Op == opCopyFromUser && !bytes.Equal(buf, want) {
			c.fail("%s: churn cpu=%d depth=%d page=%s: COPY_FROM_USER changed the user buffer [%s]", c.name, cpu, r.Depth, firstDiff(buf, want, 0), r)
		}
	}
}

// driverWorkers runs perCPU workers on every CPU, each on its own OS
// thread pinned to its CPU, with its own driver handle and random stream,
// and waits for all of them (bounded by the test's watchdog).
func (c *tcase) driverWorkers(perCPU int, work func(id, cpu, tid int, dev kmtDev, rng *rand.Rand)) {
	var wg sync.WaitGroup
	id := 0
	for _, cpu := range c.env.cpus {
		for j := 0; j < perCPU; j++ {
			wg.Add(1)
			go func(id, cpu int) {
				defer wg.Done()
				tid, err := pinSelf(cpu)
				if err != nil {
					c.fail("%s: cpu=%d depth=- page=-: %v", c.name, cpu, err)
					return
				}
				dev, ok := c.openWorkerDev(cpu)
				if !ok {
					return
				}
				defer dev.Close()
				work(id, cpu, tid, dev, newRand(c.seed, uint64(id)))
			}(id, cpu)
			id++
		}
	}
	c.wait(&wg)
}

// startChurn starts churn threads on every CPU and returns the function
// that stops them and waits.
func (c *tcase) startChurn(perCPU, firstID int, sl *slots, k *counter) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	id := firstID
	for _, cpu := range c.env.cpus {
		for j := 0; j < perCPU; j++ {
			wg.Add(1)
			go func(id, cpu int) {
				defer wg.Done()
				c.churn(id, cpu, stop, sl, k)
			}(id, cpu)
			id++
		}
	}
	return func() {
		close(stop)
		c.wait(&wg)
	}
}

// driverSleepPreempt keeps several threads per CPU inside nested
// sections that sleep (usleep: a voluntary switch with the maps live, so
// __kmap_local_sched_out/in save and restore them) or spin with
// preemption enabled (an involuntary switch), while churn threads on the
// same CPUs map their own pages into the very same fixmap slots.
func driverSleepPreempt(c *tcase) {
	c.dev().Close()
	before := c.stats(false)
	sl := newSlots()
	var k counter
	stopChurn := c.startChurn(c.intensity, 1000, sl, &k)
	c.driverWorkers(2*c.intensity, func(id, cpu, tid int, dev kmtDev, rng *rand.Rand) {
		for n := 0; n < 2 || c.Running(); n++ {
			r := &kmtReq{Seed: rng.Uint64()}
			if rng.IntN(8) == 0 {
				r.Flags = kmtFlagLowmem
			}
			if n%2 == 0 || rng.IntN(3) == 0 {
				r.Op, r.SleepUS = opSleep, uint32(20+rng.IntN(3000))
			} else {
				r.Op, r.SpinUS = opSpin, uint32(100+rng.IntN(2000))
				if rng.IntN(4) == 0 {
					r.SpinUS = uint32(4000 + rng.IntN(8000)) // longer than a tick
				}
			}
			r.Depth = uint32(c.randDepth(rng, r.Op, r.Flags))
			if !c.runReq(dev, id, cpu, r) {
				continue
			}
			c.checkReq(r, tid, sl, false)
			k.add("sleeps_in_section", int64(r.Nvcsw))
			k.add("preemptions_in_section", int64(r.Nivcsw))
			if r.Op == opSleep {
				k.add("sleep_ops", 1)
				k.add("sleep_op_switches", int64(r.Nvcsw))
				if r.Nvcsw == 0 {
					k.add("sleep_ops_without_switch", 1)
				}
			} else {
				k.add("spin_ops", 1)
				k.add("spin_op_preemptions", int64(r.Nivcsw))
				k.add("spin_us", int64(r.SpinUS))
			}
		}
	})
	stopChurn()
	k.report(c)
	shared := sl.shared()
	c.Metric("slots_shared", float64(shared))
	// Non-vacuity: sections must really have been switched out, while
	// churn threads used the slots.
	if k.load("sleep_ops") == 0 {
		c.errorAll("no SLEEP request completed")
	}
	c.churnRan(&k)
	if k.load("sleep_ops") > 0 && k.load("sleep_op_switches") == 0 {
		c.errorAll("%d SLEEP requests and not one context switch inside a section (nvcsw=0): the sleep did not happen with the maps live", k.load("sleep_ops"))
	}
	if c.env.preempt && k.load("spin_ops") >= 20 && k.load("spin_op_preemptions") == 0 {
		c.errorAll("%d SPIN requests (%d us) on a CONFIG_PREEMPT kernel with runnable churn threads on the same CPUs, and no preemption inside a section (nivcsw=0)",
			k.load("spin_ops"), k.load("spin_us"))
	}
	if c.env.kmapReal && shared == 0 {
		c.errorAll("no fixmap slot was used by two threads: the slot-reuse case was not exercised")
	}
	c.checkStats(before)
}

// irqDepths are the depths at which IRQ requests hold their maps: the
// shallow ones, and the deepest the driver takes (it keeps one slot for
// the callback's own map), where the irq lands on an almost full stack.
func irqDepths(lim int) []uint32 {
	var out []uint32
	for d := 1; d <= lim; d++ {
		switch d {
		case 1, 2, 3, 4, 8, 12, lim - 1, lim:
			out = append(out, uint32(d))
		}
	}
	return out
}

// driverIRQ holds nested maps while hrtimer callbacks map and verify a
// page in hard-irq context on the same CPU (the irq's kmap_local uses the
// interrupted task's slot stack), with churn threads so that the
// interrupt also lands on other tasks' sections.
func driverIRQ(c *tcase) {
	c.dev().Close()
	before := c.stats(false)
	sl := newSlots()
	var k counter
	stopChurn := c.startChurn(1, 1000, sl, &k)
	c.driverWorkers(c.intensity, func(id, cpu, tid int, dev kmtDev, rng *rand.Rand) {
		depths := irqDepths(c.depthCap(opIRQ, 0))
		for n := 0; n < len(depths) || c.Running(); n++ {
			// spin_us/100 callbacks, one per 100 us, on this CPU.
			r := &kmtReq{Op: opIRQ, Depth: depths[n%len(depths)], Seed: rng.Uint64(),
				SpinUS: uint32(200 + rng.IntN(3000))}
			if rng.IntN(8) == 0 {
				r.Flags = kmtFlagLowmem
			}
			if !c.runReq(dev, id, cpu, r) {
				continue
			}
			c.checkReq(r, tid, sl, false)
			k.add("irq_ops", 1)
			k.add("irq_checks", int64(r.IRQChecks))
			k.add("irq_errors", int64(r.IRQErrors))
		}
	})
	stopChurn()
	k.report(c)
	if k.load("irq_ops") == 0 {
		c.errorAll("no IRQ request completed")
	}
	c.churnRan(&k)
	if k.load("irq_ops") > 0 && k.load("irq_checks") == 0 {
		c.errorAll("%d IRQ requests and no hard-irq check ran", k.load("irq_ops"))
	}
	c.checkStats(before)
}

// churnRan fails the test when its churn threads completed no request:
// nothing then reused the slots of the sections under test.
func (c *tcase) churnRan(k *counter) {
	if k.load("churn_runs") == 0 {
		c.errorAll("the churn threads completed no request: nothing reused the fixmap slots meanwhile")
	}
}
