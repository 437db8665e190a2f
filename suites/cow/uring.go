package main

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring (raw io_uring_setup/enter/register, 425-427 on both
// targets; x/sys has no helpers): one ring, buffers registered as fixed
// buffers (FOLL_WRITE|FOLL_PIN|FOLL_LONGTERM, the long-term R/W pin user
// space can take without gup_test), and IORING_OP_WRITE_FIXED, which
// writes what the kernel sees through those pins to a file.
// Structures mirror include/uapi/linux/io_uring.h (6.12); their layout is
// the same on i386 and x86_64 (every __u64 is at an 8-byte offset), which
// the host tests pin.

const (
	uringOffSQRing = 0
	uringOffCQRing = 0x8000000
	uringOffSQEs   = 0x10000000

	uringFeatSingleMmap = 1 << 0
	uringEnterGetEvents = 1 << 0

	uringRegisterBuffers   = 0
	uringUnregisterBuffers = 1

	uringOpWriteFixed = 5
)

type uringSQOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type uringCQOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type uringParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  uringSQOffsets
	CQOff                                                                  uringCQOffsets
}

type uringSQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	RWFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

type uringCQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// uring is one io_uring instance.
type uring struct {
	fd     int
	p      uringParams
	sqRing []byte
	cqRing []byte // == sqRing with IORING_FEAT_SINGLE_MMAP
	sqes   []byte
}

// newUring sets up a ring with a few entries.
func newUring() (*uring, error) {
	u := &uring{fd: -1}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&u.p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	u.fd = int(fd)
	sqSize := int(u.p.SQOff.Array) + int(u.p.SQEntries)*4
	cqSize := int(u.p.CQOff.CQEs) + int(u.p.CQEntries)*int(unsafe.Sizeof(uringCQE{}))
	if u.p.Features&uringFeatSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if u.sqRing, err = unix.Mmap(u.fd, uringOffSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.close()
		return nil, fmt.Errorf("mmap SQ ring: %w", err)
	}
	u.cqRing = u.sqRing
	if u.p.Features&uringFeatSingleMmap == 0 {
		if u.cqRing, err = unix.Mmap(u.fd, uringOffCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			u.close()
			return nil, fmt.Errorf("mmap CQ ring: %w", err)
		}
	}
	if u.sqes, err = unix.Mmap(u.fd, uringOffSQEs, int(u.p.SQEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.close()
		return nil, fmt.Errorf("mmap SQEs: %w", err)
	}
	return u, nil
}

func (u *uring) close() {
	if u.sqes != nil {
		unix.Munmap(u.sqes)
	}
	if u.cqRing != nil && len(u.cqRing) > 0 && &u.cqRing[0] != &u.sqRing[0] {
		unix.Munmap(u.cqRing)
	}
	if u.sqRing != nil {
		unix.Munmap(u.sqRing)
	}
	if u.fd >= 0 {
		unix.Close(u.fd)
	}
}

func (u *uring) word(ring []byte, off uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&ring[off]))
}

// registerBuffer registers b as fixed buffer 0 (this pins it).
func (u *uring) registerBuffer(b []byte) error {
	iov := []unix.Iovec{{Base: &b[0]}}
	iov[0].SetLen(len(b))
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(u.fd), uringRegisterBuffers, uintptr(unsafe.Pointer(&iov[0])), 1, 0, 0); e != 0 {
		return fmt.Errorf("IORING_REGISTER_BUFFERS: %w", e)
	}
	return nil
}

// unregisterBuffers drops the fixed buffers (and their pins).
func (u *uring) unregisterBuffers() error {
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(u.fd), uringUnregisterBuffers, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("IORING_UNREGISTER_BUFFERS: %w", e)
	}
	return nil
}

// writeFixed writes fixed buffer 0 (which is b) to fd at offset 0 and
// returns the completion's result.
func (u *uring) writeFixed(fd int, b []byte) (int, error) {
	mask := *u.word(u.sqRing, u.p.SQOff.RingMask)
	tailp := u.word(u.sqRing, u.p.SQOff.Tail)
	tail := atomic.LoadUint32(tailp)
	idx := tail & mask
	sqe := (*uringSQE)(unsafe.Pointer(&u.sqes[uintptr(idx)*unsafe.Sizeof(uringSQE{})]))
	*sqe = uringSQE{Opcode: uringOpWriteFixed, Fd: int32(fd), Addr: uint64(addrOf(b)), Len: uint32(len(b)), UserData: 0x636f77}
	*u.word(u.sqRing, u.p.SQOff.Array+4*idx) = idx
	atomic.StoreUint32(tailp, tail+1)
	n, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 1, 1, uringEnterGetEvents, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("io_uring_enter: %w", e)
	}
	if n != 1 {
		return 0, fmt.Errorf("io_uring_enter submitted %d", n)
	}
	headp := u.word(u.cqRing, u.p.CQOff.Head)
	head := atomic.LoadUint32(headp)
	// io_uring_enter returns the number submitted even when a signal (the
	// Go runtime's preemption SIGURG) cut its wait short: wait again, with
	// nothing to submit, until the completion is there.
	for waits := 0; head == atomic.LoadUint32(u.word(u.cqRing, u.p.CQOff.Tail)); waits++ {
		if waits == 1000 {
			return 0, fmt.Errorf("io_uring: no completion after %d GETEVENTS waits", waits)
		}
		if _, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 0, 1, uringEnterGetEvents, 0, 0); e != 0 && e != unix.EINTR {
			return 0, fmt.Errorf("io_uring_enter (wait): %w", e)
		}
	}
	cmask := *u.word(u.cqRing, u.p.CQOff.RingMask)
	off := uintptr(u.p.CQOff.CQEs) + uintptr(head&cmask)*unsafe.Sizeof(uringCQE{})
	cqe := *(*uringCQE)(unsafe.Pointer(&u.cqRing[off]))
	atomic.StoreUint32(headp, head+1)
	if cqe.UserData != 0x636f77 {
		return 0, fmt.Errorf("io_uring: completion for %#x, want 0x636f77", cqe.UserData)
	}
	if cqe.Res < 0 {
		return 0, fmt.Errorf("IORING_OP_WRITE_FIXED: %w", unix.Errno(-cqe.Res))
	}
	return int(cqe.Res), nil
}
