// Package umcg is a small user-space M:N scheduler over the UMCG system
// calls (User Managed Concurrency Groups, kharness patch set patches/umcg,
// ABI of Peter Zijlstra's RFC v2 of January 2022 ported to Linux 6.12):
// umcg_ctl registers the calling thread as a server or a worker, umcg_wait
// switches between them, umcg_kick forces a preemption point.
//
// The layout is what the kernel requires and the Go runtime tolerates:
//
//   - Every UMCG task is one goroutine locked to its OS thread
//     (runtime.LockOSThread) for its whole UMCG life: the kernel tracks
//     threads, not goroutines.
//   - The struct umcg_task of every task lives in an Arena, an anonymous
//     private mmap cut into 64-byte slots: stable addresses the Go garbage
//     collector never moves, PageAnon pages the kernel can pin, and 8-byte
//     alignment for the 64-bit atomics on 386.
//   - Every access to a slot goes through sync/atomic: the kernel changes
//     the words under our feet (state, next_tid, the runnable list).
//   - Workers call umcg_ctl and umcg_wait through unix.Syscall: they sleep
//     there, and their P goes back to the Go scheduler meanwhile.
//   - A server never waits on the Go runtime: a worker the kernel
//     descheduled (blocked in a page fault, preempted) may hold a runtime
//     lock (the scheduler's, the heap's) that only the server can make it
//     release, by running it. So the server loop (Server.loop) is nosplit
//     code that makes raw system calls, allocates nothing and reports
//     problems as fixed-size Violation records: it never reaches a
//     stack-growth preemption point, and never an exitsyscall that found
//     its P taken and goes for the scheduler lock. (With unix.Syscall
//     there, the fork stress tests deadlocked: the server slept on the Go
//     scheduler lock held by a worker stopped in a copy-on-write fault.)
//     The price: a server holds its P for good (leave room in GOMAXPROCS)
//     and cannot be stopped by a stop-the-world (run with the garbage
//     collector off, debug.SetGCPercent(-1)).
//
// The server loop has the shape of PZ's test server: announce
// RUNNABLE|COND_WAIT before taking the runnable list (so a worker queued
// after the xchg turns the server RUNNING and its umcg_wait fails with
// EAGAIN instead of sleeping on queued work), pick the next worker, put its
// tid in next_tid, umcg_wait; a next_tid the kernel did not consume goes
// back to the queue; a timeout preempts the running worker with
// RUNNING -> RUNNING|TF_PREEMPT and umcg_kick.
package umcg
