package main

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// scenarioPreempt: workers spin in preemptible sections (UserPreemptible)
// far longer than the servers' tick; a server whose umcg_wait times out
// preempts the running worker (RUNNING -> RUNNING|TF_PREEMPT + umcg_kick),
// the kernel must stop it at its next return to user space, queue it and
// wake the server, which runs the next one. Between spins the workers run
// the ordinary op mix, so blocks and yields interleave with preemptions.
//
// The Go hazards (note §2.4) are handled by the child's environment (no
// GC, no async preemption, see childEnv) and by preempting only inside
// the marked sections, which hold no Go runtime resources.
func scenarioPreempt(r *reporter, p params) error {
	sc, err := newSched(r, p)
	if err != nil {
		return err
	}
	mix := mixRound(opMix("mix"))
	body := func(k *wkCtx) bool {
		k.lastOp.Store(opSpin)
		k.ops[opSpin].Add(1)
		k.spin(spinLimit)
		return mix(k)
	}
	cfg := umcg.ServerConfig{Clock: unix.CLOCK_MONOTONIC, Tick: p.Tick, Preempt: true, PreemptMarkedOnly: true}
	if err := sc.addPool(cfg, body); err != nil {
		return err
	}
	if err := sc.run(nil); err != nil {
		return err
	}
	sc.check()
	var seen, coop, spins, timedOut, blocked uint64
	for _, k := range sc.all() {
		blocked += k.spinBlocks.Load()
		seen += k.preempts.Load()
		coop += k.coop.Load()
		spins += k.ops[opSpin].Load()
		timedOut += k.spins.Load()
	}
	var sum umcgTotals
	for _, c := range sc.srvs {
		sum.add(&c.s.Stats)
	}
	// Checked below: preempt_requests and preempts_seen (> 0).
	// preempts_cooperative, spins and spins_not_preempted are
	// measurements of how the spins ended.
	r.Metric("preempt_requests", float64(sum.preempts))
	r.Metric("preempts_seen", float64(seen))
	r.Metric("preempts_cooperative", float64(coop))
	r.Metric("spins", float64(spins))
	r.Metric("spins_not_preempted", float64(timedOut))
	r.Logf("%d spins of up to %s: %d preempted by the kernel, %d gave way cooperatively, %d ran to the limit, %d blocked in a fault; servers set TF_PREEMPT+kick %d times (%d kicks failed), %d timeouts",
		spins, spinLimit, seen, coop, timedOut, blocked, sum.preempts, sum.kickErrs, sum.timeouts)
	switch {
	case sum.preempts == 0:
		r.Errorf("no preemption was ever requested: %d server timeouts while workers spun %s at a time (tick %s)", sum.timeouts, spinLimit, p.Tick)
	case seen == 0:
		r.Errorf("spinning workers were never preempted by the kernel: %d TF_PREEMPT+umcg_kick requests, %d taken cooperatively at the end of the section", sum.preempts, coop)
	}
	return nil
}

// spinLimit bounds one preemptible spin.
const spinLimit = 25 * time.Millisecond

// spin is a preemptible section: plain arithmetic (no calls into the Go
// runtime but the vDSO clock) until the kernel preempts the worker (its
// runnable_ts moves) or limit passes. Like compute, it claims the
// server's owner word and checks nobody else ran while it was not off the
// CPU; it also checks the kernel kept the user bit across the preemption.
func (k *wkCtx) spin(limit time.Duration) {
	me := int32(k.id + 1)
	b0, r0 := k.w.T.BlockedTS(), k.w.T.RunnableTS()
	k.w.BeginPreemptible()
	k.srv.owner.Store(me)
	start := time.Now()
	x := k.rng
	preempted, blocked := false, false
	for i := 1; ; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		if i%256 != 0 {
			continue
		}
		if k.w.T.RunnableTS() != r0 {
			if k.w.T.BlockedTS() != b0 {
				blocked = true // a page fault that slept, not a preemption
				break
			}
			preempted = true
			if st := k.w.T.State(); st&umcg.UserPreemptible == 0 || !umcg.IsRunning(st) {
				k.ev.add(evUserBits, uint64(st), uint64(umcg.UserPreemptible), 0, 0)
			}
			break
		}
		if o := k.srv.owner.Swap(me); o != me && o != 0 {
			k.overlap(o, b0, r0)
		}
		if time.Since(start) > limit {
			break
		}
	}
	k.sink += x
	yielded, err := k.w.EndPreemptible()
	if err != nil && err != unix.EAGAIN {
		e, _ := err.(unix.Errno)
		k.ev.add(evYieldErr, uint64(e), uint64(k.w.T.State()), 0, 0)
	}
	switch {
	case blocked:
		k.spinBlocks.Add(1)
	case preempted:
		k.preempts.Add(1)
	case yielded:
		k.coop.Add(1)
	default:
		k.spins.Add(1)
	}
	k.checkRunning(opSpin)
}
