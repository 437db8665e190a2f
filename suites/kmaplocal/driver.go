package main

import (
	"bytes"
	"math/rand/v2"
	"sync"
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
	sl := newSlots()
	var k counter
	var wg sync.WaitGroup
	id := 0
	for _, cpu := range c.env.cpus {
		for j := 0; j < c.intensity; j++ {
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
				rng := newRand(c.seed, uint64(id))
				// Always one full sweep, then sweeps until the deadline.
				for sweep := 0; sweep == 0 || c.Running(); sweep++ {
					for depth := 1; depth <= kmtMaxDepth; depth++ {
						for _, flags := range []uint32{0, kmtFlagLowmem} {
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
			}(id, cpu)
			id++
		}
	}
	c.wait(&wg)
	k.report(c)
	c.Metric("slots_shared", float64(sl.shared()))
	c.Metric("kmap_real_expected", b2f(c.env.kmapReal))
	if k.load("runs") == 0 {
		c.Errorf("%s: no request completed", c.name)
	}
	c.checkStats(before)
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
func churnReq(rng *rand.Rand, buf []byte) *kmtReq {
	depth := 1 + rng.IntN(kmtMaxDepth)
	r := &kmtReq{Op: opNest, Depth: uint32(depth), Seed: rng.Uint64()}
	if rng.IntN(4) == 0 {
		r.Flags = kmtFlagLowmem
	}
	if rng.IntN(2) == 0 {
		r.Op = opCopyFromUser
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
		c.fail("%s: churn cpu=%d: %v", c.name, cpu, err)
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
		r := churnReq(rng, buf)
		if !c.runReq(dev, id, cpu, r) {
			continue
		}
		c.checkReq(r, tid, sl, false)
		k.add("churn_runs", 1)
		k.add("sleeps_in_section", int64(r.Nvcsw))
		k.add("preemptions_in_section", int64(r.Nivcsw))
		if r.Op == opCopyFromUser && !bytes.Equal(buf, want) {
			c.fail("%s: churn cpu=%d depth=%d page=%s: COPY_FROM_USER changed the user buffer [%s]", c.name, cpu, r.Depth, firstDiff(buf, want), r)
		}
	}
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
	var wg sync.WaitGroup
	id := 0
	for _, cpu := range c.env.cpus {
		for j := 0; j < 2*c.intensity; j++ {
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
				rng := newRand(c.seed, uint64(id))
				for n := 0; n < 2 || c.Running(); n++ {
					r := &kmtReq{Depth: uint32(1 + rng.IntN(kmtMaxDepth)), Seed: rng.Uint64()}
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
			}(id, cpu)
			id++
		}
	}
	c.wait(&wg)
	stopChurn()
	k.report(c)
	shared := sl.shared()
	c.Metric("slots_shared", float64(shared))
	// Non-vacuity: sections must really have been switched out.
	if k.load("sleep_ops") > 0 && k.load("sleep_op_switches") == 0 {
		c.Errorf("%s: %d SLEEP requests and not one context switch inside a section (nvcsw=0): the sleep did not happen with the maps live", c.name, k.load("sleep_ops"))
	}
	if c.env.preempt && k.load("spin_ops") >= 20 && k.load("spin_op_preemptions") == 0 {
		c.Errorf("%s: %d SPIN requests (%d us) on a CONFIG_PREEMPT kernel with runnable churn threads on the same CPUs, and no preemption inside a section (nivcsw=0)",
			c.name, k.load("spin_ops"), k.load("spin_us"))
	}
	if c.env.kmapReal && shared == 0 {
		c.Errorf("%s: no fixmap slot was used by two threads: the slot-reuse case was not exercised", c.name)
	}
	c.checkStats(before)
}

// irqDepths are the depths at which IRQ requests hold their maps: the
// shallow ones, and the deepest, where the irq's own map needs the last
// free slots.
var irqDepths = []uint32{1, 2, 3, 4, 8, 12, 15, 16}

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
	var wg sync.WaitGroup
	id := 0
	for _, cpu := range c.env.cpus {
		for j := 0; j < c.intensity; j++ {
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
				rng := newRand(c.seed, uint64(id))
				for n := 0; n < len(irqDepths) || c.Running(); n++ {
					r := &kmtReq{Op: opIRQ, Depth: irqDepths[n%len(irqDepths)], Seed: rng.Uint64(),
						SpinUS: uint32(200 + rng.IntN(3000)), SleepUS: uint32(200 + rng.IntN(1000))}
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
			}(id, cpu)
			id++
		}
	}
	c.wait(&wg)
	stopChurn()
	k.report(c)
	if k.load("irq_ops") > 0 && k.load("irq_checks") == 0 {
		c.Errorf("%s: %d IRQ requests and no hard-irq check ran", c.name, k.load("irq_ops"))
	}
	c.checkStats(before)
}
