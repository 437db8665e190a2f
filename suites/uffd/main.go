// Command uffd is the userfaultfd guest suite: the handshake and register
// ABI with its refusals, /proc fdinfo counts, a MISSING-fault storm with
// racing handlers, missed wake-ups of faults whose page is populated
// while they fault, SIGBUS mode and UFFDIO_POISON, MISSING faults on
// shmem, wake ranges, kernel-mode faults, the non-cooperative events
// (fork, mremap, MADV_DONTNEED, munmap), UFFDIO_COPY's source handling,
// UFFDIO_MOVE, and write-protect (also asynchronous, with PAGEMAP_SCAN)
// and minor modes where the kernel offers them (x86_64). A feature the
// kernel lacks is a skip only when the kernel's configuration leaves it
// out (i386 has no HAVE_ARCH_USERFAULTFD_WP/MINOR), a failure otherwise;
// either names the features it does offer (featureVerdict).
//
// Faults that must be reported exactly once, or whose waiter must stay
// asleep until the test wakes it, are kernel-mode faults (pread() into
// registered memory): the Go runtime preempts a goroutine blocked in a
// user-mode fault with a signal, after which it faults again. Every wait
// is bounded; a thread left blocked is released at the end of the test by
// closing its userfaultfds and reported.
package main

import "github.com/kharness/kharness/suites/suite"

func main() {
	suite.Main("uffd", tests()...)
}

// tests lists the suite's tests in running order.
func tests() []suite.Test {
	return []suite.Test{
		{Name: "handshake", Run: run(handshake)},
		{Name: "register", Run: run(register)},
		{Name: "fdinfo", Run: run(fdinfoCounts)},
		{Name: "missing-storm", Run: run(missingStorm)},
		{Name: "wake-ranges", Run: run(wakeRanges)},
		{Name: "wake-populate-race", Run: run(wakePopulateRace)},
		{Name: "kernel-mode-fault", Run: run(kernelModeFault)},
		{Name: "sigbus-poison", Run: run(sigbusPoison)},
		{Name: "missing-shmem", Run: run(missingShmem)},
		{Name: "event-fork", Run: run(eventFork)},
		{Name: "event-fork-disabled", Run: run(eventForkDisabled)},
		{Name: "event-remap", Run: run(eventRemap)},
		{Name: "event-remove", Run: run(eventRemove)},
		{Name: "event-unmap", Run: run(eventUnmap)},
		{Name: "event-blocks-copy", Run: run(eventBlocksCopy)},
		{Name: "copy-source", Run: run(copySource)},
		{Name: "move", Run: run(move)},
		{Name: "write-protect", Run: run(writeProtect)},
		{Name: "wp-async-scan", Run: run(wpAsyncScan)},
		{Name: "minor-shmem", Run: run(minorShmem)},
	}
}
