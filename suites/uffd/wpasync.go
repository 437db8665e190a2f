package main

import (
	"fmt"
	"os"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// pmScanArg is struct pm_scan_arg (include/uapi/linux/fs.h).
type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask       uint64
	ReturnMask                                              uint64
}

// pageRegion is struct page_region.
type pageRegion struct{ Start, End, Categories uint64 }

// PAGEMAP_SCAN flags and categories.
const (
	pmScanWPMatching = 1 << 0
	pageIsWritten    = 1 << 1
)

var ioctlPagemapScan = uffd.IOC(3, 'f', 16, unsafe.Sizeof(pmScanArg{}))

// wpAsyncScan checks asynchronous write-protect, the dirty tracking of
// UFFD_FEATURE_WP_ASYNC with /proc/<pid>/pagemap's PAGEMAP_SCAN (x86_64):
// on a range registered WP and write-protected, with WP_UNPOPULATED so
// that pages never touched are protected too, a write never blocks and
// never queues a message: the kernel removes the protection itself, and
// PAGEMAP_SCAN reports exactly the pages written since (PAGE_IS_WRITTEN)
// — populated or not before. A scan with PM_SCAN_WP_MATCHING protects
// the pages it reports again, so the next scan finds none until the next
// write.
func wpAsyncScan(c *tcase) {
	f := c.newFD(0, uffd.FeatureWPAsync|uffd.FeatureWPUnpopulated, 0)
	const pages = 16
	buf := c.anon(pages)
	for p := 0; p < pages/2; p++ { // the second half stays unpopulated
		*buf.word(p * pageSize) = uint32(p)
	}
	_, err := f.Register(buf.addr(), uintptr(buf.n), uffd.ModeWP)
	c.check(err, "register WP")
	c.check(f.WriteProtect(buf.addr(), uintptr(buf.n), uffd.WriteProtectModeWP), "UFFDIO_WRITEPROTECT of the range")

	pm, err := os.Open("/proc/self/pagemap")
	c.check(err, "open pagemap")
	c.onClose(pm.Close)
	scan := func(flags uint64) []int {
		vec := make([]pageRegion, pages)
		arg := pmScanArg{Size: uint64(unsafe.Sizeof(pmScanArg{})), Flags: flags,
			Start: uint64(buf.addr()), End: uint64(buf.addr()) + uint64(buf.n),
			Vec: uint64(uintptr(unsafe.Pointer(&vec[0]))), VecLen: uint64(len(vec)),
			CategoryMask: pageIsWritten, ReturnMask: pageIsWritten}
		n, _, e := unix.Syscall(unix.SYS_IOCTL, pm.Fd(), ioctlPagemapScan, uintptr(unsafe.Pointer(&arg)))
		if e != 0 {
			c.Fatalf("PAGEMAP_SCAN(WRITTEN, flags %#x): %v", flags, e)
		}
		var got []int
		for _, r := range vec[:n] {
			for a := r.Start; a < r.End; a += uint64(pageSize) {
				got = append(got, int(a-uint64(buf.addr()))/pageSize)
			}
		}
		return got
	}
	expect := func(what string, got, want []int) {
		if !slices.Equal(got, want) {
			c.Errorf("%s: PAGEMAP_SCAN reports pages %v as written, want %v", what, got, want)
		}
	}

	expect("right after UFFDIO_WRITEPROTECT", scan(0), nil)
	written := []int{1, 5, 6, 11, 14} // populated and unpopulated ones
	for _, p := range written {
		*buf.word(p*pageSize + 8) = 0xa5a5a5a5
	}
	c.nothingQueued(f, "asynchronous write-protect resolves faults without messages")
	expect("after writes to pages "+fmt.Sprint(written), scan(0), written)
	expect("the scan that protects them again (PM_SCAN_WP_MATCHING)", scan(pmScanWPMatching), written)
	expect("after PM_SCAN_WP_MATCHING", scan(0), nil)
	*buf.word(5*pageSize + 16) = 0x5a5a5a5a
	expect("after a write to page 5", scan(0), []int{5})
	for _, p := range written {
		if got := *buf.word(p*pageSize + 8); got != 0xa5a5a5a5 {
			c.Errorf("page %d holds %#x at byte 8, want the write 0xa5a5a5a5", p, got)
		}
	}
}
