package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/internal/verdict"
	"github.com/kharness/kharness/suites/sysinfo"
)

// env is what the suite learns about the guest once: architecture, CPUs,
// kernel configuration, ZONE_HIGHMEM, and how to reach the driver.
type env struct {
	expect
	arch    string
	cpus    []int
	cfg     map[string]string // nil if /proc/config.gz is unreadable
	cfgErr  error
	boot    guest.BootArgs // what the host told the guest: the patch sets applied
	bootErr error
	preempt bool // fully preemptible kernel: SPIN sections must get preempted
	// newDev opens the driver; readStats reads its stats file (fakes in
	// host tests).
	newDev    func() (kmtDev, error)
	readStats func() (map[string]int64, error)
}

func detectEnv() (*env, error) {
	e := &env{arch: runtime.GOARCH,
		newDev:    func() (kmtDev, error) { return openKmt() },
		readStats: readStats}
	var err error
	if e.cpus, err = usableCPUs(); err != nil {
		return nil, err
	}
	e.cfg, _, e.cfgErr = sysinfo.KernelConfig()
	e.boot, e.bootErr = guest.Read()
	zones, err := sysinfo.Zones()
	if err != nil {
		return nil, fmt.Errorf("zoneinfo: %w", err)
	}
	if z, ok := zones["HighMem"]; ok && z.Spanned > 0 {
		e.high, e.hasHigh = z, true
	}
	if e.cfg != nil {
		e.kmapReal = e.arch == "386" && e.cfg["CONFIG_HIGHMEM"] == "y"
		e.forceMap = e.cfg["CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP"] == "y"
		e.preempt = e.cfg["CONFIG_PREEMPT"] == "y" || e.cfg["CONFIG_PREEMPT_RT"] == "y"
	} else {
		e.kmapReal = e.arch == "386" && e.hasHigh
	}
	return e, nil
}

// testSeed derives a per-test seed from the run's, so that tests do not
// all draw the same numbers yet each is reproducible from the seed printed
// on failure.
func testSeed(seed int64, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return seed ^ int64(h.Sum64())
}

// patchSetKmapLocal is the patch set that adds the driver.
const patchSetKmapLocal = "kmap-local"

// dev opens the driver for the test goroutine and decides what its
// absence means (driverVerdict).
func (c *tcase) dev() kmtDev {
	d, err := c.env.newDev()
	if err == nil {
		return d
	}
	if errors.Is(err, fs.ErrNotExist) {
		driverVerdict(c.env, sysinfo.Mounted("/sys/kernel/debug", "debugfs")).Apply(c)
	}
	c.Fatalf("open %s: %v", kmtRunPath, err)
	return nil
}

// driverVerdict decides what a missing driver means: a skip only on a
// kernel without patch set kmap-local (per its command line) that is not
// built with CONFIG_TEST_KMAP_LOCAL=y either; otherwise the driver did
// not register, or cannot be shown to be absent for a reason, and the
// test fails.
func driverVerdict(e *env, debugfs bool) verdict.Verdict {
	what := fmt.Sprintf("%s missing (debugfs mounted at /sys/kernel/debug: %v)", kmtRunPath, debugfs)
	v := verdict.PatchSet(patchSetKmapLocal, what, e.boot, e.bootErr)
	if v.Skip {
		v = verdict.Config(kmtConfig, v.Why, e.cfg, e.cfgErr)
	}
	return v
}

// stats reads the driver's counters at the start of a driver test.
// strict (the first driver test) also fails when errors were counted
// before the suite ran any request.
func (c *tcase) stats(strict bool) map[string]int64 {
	m, err := c.env.readStats()
	c.maxDepth = depthLimits(m)
	if err != nil {
		c.errorAll("read %s: %v", kmtStatsPath, err)
		return nil
	}
	if v, ok := m["force_map"]; ok {
		c.env.forceMap = v == 1 // the driver knows best
	}
	if n, names := statErrors(m); n > 0 {
		if strict {
			c.errorAll("%s reports errors before this suite's first request: %s", kmtStatsPath, strings.Join(names, " "))
		} else {
			c.Logf("%s already reports errors from earlier tests: %s", kmtStatsPath, strings.Join(names, " "))
		}
	}
	return m
}

// depthCap is the deepest request the driver accepts for op with flags
// (see depthLimits); lowmem pages that are not fixmapped take no slot.
func (c *tcase) depthCap(op, flags uint32) int {
	if flags&kmtFlagLowmem != 0 && !(c.env.kmapReal && c.env.forceMap) {
		return kmtMaxDepth
	}
	if d, ok := c.maxDepth[op]; ok {
		return max(d, 1)
	}
	return kmtMaxDepth
}

// randDepth picks a depth the driver accepts for op with flags.
func (c *tcase) randDepth(rng *rand.Rand, op, flags uint32) int {
	return 1 + rng.IntN(c.depthCap(op, flags))
}

