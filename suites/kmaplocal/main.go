// Command kmaplocal stresses kmap_local, the per-task, preemptible
// temporary kernel mappings of highmem pages (mm/highmem.c), on i386
// HIGHMEM kernels, and runs the same tests on x86_64 as a negative control
// (there kmap_local_page() is page_address(), so a failure points at the
// suite, not at kmap_local).
//
// Two kinds of tests:
//   - driver-*: through the kmap_local_test debugfs driver (kharness
//     patch, CONFIG_TEST_KMAP_LOCAL), which nests up to 16 maps, verifies
//     the pages through them, and sleeps, spins, faults on user memory or
//     takes hard interrupts in between. They skip on kernels without it
//     (neither patch set kmap-local applied nor the option set) and fail
//     when it should be there (driverVerdict).
//   - the rest drive kmap_local from user space on any kernel: a read()
//     or UFFDIO_COPY whose copy_to/from_user inside a kmap_local section
//     faults on userfaultfd memory sleeps with the mapping live, fork/COW
//     nests two maps per copied page, tmpfs huge pages are copied page by
//     page through kmaps.
//
// The agent attaches the kernel log to every test and fails a test whose
// log has a WARNING or BUG, so kmap_local's own checks (the strict-nesting
// WARN in kunmap_local_indexed, kmap_assert_nomap at syscall exit) are
// oracles too.
package main

import (
	"sync"

	"github.com/kharness/kharness/suites/suite"
)

func main() {
	suite.Main("kmaplocal",
		suite.Test{Name: "driver-nest", Run: run(driverNest)},
		suite.Test{Name: "driver-sleep-preempt", Run: run(driverSleepPreempt)},
		suite.Test{Name: "driver-uffd-fault", Run: run(driverUffdFault)},
		suite.Test{Name: "driver-irq", Run: run(driverIRQ)},
		suite.Test{Name: "uffd-read-tmpfs", Run: run(uffdReadTmpfs)},
		suite.Test{Name: "uffd-copy-unpopulated", Run: run(uffdCopyUnpopulated)},
		suite.Test{Name: "fork-cow-highmem", Run: run(forkCOWHighmem)},
		suite.Test{Name: "tmpfs-large-folio", Run: run(tmpfsLargeFolio)},
	)
}

var (
	envOnce sync.Once
	theEnv  *env
	envErr  error
)

// run adapts a test body to the suite API.
func run(body func(c *tcase)) func(t *suite.T) {
	return func(t *suite.T) {
		envOnce.Do(func() { theEnv, envErr = detectEnv() })
		if envErr != nil {
			t.Fatalf("environment: %v", envErr)
		}
		p := t.Params()
		c := &tcase{tb: t, name: t.Name(), intensity: max(p.Intensity, 1), seed: testSeed(p.Seed, t.Name()), env: theEnv}
		defer c.finish()
		body(c)
	}
}
