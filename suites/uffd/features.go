package main

import (
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/kharness/kharness/suites/internal/uffd"
	"github.com/kharness/kharness/suites/internal/verdict"
	"github.com/kharness/kharness/suites/sysinfo"
)

// kernelConfig is /proc/config.gz, read once.
var kernelConfig = sync.OnceValues(func() (map[string]string, error) {
	cfg, _, err := sysinfo.KernelConfig()
	return cfg, err
})

// allFeatures is UFFD_API_FEATURES of Linux 6.12: bits 0..16.
const allFeatures uint64 = 1<<17 - 1

// featureInitialized is UFFD_FEATURE_INITIALIZED (fs/userfaultfd.c): the
// kernel's own "handshake done" bit in ctx->features, shown by fdinfo and
// never accepted from user space.
const featureInitialized uint64 = 1 << 31

var featureBits = []struct {
	bit  uint64
	name string
}{
	{uffd.FeaturePagefaultFlagWP, "PAGEFAULT_FLAG_WP"},
	{uffd.FeatureEventFork, "EVENT_FORK"},
	{uffd.FeatureEventRemap, "EVENT_REMAP"},
	{uffd.FeatureEventRemove, "EVENT_REMOVE"},
	{uffd.FeatureMissingHugetlbfs, "MISSING_HUGETLBFS"},
	{uffd.FeatureMissingShmem, "MISSING_SHMEM"},
	{uffd.FeatureEventUnmap, "EVENT_UNMAP"},
	{uffd.FeatureSigbus, "SIGBUS"},
	{uffd.FeatureThreadID, "THREAD_ID"},
	{uffd.FeatureMinorHugetlbfs, "MINOR_HUGETLBFS"},
	{uffd.FeatureMinorShmem, "MINOR_SHMEM"},
	{uffd.FeatureExactAddress, "EXACT_ADDRESS"},
	{uffd.FeatureWPHugetlbfsShmem, "WP_HUGETLBFS_SHMEM"},
	{uffd.FeatureWPUnpopulated, "WP_UNPOPULATED"},
	{uffd.FeaturePoison, "POISON"},
	{uffd.FeatureWPAsync, "WP_ASYNC"},
	{uffd.FeatureMove, "MOVE"},
}

// featureNames names the bits of f ("EVENT_FORK|MOVE"); unknown bits
// are shown in hex.
func featureNames(f uint64) string {
	var s []string
	for _, b := range featureBits {
		if f&b.bit != 0 {
			s = append(s, b.name)
			f &^= b.bit
		}
	}
	if f != 0 {
		s = append(s, fmt.Sprintf("%#x", f))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "|")
}

// featureGates are the options without which 6.12's UFFDIO_API leaves
// features out (userfaultfd_api, fs/userfaultfd.c). On x86 all three are
// 64-bit only: HAVE_ARCH_USERFAULTFD_WP and _MINOR are selected "if
// X86_64", and PTE_MARKER_UFFD_WP depends on HAVE_ARCH_USERFAULTFD_WP.
var featureGates = []struct {
	opt  string
	bits uint64
}{
	{"CONFIG_HAVE_ARCH_USERFAULTFD_MINOR", uffd.FeatureMinorHugetlbfs | uffd.FeatureMinorShmem},
	{"CONFIG_HAVE_ARCH_USERFAULTFD_WP", uffd.FeaturePagefaultFlagWP},
	{"CONFIG_PTE_MARKER_UFFD_WP", uffd.FeatureWPHugetlbfsShmem | uffd.FeatureWPUnpopulated | uffd.FeatureWPAsync},
}

// expectedFeatures is what UFFDIO_API of a 6.12 kernel built with cfg
// reports: every feature, minus those of each gate whose option is not
// set (featureGates). An i386 kernel therefore reports 0x149fe.
func expectedFeatures(cfg map[string]string) uint64 {
	f := allFeatures
	for _, g := range featureGates {
		if cfg[g.opt] != "y" {
			f &^= g.bits
		}
	}
	return f
}