// checkStats fails the test when the driver's error counters rose during
// it, or when its run counters rose by less than the requests the test
// completed (statFloors), and records every counter's change as a metric
// kmt_<name>.
func (c *tcase) checkStats(before map[string]int64) {
	if before == nil {
		return
	}
	after, err := c.env.readStats()
	if err != nil {
		c.errorAll("read %s: %v", kmtStatsPath, err)
		return
	}
	var rose []string
	for k, v := range after {
		if !isCounterStat(k) {
			continue
		}
		d := v - before[k]
		c.Metric("kmt_"+k, float64(d))
		if isErrorStat(k) && d > 0 {
			rose = append(rose, fmt.Sprintf("%s %d->%d", k, before[k], v))
		}
	}
	sort.Strings(rose)
	if len(rose) > 0 {
		c.errorAll("%s reports errors during this test: %s", kmtStatsPath, strings.Join(rose, ", "))
	}
	done := map[string]int64{}
	for _, op := range allOps {
		done[opName(op)] = c.done.load(opName(op))
	}
	for _, e := range statFloors(before, after, done) {
		c.errorAll("%s", e)
	}
}

// opStats are the driver's per-op run counters.
var opStats = map[uint32]string{opNest: "nests", opSleep: "sleeps", opSpin: "spins",
	opCopyToUser: "copies_to_user", opCopyFromUser: "copies_from_user", opIRQ: "irq_runs"}

// statFloors compares the driver's run counters (before and after the
// test) with the requests the test completed, per op name (done): the
// driver counts every request it ran, so less means the counters (and
// the error counters beside them) do not cover the test's requests. A
// counter the driver does not show is not compared.
func statFloors(before, after map[string]int64, done map[string]int64) []string {
	var errs []string
	var total int64
	for _, op := range allOps {
		n := done[opName(op)]
		total += n
		st := opStats[op]
		if v, ok := after[st]; ok && v-before[st] < n {
			errs = append(errs, fmt.Sprintf("%s rose by %d during the test, which completed %d %s requests", st, v-before[st], n, opName(op)))
		}
	}
	if v, ok := after["runs"]; ok && v-before["runs"] < total {
		errs = append(errs, fmt.Sprintf("runs rose by %d during the test, which completed %d requests: %s does not count them", v-before["runs"], total, kmtStatsPath))
	}
	return errs
}

// highmemPages counts the present pages of [addr, addr+n) and how many of
// them are in ZONE_HIGHMEM.
func (e *env) highmemPages(addr uintptr, n int) (high, present int, err error) {
	pfns, err := sysinfo.PFNs(addr, n)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range pfns {
		if p == 0 {
			continue
		}
		present++
		if e.hasHigh && e.high.Contains(p) {
			high++
		}
	}
	return high, present, nil
}

// highmem accumulates the non-vacuity evidence of a test that works on
// user memory: on i386 the pages involved must really be highmem pages,
// or the kmap_local paths the test means to drive were never taken.
type highmem struct {
	high, present int
	err           error
}

// sample adds the pages of b that are present now.
func (h *highmem) sample(e *env, b []byte) {
	hi, pr, err := e.highmemPages(addrOf(b), len(b))
	if err != nil {
		h.err = err
		return
	}
	h.high += hi
	h.present += pr
}

// report records highmem_pages and, on i386, fails the test if none of
// the sampled pages was a highmem page (on x86_64, which has no
// ZONE_HIGHMEM, both metrics are measurements).
func (h *highmem) report(c *tcase, what string) {
	c.Metric("highmem_pages", float64(h.high))
	c.Metric("pages_sampled", float64(h.present))
	if c.env.arch != "386" {
		return
	}
	switch {
	case h.err != nil:
		c.errorAll("non-vacuity: cannot read PFNs of %s: %v", what, h.err)
	case !c.env.hasHigh:
		c.errorAll("non-vacuity: no ZONE_HIGHMEM on this i386 guest (RAM below ~896 MiB or CONFIG_HIGHMEM off): %s never needed a kmap", what)
	case h.present == 0:
		c.errorAll("non-vacuity: pagemap shows no present page of %s (PFNs hidden: not root?)", what)
	case h.high == 0:
		c.errorAll("non-vacuity: none of %d sampled pages of %s is in ZONE_HIGHMEM (pfn %d..%d): the kmap_local paths were not exercised",
			h.present, what, c.env.high.StartPFN, c.env.high.StartPFN+c.env.high.Spanned)
	}
}

// tmpfsDir returns a directory on tmpfs for the test's files: /tmp in the
// guest (the agent mounts it), /dev/shm elsewhere, or a fresh mount.
func (c *tcase) tmpfsDir() string {
	for _, d := range []string{"/tmp", "/dev/shm"} {
		if sysinfo.Mounted(d, "tmpfs") {
			dir, err := os.MkdirTemp(d, "kmt-")
			if err == nil {
				return dir
			}
		}
	}
	verdict.Config("CONFIG_TMPFS", "no tmpfs mounted at /tmp or /dev/shm", c.env.cfg, c.env.cfgErr).Apply(c)
	return ""
}
