// Package uffd is a small userfaultfd(2) library for the guest suites.
//
// golang.org/x/sys/unix has the system call number but none of the
// userfaultfd ABI, so the constants and argument structs are mirrored here
// from include/uapi/linux/userfaultfd.h (Linux 6.12) field for field, and
// every ioctl number is computed from unsafe.Sizeof of its Go mirror, the
// way _IOWR() computes it from sizeof in C. The numbers happen to be the
// same on i386 and x86_64 (every __u64 sits at an 8-byte offset); the unit
// tests pin both the sizes and the numbers so a layout slip shows on the
// host before it hangs a guest.
//
// Every call goes through unix.Syscall, never RawSyscall: UFFDIO_COPY and
// friends can block on page faults of their source, and a goroutine
// blocked in a raw system call holds its P and cannot be stopped by the
// garbage collector, which deadlocks the fault handlers it is waiting for.
package uffd

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// API is UFFD_API, the only API version the kernel knows.
const API = 0xAA

// Flags for Open besides unix.O_CLOEXEC and unix.O_NONBLOCK.
const (
	// UserModeOnly (UFFD_USER_MODE_ONLY) makes the descriptor handle only
	// faults taken in user mode; a kernel access (copy_to_user inside a
	// read(), say) to a missing page then fails with EFAULT instead of
	// blocking. Unprivileged callers may always use it.
	UserModeOnly = 1
)

// Features negotiated with API (UFFD_FEATURE_*).
const (
	FeaturePagefaultFlagWP  uint64 = 1 << 0
	FeatureEventFork        uint64 = 1 << 1
	FeatureEventRemap       uint64 = 1 << 2
	FeatureEventRemove      uint64 = 1 << 3
	FeatureMissingHugetlbfs uint64 = 1 << 4
	FeatureMissingShmem     uint64 = 1 << 5
	FeatureEventUnmap       uint64 = 1 << 6
	FeatureSigbus           uint64 = 1 << 7
	FeatureThreadID         uint64 = 1 << 8
	FeatureMinorHugetlbfs   uint64 = 1 << 9
	FeatureMinorShmem       uint64 = 1 << 10
	FeatureExactAddress     uint64 = 1 << 11
	FeatureWPHugetlbfsShmem uint64 = 1 << 12
	FeatureWPUnpopulated    uint64 = 1 << 13
	FeaturePoison           uint64 = 1 << 14
	FeatureWPAsync          uint64 = 1 << 15
	FeatureMove             uint64 = 1 << 16
)

// Register modes (UFFDIO_REGISTER_MODE_*). WP and MINOR exist only on
// x86_64 kernels (HAVE_ARCH_USERFAULTFD_WP/MINOR are "if X86_64").
const (
	ModeMissing uint64 = 1 << 0
	ModeWP      uint64 = 1 << 1
	ModeMinor   uint64 = 1 << 2
)

// Mode bits of the resolving ioctls.
const (
	CopyModeDontWake         uint64 = 1 << 0
	CopyModeWP               uint64 = 1 << 1
	ZeropageModeDontWake     uint64 = 1 << 0
	WriteProtectModeWP       uint64 = 1 << 0
	WriteProtectModeDontWake uint64 = 1 << 1
	ContinueModeDontWake     uint64 = 1 << 0
	ContinueModeWP           uint64 = 1 << 1
	PoisonModeDontWake       uint64 = 1 << 0
	MoveModeDontWake         uint64 = 1 << 0
	MoveModeAllowSrcHoles    uint64 = 1 << 1
)

// Range is struct uffdio_range.
type Range struct {
	Start, Len uint64
}

// APIArg is struct uffdio_api.
type APIArg struct {
	API, Features, Ioctls uint64
}

// RegisterArg is struct uffdio_register.
type RegisterArg struct {
	Range  Range
	Mode   uint64
	Ioctls uint64 // out: the ioctls valid on the range
}

