package main

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"runtime"
	"runtime/debug"
)

// childMain runs one scenario in the child process and returns its exit
// code: 0 when it ran to its end (errors are in the records), 2 when it
// could not start.
func childMain(args []string) int {
	// The coordinator keeps the main thread: a UMCG task that ran on it
	// could not end its thread (Go wedges the main thread of a goroutine
	// that exits locked to it instead of exiting it), so the kernel's exit
	// path would never run for it.
	runtime.LockOSThread()
	r := &reporter{w: os.Stdout}
	if len(args) < 1 {
		r.Errorf("scenario child: no params")
		return 2
	}
	p, err := decodeParams(args[0])
	if err != nil {
		r.Errorf("%v", err)
		return 2
	}
	// GOGC=off in the environment already; this makes it explicit and
	// survives a caller that forgot it (see childEnv).
	debug.SetGCPercent(-1)
	run := scenario(p.Scenario)
	if run == nil {
		r.Errorf("unknown scenario %q", p.Scenario)
		return 2
	}
	err = run(r, p)
	if err != nil {
		r.Errorf("scenario %s: %v", p.Scenario, err)
	}
	r.emit(record{Kind: recDone})
	if errors.Is(err, errHang) {
		// First the parent samples where the spinning threads are,
		// then every goroutine's place in user space (the parent logs
		// stderr): the Go runtime prints them on SIGQUIT without a
		// stop-the-world, which a descheduled worker could block.
		r.emit(record{Kind: recHang})
		time.Sleep(hangSampleTime)
		unix.Kill(os.Getpid(), unix.SIGQUIT)
		time.Sleep(5 * time.Second)
	}
	if r.Failed() {
		return 1
	}
	return 0
}

// scenario maps a name to its body.
func scenario(name string) func(*reporter, params) error {
	switch name {
	case "abi":
		return scenarioABI
	case "mix", "signals", "solo", "races", "pins-fork", "kill-midrun":
		return scenarioMix
	case "preempt":
		return scenarioPreempt
	case "lifecycle":
		return scenarioLifecycle
	case "exec-worker":
		return scenarioExec
	case "worker-efault":
		return scenarioWorkerEfault
	case "bench":
		return scenarioBench
	}
	return nil
}

// hangSampleTime is what the parent gets to sample a hung child's
// spinning threads (200 ms of CPU accounting and three PC samples each).
const hangSampleTime = 4 * time.Second
