// Command smoke proves the guest is the machine the run asked for: the
// kernel that booted is the one kharness configured, it has the CPUs and
// preemption model it should, debugfs is there, and on i386 user pages
// really come from highmem. Every later suite relies on these facts.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/suite"
	"github.com/kharness/kharness/suites/sysinfo"
)

func main() {
	suite.Main("smoke",
		suite.Test{Name: "kernel-config", Run: kernelConfig},
		suite.Test{Name: "arch", Run: arch},
		suite.Test{Name: "cpus", Run: cpus},
		suite.Test{Name: "preempt", Run: preempt},
		suite.Test{Name: "debugfs", Run: debugfs},
		suite.Test{Name: "highmem", Run: highmem, Arches: []string{"386"}},
		suite.Test{Name: "no-highmem", Run: noHighmem, Arches: []string{"amd64"}},
	)
}

// bootArgs is what the host told the guest (guest.Read), or fails t.
func bootArgs(t *suite.T) guest.BootArgs {
	b, err := guest.Read()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

// kernelConfig compares the running kernel's embedded .config with the
// hash of the .config the host built, so a stale or wrong image shows.
func kernelConfig(t *suite.T) {
	want := bootArgs(t).ConfigSHA
	_, raw, err := sysinfo.KernelConfig()
	if err != nil {
		t.Fatalf("%v", err)
	}
	sum := sha256.Sum256(raw)
	got := hex.EncodeToString(sum[:])
	if want == "" {
		t.Fatalf("the kernel command line carries no hash of the host's .config (guest.BootArgs.ConfigSHA is empty)")
	}
	if !strings.HasPrefix(got, want) {
		t.Errorf("running kernel's /proc/config.gz has sha256 %s, host built %s", got, want)
	}
}

func arch(t *suite.T) {
	_, _, machine := sysinfo.Uname()
	want := map[string][]string{"386": {"i386", "i486", "i586", "i686"}, "amd64": {"x86_64"}}[runtime.GOARCH]
	for _, w := range want {
		if machine == w {
			return
		}
	}
	t.Errorf("uname machine %q does not match a %s user space (want one of %v)", machine, runtime.GOARCH, want)
}

func cpus(t *suite.T) {
	want := bootArgs(t).CPUs
	if want == 0 {
		t.Fatalf("the kernel command line carries no CPU count (guest.BootArgs.CPUs is 0)")
	}
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Fatalf("%v", err)
	}
	online := strings.TrimSpace(string(data))
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	t.Metric("cpus_online", float64(set.Count()))
	if set.Count() != want {
		t.Errorf("%d CPUs usable (online: %s), want %d", set.Count(), online, want)
	}
	if runtime.NumCPU() != want {
		t.Errorf("Go sees %d CPUs, want %d", runtime.NumCPU(), want)
	}
}

// preempt checks that the model in the kernel's config, the one in its
// version string and the one the host configured agree.
func preempt(t *suite.T) {
	cfg, _, err := sysinfo.KernelConfig()
	if err != nil {
		t.Fatalf("%v", err)
	}
	model := guest.PreemptModel(cfg)
	switch want := bootArgs(t).Preempt; {
	case want == "":
		t.Errorf("the kernel command line carries no preemption model (guest.BootArgs.Preempt is empty); the kernel config says %q", model)
	case want != model:
		t.Errorf("kernel config says preemption model %q, host configured %q", model, want)
	}
	_, version, _ := sysinfo.Uname()
	hasPreempt := strings.Contains(version, " PREEMPT")
	if (model == "full" || model == "rt") != hasPreempt {
		t.Errorf("uname -v %q disagrees with preemption model %q", version, model)
	}
	t.Logf("preemption model %s (%s)", model, version)
}

func debugfs(t *suite.T) {
	if !sysinfo.Mounted("/sys/kernel/debug", "debugfs") {
		t.Fatalf("debugfs is not mounted at /sys/kernel/debug")
	}
	ents, err := os.ReadDir("/sys/kernel/debug")
	if err != nil {
		t.Fatalf("read debugfs: %v", err)
	}
	if len(ents) == 0 {
		t.Errorf("debugfs is mounted but empty")
	}
}

// highmem checks that HighTotal is non-zero and that anonymous user pages
// are really placed in ZONE_HIGHMEM, read back through pagemap.
func highmem(t *suite.T) {
	mi, err := sysinfo.MemInfo()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Metric("high_total_kb", float64(mi["HighTotal"]))
	if mi["HighTotal"] == 0 {
		t.Fatalf("/proc/meminfo HighTotal is 0: no highmem (is the guest given > 896 MiB and CONFIG_HIGHMEM set?)")
	}
	zones, err := sysinfo.Zones()
	if err != nil {
		t.Fatalf("%v", err)
	}
	hz, ok := zones["HighMem"]
	if !ok || hz.Present == 0 {
		t.Fatalf("no populated HighMem zone in /proc/zoneinfo")
	}
	const size = 16 << 20
	buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(buf)
	for i := 0; i < size; i += os.Getpagesize() {
		buf[i] = byte(i >> 12)
	}
	pfns, err := sysinfo.PFNs(sysinfo.Addr(buf), size)
	if err != nil {
		t.Fatalf("%v", err)
	}
	high, present := 0, 0
	for _, p := range pfns {
		if p == 0 {
			continue
		}
		present++
		if hz.Contains(p) {
			high++
		}
	}
	t.Metric("pages_present", float64(present))
	t.Metric("pages_highmem", float64(high))
	if present == 0 {
		t.Fatalf("pagemap shows no present page: PFNs hidden (not root?)")
	}
	if high == 0 {
		t.Errorf("none of %d user pages is in ZONE_HIGHMEM (pfn %d..%d)", present, hz.StartPFN, hz.StartPFN+hz.Spanned)
	}
}

// noHighmem is the x86_64 counterpart: a 64-bit kernel has no highmem.
func noHighmem(t *suite.T) {
	mi, err := sysinfo.MemInfo()
	if err != nil {
		t.Fatalf("%v", err)
	}
	if mi["HighTotal"] != 0 {
		t.Errorf("x86_64 kernel reports HighTotal %d kB", mi["HighTotal"])
	}
}