// gates explains, for the features in bits, what decides whether a
// kernel built with cfg offers them.
func gates(bits uint64, cfg map[string]string) string {
	var s []string
	for _, g := range featureGates {
		if bits&g.bits != 0 {
			s = append(s, fmt.Sprintf("%s need %s (%s in /proc/config.gz; x86_64-only in 6.12)",
				featureNames(bits&g.bits), g.opt, verdict.Option(cfg, g.opt)))
			bits &^= g.bits
		}
	}
	if bits != 0 {
		s = append(s, featureNames(bits)+" are offered by every 6.12 kernel with CONFIG_USERFAULTFD")
	}
	return strings.Join(s, "; ")
}

// featureVerdict decides what a test that needs features the kernel does
// not offer (miss; it offers have) does: it skips only when the kernel's
// configuration leaves them out (on i386, write-protect and minor modes);
// a feature the configuration implies is a failure.
func featureVerdict(miss, have uint64, cfg map[string]string, cfgErr error) verdict.Verdict {
	desc := fmt.Sprintf("the %s kernel does not offer userfaultfd features %#x (%s); it offers %#x (%s)",
		runtime.GOARCH, miss, featureNames(miss), have, featureNames(have))
	if cfgErr != nil {
		return verdict.Failf("%s, and whether its configuration leaves them out cannot be told: %v", desc, cfgErr)
	}
	if implied := miss & expectedFeatures(cfg); implied != 0 {
		return verdict.Failf("%s, although its configuration implies %s: %s", desc, featureNames(implied), gates(implied, cfg))
	}
	return verdict.Skipf("%s: %s", desc, gates(miss, cfg))
}

// archOnlyFeatures are the features an i386 kernel can never offer
// (write-protect and minor modes, HAVE_ARCH_USERFAULTFD_{WP,MINOR} are
// x86_64-only).
const archOnlyFeatures = uffd.FeaturePagefaultFlagWP | uffd.FeatureMinorHugetlbfs | uffd.FeatureMinorShmem |
	uffd.FeatureWPHugetlbfsShmem | uffd.FeatureWPUnpopulated | uffd.FeatureWPAsync

// Ioctl bits (1 << _UFFDIO_*) of the API and REGISTER answers.
const (
	ioctlRegister     uint64 = 1 << 0x00
	ioctlUnregister   uint64 = 1 << 0x01
	ioctlWake         uint64 = 1 << 0x02
	ioctlCopy         uint64 = 1 << 0x03
	ioctlZeropage     uint64 = 1 << 0x04
	ioctlMove         uint64 = 1 << 0x05
	ioctlWriteProtect uint64 = 1 << 0x06
	ioctlContinue     uint64 = 1 << 0x07
	ioctlPoison       uint64 = 1 << 0x08
	ioctlAPI          uint64 = 1 << 0x3F

	// apiIoctls is UFFD_API_IOCTLS, the UFFDIO_API answer.
	apiIoctls = ioctlRegister | ioctlUnregister | ioctlAPI
	// rangeIoctlsAll is UFFD_API_RANGE_IOCTLS.
	rangeIoctlsAll = ioctlWake | ioctlCopy | ioctlZeropage | ioctlMove | ioctlWriteProtect | ioctlContinue | ioctlPoison
)

// rangeIoctls is what UFFDIO_REGISTER answers for a non-hugetlb range
// registered in mode: UFFD_API_RANGE_IOCTLS without WRITEPROTECT unless
// the mode has WP and without CONTINUE unless it has MINOR.
func rangeIoctls(mode uint64) uint64 {
	r := rangeIoctlsAll
	if mode&uffd.ModeWP == 0 {
		r &^= ioctlWriteProtect
	}
	if mode&uffd.ModeMinor == 0 {
		r &^= ioctlContinue
	}
	return r
}