// CopyArg is struct uffdio_copy.
type CopyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64 // out: bytes copied, or -errno
}

// ZeropageArg is struct uffdio_zeropage.
type ZeropageArg struct {
	Range    Range
	Mode     uint64
	Zeropage int64 // out
}

// MoveArg is struct uffdio_move.
type MoveArg struct {
	Dst, Src, Len, Mode uint64
	Move                int64 // out
}

// WriteProtectArg is struct uffdio_writeprotect.
type WriteProtectArg struct {
	Range Range
	Mode  uint64
}

// ContinueArg is struct uffdio_continue.
type ContinueArg struct {
	Range  Range
	Mode   uint64
	Mapped int64 // out
}

// PoisonArg is struct uffdio_poison.
type PoisonArg struct {
	Range   Range
	Mode    uint64
	Updated int64 // out
}

// _IOC encoding (include/uapi/asm-generic/ioctl.h, used by x86).
const (
	iocWrite     = 1
	iocRead      = 2
	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30
	ioctlType    = 0xAA // UFFDIO
)

// IOC is the kernel's _IOC(dir, type, nr, size); dir is 1 (write), 2
// (read) or 3. Exported so that suites with their own ioctls compute them
// the same way.
func IOC(dir, typ, nr, size uintptr) uintptr {
	return dir<<iocDirShift | size<<iocSizeShift | typ<<iocTypeShift | nr<<iocNRShift
}

