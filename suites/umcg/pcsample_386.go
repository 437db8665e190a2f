package main

import "golang.org/x/sys/unix"

// callers: Go on 386 keeps no frame pointers; only the sampled PC is known.
func callers(tid int, regs *unix.PtraceRegs, max int) []uint64 { return nil }
