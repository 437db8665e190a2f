package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/internal/gup"
	"github.com/kharness/kharness/suites/sysinfo"
)

var pageSize = os.Getpagesize()

// env is what the suite learns about the guest once.
type env struct {
	arch    string
	thpSize int    // PMD-sized THP in bytes; 0 when THP cannot be used
	thpWhy  string // why not
	cpus    []int
	// gup is the suite's one gup_test descriptor, open for the whole
	// run: closing any gup_test file drops the (global) pin set.
	gup    *gup.Dev
	gupErr error
	// cfg is /proc/config.gz (nil with cfgErr when unreadable) and boot
	// what the host told the guest (the patch sets applied): together
	// they decide whether a missing feature is a skip or a failure
	// (verdict.go).
	cfg     map[string]string
	cfgErr  error
	boot    guest.BootArgs
	bootErr error
}

// lazyEnv detects the environment on first use, from the first test's
// goroutine (so a failure is that test's failure).
type lazyEnv struct {
	once sync.Once
	e    *env
	err  error
}

func (l *lazyEnv) get() (*env, error) {
	l.once.Do(func() { l.e, l.err = detectEnv() })
	return l.e, l.err
}

func detectEnv() (*env, error) {
	e := &env{arch: runtime.GOARCH}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	for i := 0; i < 1024 && len(e.cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			e.cpus = append(e.cpus, i)
		}
	}
	e.thpSize, e.thpWhy = detectTHP()
	e.gup, e.gupErr = gup.Open()
	e.cfg, _, e.cfgErr = sysinfo.KernelConfig()
	e.boot, e.bootErr = guest.Read()
	return e, nil
}

// detectTHP reads the PMD THP size and whether anonymous THP is allowed
// (MADV_HUGEPAGE needs "always" or "madvise").
func detectTHP() (int, string) {
	const dir = "/sys/kernel/mm/transparent_hugepage"
	mode, err := os.ReadFile(dir + "/enabled")
	if err != nil {
		return 0, fmt.Sprintf("no THP in this kernel (%v)", err)
	}
	if strings.Contains(string(mode), "[never]") {
		return 0, fmt.Sprintf("THP disabled: %s/enabled is %q", dir, strings.TrimSpace(string(mode)))
	}
	raw, err := os.ReadFile(dir + "/hpage_pmd_size")
	if err != nil {
		return 0, fmt.Sprintf("THP size unknown: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || n <= pageSize {
		return 0, fmt.Sprintf("bad hpage_pmd_size %q", strings.TrimSpace(string(raw)))
	}
	return n, ""
}

// gupMissing says whether a gup_test open error means "no gup_test
// here" (see gupTestVerdict) rather than a broken one (a failure).
func gupMissing(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// hasPinned reads the HasPinned line (patches/cow) of a process's
// status; ok is false when the kernel does not have it.
func hasPinned(pid int) (v int, ok bool, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false, fmt.Errorf("status of %d: %w", pid, err)
	}
	return parseHasPinned(data)
}

func parseHasPinned(status []byte) (int, bool, error) {
	for _, line := range strings.Split(string(status), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found || k != "HasPinned" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, true, fmt.Errorf("HasPinned: %q: %w", v, err)
		}
		return n, true, nil
	}
	return 0, false, nil
}
