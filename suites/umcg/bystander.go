package main

import (
	"sync/atomic"
)

// bystander runs on a thread that is no UMCG task, next to the UMCG
// tasks of a scenario, and checks that the CPU state the kernel saves
// and restores for it comes back intact: a float64 recurrence kept in
// SSE registers across involuntary context switches, int64 to float64
// conversions (x87 on 386), and 64-bit atomics (MMX on 386). The UMCG
// hooks sleep in places no other code sleeps (the return to user space,
// sched_submit_work); a kernel that mixed up register state there would
// corrupt everything else first, and quietly. Each round's result must
// equal the reference computed before the scenario started.
func bystander(stop *atomic.Bool, rounds, bad *atomic.Uint64) {
	ref := fpRound(1)
	var word atomic.Uint64
	for n := uint64(1); !stop.Load(); n++ {
		if fpRound(1) != ref {
			bad.Add(1)
		}
		v := n * 0x9E3779B97F4A7C15
		word.Store(v)
		if word.Load() != v {
			bad.Add(1)
		}
		rounds.Add(1)
		nanosleep(200_000) // voluntary switches too, and CPU left to the workers
	}
}

// fpRound is long enough (about a millisecond under TCG) to be
// preempted in the middle, with its state live in registers.
//
//go:noinline
func fpRound(seed int64) float64 {
	a := float64(seed)
	for i := int64(0); i < 5000; i++ {
		a = a*1.0000001 + float64(i&1023)*0.5
		if a > 1e12 {
			a -= 1e12
		}
	}
	return a
}
