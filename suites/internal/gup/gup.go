// Package gup drives the kernel's get_user_pages test device,
// /sys/kernel/debug/gup_test (CONFIG_GUP_TEST, mm/gup_test.c), from the
// guest suites: long-term pins of user memory on demand
// (PIN_LONGTERM_TEST_START/READ/STOP), with slow or fast GUP, R/O or
// R/W. It also reads the kernel's FOLL_PIN accounting in /proc/vmstat,
// the oracle for pin leaks.
//
// golang.org/x/sys/unix has none of this ABI, so the argument structs are
// mirrored from mm/gup_test.h field for field and every ioctl number is
// computed from unsafe.Sizeof of its Go mirror, the way _IOW() computes
// it from sizeof in C. The numbers differ between i386 and x86_64: a
// __u64 is 4-byte aligned on i386, so struct pin_longterm_test is 20
// bytes there and 24 on x86_64 (struct gup_test 76 vs 80). The unit
// tests pin both layouts.
//
// The kernel keeps ONE long-term pin set for the whole system (a static
// page array under a global mutex): a second START anywhere fails with
// EINVAL until a STOP, and closing any gup_test file drops the pins. A
// suite must therefore keep one Dev open for its lifetime and run the
// tests that use it one at a time.
package gup

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Path is the gup_test device (debugfs must be mounted).
const Path = "/sys/kernel/debug/gup_test"

// Flags of PinStart (PIN_LONGTERM_TEST_FLAG_*).
const (
	// FlagWrite pins with FOLL_WRITE: a R/W pin. Without it the pin is
	// R/O, which for a possibly shared anonymous page must unshare it
	// first (FAULT_FLAG_UNSHARE).
	FlagWrite uint32 = 1
	// FlagFast uses pin_user_pages_fast() (lockless GUP-fast, falling
	// back to the slow path) instead of pin_user_pages() under the mmap
	// lock.
	FlagFast uint32 = 2
)

// PinArgs mirrors struct pin_longterm_test, the argument of
// PIN_LONGTERM_TEST_START; exported for callers that must issue the
// ioctl with raw system calls (a forked child).
type PinArgs struct {
	Addr  uint64
	Size  uint64
	Flags uint32
}

// Test mirrors struct gup_test, the argument of the benchmark and
// basic-test ioctls (GUP_FAST_BENCHMARK ... DUMP_USER_PAGES_TEST).
type Test struct {
	GetDeltaUsec   uint64
	PutDeltaUsec   uint64
	Addr           uint64
	Size           uint64
	NrPagesPerCall uint32
	GupFlags       uint32
	TestFlags      uint32
	WhichPages     [8]uint32
}

// Linux's generic ioctl encoding (include/uapi/asm-generic/ioctl.h).
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, typ, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | typ<<8 | nr
}

// Ioctl numbers (mm/gup_test.h) for the architecture this is built for.
var (
	GupFastBenchmark     = ioc(iocRead|iocWrite, 'g', 1, unsafe.Sizeof(Test{}))
	PinFastBenchmark     = ioc(iocRead|iocWrite, 'g', 2, unsafe.Sizeof(Test{}))
	PinLongtermBenchmark = ioc(iocRead|iocWrite, 'g', 3, unsafe.Sizeof(Test{}))
	GupBasicTest         = ioc(iocRead|iocWrite, 'g', 4, unsafe.Sizeof(Test{}))
	PinBasicTest         = ioc(iocRead|iocWrite, 'g', 5, unsafe.Sizeof(Test{}))
	DumpUserPagesTest    = ioc(iocRead|iocWrite, 'g', 6, unsafe.Sizeof(Test{}))
	PinLongtermTestStart = ioc(iocWrite, 'g', 7, unsafe.Sizeof(PinArgs{}))
	PinLongtermTestStop  = ioc(iocNone, 'g', 8, 0)
	PinLongtermTestRead  = ioc(iocWrite, 'g', 9, unsafe.Sizeof(uint64(0)))
)

// Dev is an open gup_test device.
type Dev struct {
	f *os.File
}

// Open opens the device. A kernel without CONFIG_GUP_TEST or without
// debugfs gives an error satisfying errors.Is(err, fs.ErrNotExist).
func Open() (*Dev, error) {
	f, err := os.OpenFile(Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("gup_test: %w", err)
	}
	return &Dev{f: f}, nil
}

// Close closes the device, which drops any long-term pins (of any
// process: the pin set is global).
func (d *Dev) Close() error { return d.f.Close() }

// Fd is the file descriptor, for raw use after a fork.
func (d *Dev) Fd() int { return int(d.f.Fd()) }

// ioctl takes the argument as a pointer so that it stays one (and the
// object it points to stays put) until the system call has it.
func (d *Dev) ioctl(req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// PinStart pins [addr, addr+size) of the calling process long-term
// (FOLL_PIN|FOLL_LONGTERM, plus FOLL_WRITE with FlagWrite). addr and
// size must be page-aligned. It fails with EINVAL while another pin set
// exists.
func (d *Dev) PinStart(addr uintptr, size int, flags uint32) error {
	a := PinArgs{Addr: uint64(addr), Size: uint64(size), Flags: flags}
	if err := d.ioctl(PinLongtermTestStart, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("PIN_LONGTERM_TEST_START(%#x, %d, flags %#x): %w", addr, size, flags, err)
	}
	return nil
}

// PinRead copies the content of the pinned pages, as the kernel sees
// them through the pins, into dst (which must hold all pinned pages).
func (d *Dev) PinRead(dst []byte) error {
	if len(dst) == 0 {
		return fmt.Errorf("PIN_LONGTERM_TEST_READ: empty buffer")
	}
	p := uint64(uintptr(unsafe.Pointer(&dst[0])))
	if err := d.ioctl(PinLongtermTestRead, unsafe.Pointer(&p)); err != nil {
		return fmt.Errorf("PIN_LONGTERM_TEST_READ: %w", err)
	}
	return nil
}

// PinStop unpins; without a pin set it does nothing.
func (d *Dev) PinStop() error {
	if err := d.ioctl(PinLongtermTestStop, nil); err != nil {
		return fmt.Errorf("PIN_LONGTERM_TEST_STOP: %w", err)
	}
	return nil
}
