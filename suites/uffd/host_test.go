package main

// Host runs of the test bodies against the kernel running `go test`
// (userfaultfd needs root or vm.unprivileged_userfaultfd=1; without it
// the runs skip). They are the same bodies the guest runs, so a broken
// test (a wait that hangs, a wrong expectation) shows before a guest
// boots. The host kernel is not the guest's 6.12, so feature-exact checks
// are left to the guest (checkFeatures only compares on 6.12).

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
	"github.com/kharness/kharness/suites/suitetest"
)

// runHost runs body like the suite does and returns the collected tb.
func runHost(t *testing.T, name string, body func(c *tcase)) *suitetest.T {
	h := suitetest.New(t, name, time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runBody(h, body)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not finish within 2 minutes", name)
	}
	return h
}

// bodies maps the suite's test names to their bodies (from main.go's
// list, so a test added there is run here too).
func bodies() map[string]func(c *tcase) {
	return map[string]func(c *tcase){
		"handshake": handshake, "register": register, "fdinfo": fdinfoCounts,
		"missing-storm": missingStorm, "wake-ranges": wakeRanges, "wake-populate-race": wakePopulateRace, "kernel-mode-fault": kernelModeFault, "sigbus-poison": sigbusPoison, "missing-shmem": missingShmem,
		"event-fork": eventFork, "event-fork-disabled": eventForkDisabled, "event-remap": eventRemap,
		"event-remove": eventRemove, "event-unmap": eventUnmap, "event-blocks-copy": eventBlocksCopy,
		"copy-source": copySource, "move": move, "write-protect": writeProtect, "wp-async-scan": wpAsyncScan, "minor-shmem": minorShmem,
	}
}

func TestEverySuiteTestHasABody(t *testing.T) {
	b := bodies()
	for _, tc := range tests() {
		if _, ok := b[tc.Name]; !ok {
			t.Errorf("suite test %q has no entry in bodies()", tc.Name)
		}
	}
	if len(b) != len(tests()) {
		t.Errorf("bodies() has %d entries, the suite %d tests", len(b), len(tests()))
	}
}

// TestHostBodies runs every test body on the host kernel.
func TestHostBodies(t *testing.T) {
	if _, err := uffd.Probe(); err != nil {
		t.Skipf("userfaultfd unavailable on this host: %v", err)
	}
	if f, err := uffd.Open(unix.O_CLOEXEC); errors.Is(err, unix.EPERM) {
		t.Skipf("kernel-mode userfaultfd needs privilege here: %v", err)
	} else if err == nil {
		f.Close()
	}
	for _, tc := range tests() {
		t.Run(tc.Name, func(t *testing.T) {
			h := runHost(t, tc.Name, bodies()[tc.Name])
			for k, v := range h.Metrics() {
				t.Logf("metric %s = %g", k, v)
			}
			if len(h.Errors()) > 0 {
				t.Errorf("%s failed on the host:\n%s", tc.Name, strings.Join(h.Errors(), "\n"))
			}
			if h.Skipped() != "" {
				t.Skip(h.Skipped())
			}
		})
	}
}