// Ioctl request numbers, computed like _IOWR/_IOR from the Go mirrors.
const (
	IoctlAPI          = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(APIArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x3F
	IoctlRegister     = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(RegisterArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x00
	IoctlUnregister   = iocRead<<iocDirShift | uintptr(unsafe.Sizeof(Range{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x01
	IoctlWake         = iocRead<<iocDirShift | uintptr(unsafe.Sizeof(Range{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x02
	IoctlCopy         = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(CopyArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x03
	IoctlZeropage     = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(ZeropageArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x04
	IoctlMove         = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(MoveArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x05
	IoctlWriteProtect = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(WriteProtectArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x06
	IoctlContinue     = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(ContinueArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x07
	IoctlPoison       = (iocRead|iocWrite)<<iocDirShift | uintptr(unsafe.Sizeof(PoisonArg{}))<<iocSizeShift | ioctlType<<iocTypeShift | 0x08
	// IoctlNew is USERFAULTFD_IOC_NEW = _IO(0xAA, 0x00), on /dev/userfaultfd.
	IoctlNew = ioctlType<<iocTypeShift | 0x00
)

// DevicePath is the misc device that hands out userfaultfds (5.11+).
const DevicePath = "/dev/userfaultfd"

// OpError is a failed userfaultfd operation and what it was applied to.
// Unwrap gives the errno, so errors.Is(err, unix.EEXIST) works.
type OpError struct {
	Op   string // "userfaultfd", "UFFDIO_COPY", "read", ...
	Addr uint64 // start of the range, if any
	Len  uint64 // length of the range, if any
	Done int64  // bytes the kernel reported done before failing (COPY, ZEROPAGE, MOVE, ...)
	Err  error
}

func (e *OpError) Error() string {
	s := "uffd: " + e.Op
	if e.Len != 0 || e.Addr != 0 {
		s += fmt.Sprintf(" [%#x+%#x]", e.Addr, e.Len)
	}
	if e.Done > 0 {
		s += fmt.Sprintf(" (%d bytes done)", e.Done)
	}
	return s + ": " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// FD is an open userfaultfd.
type FD struct {
	fd        int
	flags     int
	features  uint64 // enabled (asked for)
	supported uint64 // reported by the kernel
	ioctls    uint64
	closeOnce sync.Once
	closeErr  error
}

// Open creates a userfaultfd with flags (O_CLOEXEC, O_NONBLOCK,
// UserModeOnly). When the system call is refused with EPERM (no
// CAP_SYS_PTRACE and vm.unprivileged_userfaultfd=0) it falls back to
// /dev/userfaultfd, whose access is governed by file permissions. The
// descriptor is not usable until API has been called.
func Open(flags int) (*FD, error) {
	r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if e == 0 {
		return &FD{fd: int(r), flags: flags}, nil
	}
	err := &OpError{Op: "userfaultfd", Err: e}
	if e == unix.EPERM {
		if f, derr := OpenDevice(flags); derr == nil {
			return f, nil
		}
		err.Op = "userfaultfd (needs CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or UserModeOnly; " + DevicePath + " refused too)"
	}
	return nil, err
}

// OpenDevice creates a userfaultfd through /dev/userfaultfd.
func OpenDevice(flags int) (*FD, error) {
	dev, err := os.OpenFile(DevicePath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &OpError{Op: "open " + DevicePath, Err: err}
	}
	defer dev.Close()
	r, _, e := unix.Syscall(unix.SYS_IOCTL, dev.Fd(), IoctlNew, uintptr(flags))
	if e != 0 {
		return nil, &OpError{Op: "USERFAULTFD_IOC_NEW", Err: e}
	}
	return &FD{fd: int(r), flags: flags}, nil
}

// Adopt wraps a userfaultfd the kernel installed in our file table
// rather than one we opened: the descriptor of a FORK event (Msg.UFD),
// which serves the child's faults. The kernel created its context from
// the parent's, already handshaken with the parent's features and with
// the parent's O_CLOEXEC/O_NONBLOCK flags, so it must not (and cannot:
// EINVAL) be handshaken again; pass the parent's Flags and Features.
func Adopt(fd, flags int, features uint64) *FD {
	return &FD{fd: fd, flags: flags, features: features}
}

// Probe reports the features the running kernel supports: a throw-away
// descriptor is handshaken with no features, which returns them all.
func Probe() (uint64, error) {
	f, err := Open(unix.O_CLOEXEC | UserModeOnly)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	a, err := f.API(0)
	if err != nil {
		return 0, err
	}
	return a.Features, nil
}

// New opens a userfaultfd and completes the handshake in one go. It asks
// for every required feature (failing, with the missing bits named, when
// the kernel lacks one) and for those optional features the kernel has.
func New(flags int, required, optional uint64) (*FD, error) {
	want := required
	if optional != 0 {
		have, err := Probe()
		if err != nil {
			return nil, err
		}
		want |= optional & have
	}
	f, err := Open(flags)
	if err != nil {
		return nil, err
	}
	if _, err := f.API(want); err != nil {
		f.Close()
		if required != 0 {
			if have, perr := Probe(); perr == nil && required&^have != 0 {
				return nil, fmt.Errorf("uffd: kernel lacks required features %#x (has %#x): %w", required&^have, have, err)
			}
		}
		return nil, err
	}
	return f, nil
}

// Fd returns the file descriptor number.
func (f *FD) Fd() int { return f.fd }

// Flags returns the flags the descriptor was opened with.
func (f *FD) Flags() int { return f.flags }

// Features returns the features enabled on this descriptor: those asked
// for in a successful API call. The kernel enables exactly those, even
// though it answers with everything it supports (see Supported).
func (f *FD) Features() uint64 { return f.features }

// Supported returns every feature the kernel reported in the handshake.
func (f *FD) Supported() uint64 { return f.supported }

// Has reports whether every bit of feature is enabled on the descriptor.
func (f *FD) Has(feature uint64) bool { return f.features&feature == feature }

// Ioctls is the bit set of ioctls API reported valid on the descriptor.
func (f *FD) Ioctls() uint64 { return f.ioctls }

// Close closes the descriptor. Threads blocked on its faults are woken
// and their faults are then served as if nothing was registered. Closing
// twice is harmless.
func (f *FD) Close() error {
	f.closeOnce.Do(func() { f.closeErr = unix.Close(f.fd) })
	return f.closeErr
}

// SetNonblock switches O_NONBLOCK; poll() on a blocking userfaultfd
// always reports POLLERR, so ReadMsgs needs nonblocking mode to honour a
// context.
func (f *FD) SetNonblock(on bool) error {
	if err := unix.SetNonblock(f.fd, on); err != nil {
		return &OpError{Op: "fcntl O_NONBLOCK", Err: err}
	}
	if on {
		f.flags |= unix.O_NONBLOCK
	} else {
		f.flags &^= unix.O_NONBLOCK
	}
	return nil
}

// Ioctl issues request req with arg on the descriptor. It is exported for
// ABI tests that need the raw struct back (e.g. that a refused handshake
// zeroes it); the typed methods below are the normal way in.
func (f *FD) Ioctl(req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(f.fd), req, uintptr(arg))
	runtime.KeepAlive(arg)
	if e != 0 {
		return e
	}
	return nil
}

// API performs the UFFDIO_API handshake enabling features. The kernel
// answers with every feature it supports and the valid ioctls; both are
// remembered. Asking for a feature the kernel lacks, or a second
// handshake on the same descriptor, fails with EINVAL (and the kernel
// zeroes the returned struct); EventFork without CAP_SYS_PTRACE fails
// with EPERM.
func (f *FD) API(features uint64) (APIArg, error) {
	a := APIArg{API: API, Features: features}
	if err := f.Ioctl(IoctlAPI, unsafe.Pointer(&a)); err != nil {
		return a, &OpError{Op: fmt.Sprintf("UFFDIO_API features=%#x", features), Err: err}
	}
	f.features, f.supported, f.ioctls = features, a.Features, a.Ioctls
	return a, nil
}

// Register registers [addr, addr+length) in mode (ModeMissing, ModeWP,
// ModeMinor, or a combination) and returns the ioctls valid on it.
func (f *FD) Register(addr, length uintptr, mode uint64) (uint64, error) {
	a := RegisterArg{Range: Range{uint64(addr), uint64(length)}, Mode: mode}
	if err := f.Ioctl(IoctlRegister, unsafe.Pointer(&a)); err != nil {
		return 0, &OpError{Op: fmt.Sprintf("UFFDIO_REGISTER mode=%#x", mode), Addr: a.Range.Start, Len: a.Range.Len, Err: err}
	}
	return a.Ioctls, nil
}

// Unregister removes [addr, addr+length) from the descriptor.
func (f *FD) Unregister(addr, length uintptr) error {
	r := Range{uint64(addr), uint64(length)}
	if err := f.Ioctl(IoctlUnregister, unsafe.Pointer(&r)); err != nil {
		return &OpError{Op: "UFFDIO_UNREGISTER", Addr: r.Start, Len: r.Len, Err: err}
	}
	return nil
}

// Wake wakes the threads waiting on faults in [addr, addr+length) (after
// a resolution with a DONTWAKE mode). A zero length wakes every waiter.
func (f *FD) Wake(addr, length uintptr) error {
	r := Range{uint64(addr), uint64(length)}
	if err := f.Ioctl(IoctlWake, unsafe.Pointer(&r)); err != nil {
		return &OpError{Op: "UFFDIO_WAKE", Addr: r.Start, Len: r.Len, Err: err}
	}
	return nil
}

// Copy atomically fills the missing pages [dst, dst+length) with the
// contents of [src, src+length) and wakes their waiters (unless
// CopyModeDontWake). It returns how many bytes were copied; on EAGAIN
// (the address space is changing) the caller retries the rest, on EEXIST
// a page was already there.
func (f *FD) Copy(dst, src, length uintptr, mode uint64) (int64, error) {
	a := CopyArg{Dst: uint64(dst), Src: uint64(src), Len: uint64(length), Mode: mode}
	err := f.Ioctl(IoctlCopy, unsafe.Pointer(&a))
	return done("UFFDIO_COPY", a.Dst, a.Len, a.Copy, err)
}

// Zeropage maps the zero page on the missing pages [addr, addr+length).
func (f *FD) Zeropage(addr, length uintptr, mode uint64) (int64, error) {
	a := ZeropageArg{Range: Range{uint64(addr), uint64(length)}, Mode: mode}
	err := f.Ioctl(IoctlZeropage, unsafe.Pointer(&a))
	return done("UFFDIO_ZEROPAGE", a.Range.Start, a.Range.Len, a.Zeropage, err)
}

// Move moves the pages [src, src+length) to the missing [dst, dst+length)
// (needs FeatureMove; both ranges in anonymous memory, dst registered).
func (f *FD) Move(dst, src, length uintptr, mode uint64) (int64, error) {
	a := MoveArg{Dst: uint64(dst), Src: uint64(src), Len: uint64(length), Mode: mode}
	err := f.Ioctl(IoctlMove, unsafe.Pointer(&a))
	return done("UFFDIO_MOVE", a.Dst, a.Len, a.Move, err)
}

// WriteProtect sets (WriteProtectModeWP) or clears the write protection of
// [addr, addr+length), which must be registered with ModeWP. Clearing it
// wakes the waiters unless WriteProtectModeDontWake.
func (f *FD) WriteProtect(addr, length uintptr, mode uint64) error {
	a := WriteProtectArg{Range: Range{uint64(addr), uint64(length)}, Mode: mode}
	if err := f.Ioctl(IoctlWriteProtect, unsafe.Pointer(&a)); err != nil {
		return &OpError{Op: fmt.Sprintf("UFFDIO_WRITEPROTECT mode=%#x", mode), Addr: a.Range.Start, Len: a.Range.Len, Err: err}
	}
	return nil
}

// Continue resolves minor faults on [addr, addr+length) by mapping the
// pages already in the page cache (ModeMinor registrations).
func (f *FD) Continue(addr, length uintptr, mode uint64) (int64, error) {
	a := ContinueArg{Range: Range{uint64(addr), uint64(length)}, Mode: mode}
	err := f.Ioctl(IoctlContinue, unsafe.Pointer(&a))
	return done("UFFDIO_CONTINUE", a.Range.Start, a.Range.Len, a.Mapped, err)
}

// Poison marks [addr, addr+length) as poisoned (FeaturePoison): later
// accesses get SIGBUS.
func (f *FD) Poison(addr, length uintptr, mode uint64) (int64, error) {
	a := PoisonArg{Range: Range{uint64(addr), uint64(length)}, Mode: mode}
	err := f.Ioctl(IoctlPoison, unsafe.Pointer(&a))
	return done("UFFDIO_POISON", a.Range.Start, a.Range.Len, a.Updated, err)
}

// done turns the (errno, out field) pair of a resolving ioctl into a byte
// count and an *OpError. The out field holds the bytes done, or -errno.
func done(op string, addr, length uint64, out int64, err error) (int64, error) {
	n := out
	if n < 0 {
		n = 0
	}
	if err != nil {
		return n, &OpError{Op: op, Addr: addr, Len: length, Done: n, Err: err}
	}
	return n, nil
}

// IsExist reports whether err says the target page was already mapped —
// what a handler racing another handler for the same fault sees.
func IsExist(err error) bool { return errors.Is(err, unix.EEXIST) }

// PreadFull fills b from fd at off, finishing short reads (legal after a
// partial copy, and not corruption) and retrying EINTR. A kernel-mode
// fault on userfaultfd memory in b happens inside this system call: the
// goroutine is in a system call, the runtime neither preempts nor signals
// it, and the kernel reports the fault exactly once.
func PreadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pread %d bytes at %d: %w", len(b), off, err)
		}
		if n == 0 {
			return fmt.Errorf("pread at %d: unexpected EOF", off)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
