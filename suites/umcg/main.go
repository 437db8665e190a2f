// Command umcg stresses the UMCG system calls of patches/umcg (User
// Managed Concurrency Groups: umcg_ctl, umcg_wait, umcg_kick, PZ's RFC v2
// ABI on Linux 6.12) through a small M:N scheduler written on them
// (suites/internal/umcg): servers that run workers, workers that block in
// system calls and page faults, yield, get preempted, signalled, fork,
// exec and exit, and the invariants the design promises:
//
//   - every documented error for bad input (abi-errors);
//   - at most one worker of a server runs user code at any time, and only
//     when RUNNING; nobody is lost (a watchdog names a stuck task and its
//     state) or queued twice; next_tid is tid|TID_RUNNING while its
//     worker runs; blocked_ts and runnable_ts never go back and
//     runnable_ts >= blocked_ts after a block;
//   - PZ's races: R1 (signal between COND_WAIT and umcg_wait), R2 (the
//     server's lost wakeup), R3 (block inside a COND_WAIT section);
//   - the kernel's pins of struct pages are transient: /proc/vmstat's
//     nr_foll_pin_acquired - released is back where it was once every
//     task has left.
//
// Each test runs its scenario in a child process (see proto.go). On a
// kernel without UMCG (umcg_ctl = ENOSYS) every test skips with the
// reason, unless the kernel command line says patch set umcg is applied:
// then, as for any other answer of the probe, they fail (probeVerdict).
package main

import (
	"os"

	"github.com/kharness/kharness/suites/suite"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case childArg:
			os.Exit(childMain(os.Args[2:]))
		case execProbeArg:
			os.Exit(execProbe())
		}
	}
	suite.Main("umcg",
		suite.Test{Name: "abi-errors", Run: testABI},
		suite.Test{Name: "cond-wait-races", Run: testRaces},
		suite.Test{Name: "block-yield-stress", Run: testMix},
		suite.Test{Name: "signal-storm", Run: testSignals},
		suite.Test{Name: "preempt", Run: testPreempt},
		suite.Test{Name: "lifecycle-exit-fork", Run: testLifecycle},
		suite.Test{Name: "exec-from-worker", Run: testExec},
		suite.Test{Name: "worker-efault-sigkill", Run: testWorkerEfault},
		suite.Test{Name: "kill-midrun", Run: testKill},
		suite.Test{Name: "pins-fork-nonumcg", Run: testPinsFork},
		suite.Test{Name: "throughput", Run: testThroughput},
	)
}
