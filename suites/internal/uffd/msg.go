package uffd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// MsgSize is sizeof(struct uffd_msg): packed, identical on i386 and x86_64.
const MsgSize = 32

// Events (UFFD_EVENT_*).
const (
	EventPagefault uint8 = 0x12
	EventFork      uint8 = 0x13
	EventRemap     uint8 = 0x14
	EventRemove    uint8 = 0x15
	EventUnmap     uint8 = 0x16
)

// Page fault flags (UFFD_PAGEFAULT_FLAG_*).
const (
	PagefaultFlagWrite uint64 = 1 << 0
	PagefaultFlagWP    uint64 = 1 << 1
	PagefaultFlagMinor uint64 = 1 << 2
)

// Byte offsets in struct uffd_msg.
const (
	offEvent = 0
	offArg0  = 8  // pagefault.flags, fork.ufd, remap.from, remove.start
	offArg1  = 16 // pagefault.address, remap.to, remove.end
	offArg2  = 24 // pagefault.feat.ptid, remap.len
)

// Msg is a decoded struct uffd_msg. Which fields mean something depends
// on Event; the others are zero.
type Msg struct {
	Event uint8

	// EventPagefault.
	Flags   uint64 // PagefaultFlag*
	Address uint64 // page aligned unless FeatureExactAddress
	PTID    uint32 // faulting thread, with FeatureThreadID

	// EventFork: the child's new userfaultfd (already installed in our
	// file table).
	UFD uint32

	// EventRemap (mremap).
	From, To, Len uint64

	// EventRemove (MADV_DONTNEED/REMOVE) and EventUnmap (munmap).
	Start, End uint64
}

// DecodeMsg decodes one 32-byte uffd_msg. The ABI is little endian on
// both of our targets.
func DecodeMsg(b []byte) (Msg, error) {
	if len(b) != MsgSize {
		return Msg{}, fmt.Errorf("uffd: message is %d bytes, want %d", len(b), MsgSize)
	}
	le := binary.LittleEndian
	m := Msg{Event: b[offEvent]}
	switch m.Event {
	case EventPagefault:
		m.Flags = le.Uint64(b[offArg0:])
		m.Address = le.Uint64(b[offArg1:])
		m.PTID = le.Uint32(b[offArg2:])
	case EventFork:
		m.UFD = le.Uint32(b[offArg0:])
	case EventRemap:
		m.From = le.Uint64(b[offArg0:])
		m.To = le.Uint64(b[offArg1:])
		m.Len = le.Uint64(b[offArg2:])
	case EventRemove, EventUnmap:
		m.Start = le.Uint64(b[offArg0:])
		m.End = le.Uint64(b[offArg1:])
	default:
		return m, fmt.Errorf("uffd: unknown event %#x in message % x", m.Event, b)
	}
	return m, nil
}

// EventName names an event for messages.
func EventName(ev uint8) string {
	switch ev {
	case EventPagefault:
		return "PAGEFAULT"
	case EventFork:
		return "FORK"
	case EventRemap:
		return "REMAP"
	case EventRemove:
		return "REMOVE"
	case EventUnmap:
		return "UNMAP"
	}
	return fmt.Sprintf("event(%#x)", ev)
}

func (m Msg) String() string {
	switch m.Event {
	case EventPagefault:
		kind := "read"
		if m.Flags&PagefaultFlagWrite != 0 {
			kind = "write"
		}
		if m.Flags&PagefaultFlagWP != 0 {
			kind += "+wp"
		}
		if m.Flags&PagefaultFlagMinor != 0 {
			kind += "+minor"
		}
		return fmt.Sprintf("PAGEFAULT %s addr=%#x tid=%d", kind, m.Address, m.PTID)
	case EventFork:
		return fmt.Sprintf("FORK ufd=%d", m.UFD)
	case EventRemap:
		return fmt.Sprintf("REMAP from=%#x to=%#x len=%#x", m.From, m.To, m.Len)
	case EventRemove, EventUnmap:
		return fmt.Sprintf("%s [%#x, %#x)", EventName(m.Event), m.Start, m.End)
	}
	return EventName(m.Event)
}

// pollSlice bounds one poll() so that a context without deadline is still
// noticed promptly.
const pollSlice = 50 * time.Millisecond

// ReadMsgs reads up to len(msgs) messages, waiting until at least one is
// there or ctx is done (then it returns ctx.Err()). On a descriptor
// without O_NONBLOCK the read blocks and ctx is only checked before it:
// the kernel answers poll() on a blocking userfaultfd with POLLERR, and
// several readers of one blocking descriptor can block forever after one
// of them took the only message.
func (f *FD) ReadMsgs(ctx context.Context, msgs []Msg) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	buf := make([]byte, MsgSize*len(msgs))
	nonblock := f.flags&unix.O_NONBLOCK != 0
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		pollErr := false
		if nonblock {
			wait := pollSlice
			if dl, ok := ctx.Deadline(); ok {
				if left := time.Until(dl); left < wait {
					wait = left
				}
			}
			ms := int(wait / time.Millisecond)
			if ms < 1 {
				ms = 1
			}
			fds := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, ms)
			if errors.Is(err, unix.EINTR) || (err == nil && n == 0) {
				continue
			}
			if err != nil {
				return 0, &OpError{Op: "poll", Err: err}
			}
			pollErr = fds[0].Revents&(unix.POLLERR|unix.POLLNVAL|unix.POLLHUP) != 0 && fds[0].Revents&unix.POLLIN == 0
			// On POLLERR/POLLNVAL the read below tells why (EINVAL before
			// the handshake, EBADF after a close).
		}
		n, err := unix.Read(f.fd, buf)
		if pollErr && errors.Is(err, unix.EAGAIN) {
			return 0, &OpError{Op: "poll", Err: fmt.Errorf("revents %#x", unix.POLLERR)}
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // another reader took it, or the fault was woken before we read it
		}
		if err != nil {
			return 0, &OpError{Op: "read", Err: err}
		}
		if n <= 0 || n%MsgSize != 0 {
			return 0, &OpError{Op: "read", Err: fmt.Errorf("short message: %d bytes", n)}
		}
		cnt := n / MsgSize
		for i := 0; i < cnt; i++ {
			m, err := DecodeMsg(buf[i*MsgSize : (i+1)*MsgSize])
			if err != nil {
				return i, err
			}
			msgs[i] = m
		}
		return cnt, nil
	}
}

// ReadMsg reads one message; see ReadMsgs.
func (f *FD) ReadMsg(ctx context.Context) (Msg, error) {
	var m [1]Msg
	_, err := f.ReadMsgs(ctx, m[:])
	return m[0], err
}
