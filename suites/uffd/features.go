package main

import (
	"fmt"
	"strings"

	"github.com/kharness/kharness/suites/internal/uffd"
)

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

// expectedFeatures is what UFFDIO_API of a 6.12 kernel built with cfg
// reports (userfaultfd_api, fs/userfaultfd.c): every feature, minus the
// minor modes without HAVE_ARCH_USERFAULTFD_MINOR, minus write-protect
// without HAVE_ARCH_USERFAULTFD_WP, minus the PTE-marker based WP
// features without PTE_MARKER_UFFD_WP. Both HAVE_ARCH options are
// "if X86_64", so an i386 kernel reports 0x149fe.
func expectedFeatures(cfg map[string]string) uint64 {
	f := allFeatures
	if cfg["CONFIG_HAVE_ARCH_USERFAULTFD_MINOR"] != "y" {
		f &^= uffd.FeatureMinorHugetlbfs | uffd.FeatureMinorShmem
	}
	if cfg["CONFIG_HAVE_ARCH_USERFAULTFD_WP"] != "y" {
		f &^= uffd.FeaturePagefaultFlagWP
	}
	if cfg["CONFIG_PTE_MARKER_UFFD_WP"] != "y" {
		f &^= uffd.FeatureWPHugetlbfsShmem | uffd.FeatureWPUnpopulated | uffd.FeatureWPAsync
	}
	return f
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
