package uffd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestStructSizes pins the Go mirrors to the C sizes (note §5, checked
// with gcc -m32/-m64): a wrong size silently changes every ioctl number.
func TestStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"uffdio_range", unsafe.Sizeof(Range{}), 16},
		{"uffdio_api", unsafe.Sizeof(APIArg{}), 24},
		{"uffdio_register", unsafe.Sizeof(RegisterArg{}), 32},
		{"uffdio_copy", unsafe.Sizeof(CopyArg{}), 40},
		{"uffdio_zeropage", unsafe.Sizeof(ZeropageArg{}), 32},
		{"uffdio_move", unsafe.Sizeof(MoveArg{}), 40},
		{"uffdio_writeprotect", unsafe.Sizeof(WriteProtectArg{}), 24},
		{"uffdio_continue", unsafe.Sizeof(ContinueArg{}), 32},
		{"uffdio_poison", unsafe.Sizeof(PoisonArg{}), 32},
	} {
		if tc.got != tc.want {
			t.Errorf("sizeof(struct %s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// TestFieldOffsets checks the out fields the kernel writes back, which
// are what a misplaced field would corrupt.
func TestFieldOffsets(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"uffdio_api.features", unsafe.Offsetof(APIArg{}.Features), 8},
		{"uffdio_api.ioctls", unsafe.Offsetof(APIArg{}.Ioctls), 16},
		{"uffdio_register.mode", unsafe.Offsetof(RegisterArg{}.Mode), 16},
		{"uffdio_register.ioctls", unsafe.Offsetof(RegisterArg{}.Ioctls), 24},
		{"uffdio_copy.mode", unsafe.Offsetof(CopyArg{}.Mode), 24},
		{"uffdio_copy.copy", unsafe.Offsetof(CopyArg{}.Copy), 32},
		{"uffdio_zeropage.zeropage", unsafe.Offsetof(ZeropageArg{}.Zeropage), 24},
		{"uffdio_move.move", unsafe.Offsetof(MoveArg{}.Move), 32},
		{"uffdio_writeprotect.mode", unsafe.Offsetof(WriteProtectArg{}.Mode), 16},
		{"uffdio_continue.mapped", unsafe.Offsetof(ContinueArg{}.Mapped), 24},
		{"uffdio_poison.updated", unsafe.Offsetof(PoisonArg{}.Updated), 24},
	} {
		if tc.got != tc.want {
			t.Errorf("offsetof(%s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// TestIoctlNumbers compares the computed numbers with the table in the
// kernel-mechanisms note (§5), which was read off the compiled headers.
func TestIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"UFFDIO_API", IoctlAPI, 0xc018aa3f},
		{"UFFDIO_REGISTER", IoctlRegister, 0xc020aa00},
		{"UFFDIO_UNREGISTER", IoctlUnregister, 0x8010aa01},
		{"UFFDIO_WAKE", IoctlWake, 0x8010aa02},
		{"UFFDIO_COPY", IoctlCopy, 0xc028aa03},
		{"UFFDIO_ZEROPAGE", IoctlZeropage, 0xc020aa04},
		{"UFFDIO_MOVE", IoctlMove, 0xc028aa05},
		{"UFFDIO_WRITEPROTECT", IoctlWriteProtect, 0xc018aa06},
		{"UFFDIO_CONTINUE", IoctlContinue, 0xc020aa07},
		{"UFFDIO_POISON", IoctlPoison, 0xc020aa08},
		{"USERFAULTFD_IOC_NEW", IoctlNew, 0xaa00},
		{"IOC(3,'k',1,352)", IOC(3, 'k', 1, 352), 0xc1606b01},
		{"IOC(1,'g',7,20)", IOC(1, 'g', 7, 20), 0x40146707},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func rawMsg(event uint8, a0, a1, a2 uint64, ptid uint32) []byte {
	b := make([]byte, MsgSize)
	b[0] = event
	le := binary.LittleEndian
	le.PutUint64(b[8:], a0)
	le.PutUint64(b[16:], a1)
	if ptid != 0 {
		le.PutUint32(b[24:], ptid)
	} else {
		le.PutUint64(b[24:], a2)
	}
	return b
}

func TestDecodeMsg(t *testing.T) {
	for _, tc := range []struct {
		name    string
		raw     []byte
		want    Msg
		wantErr string
		str     string
	}{
		{"pagefault read", rawMsg(EventPagefault, 0, 0x7f0000001000, 0, 4242),
			Msg{Event: EventPagefault, Address: 0x7f0000001000, PTID: 4242}, "", "PAGEFAULT read addr=0x7f0000001000 tid=4242"},
		{"pagefault write+wp", rawMsg(EventPagefault, PagefaultFlagWrite|PagefaultFlagWP, 0xb7000000, 0, 7),
			Msg{Event: EventPagefault, Flags: 3, Address: 0xb7000000, PTID: 7}, "", "PAGEFAULT write+wp addr=0xb7000000 tid=7"},
		{"pagefault minor", rawMsg(EventPagefault, PagefaultFlagMinor, 0x1000, 0, 1),
			Msg{Event: EventPagefault, Flags: PagefaultFlagMinor, Address: 0x1000, PTID: 1}, "", "PAGEFAULT read+minor addr=0x1000 tid=1"},
		{"fork", rawMsg(EventFork, 9, 0, 0, 0), Msg{Event: EventFork, UFD: 9}, "", "FORK ufd=9"},
		{"remap", rawMsg(EventRemap, 0x1000, 0x9000, 0x3000, 0),
			Msg{Event: EventRemap, From: 0x1000, To: 0x9000, Len: 0x3000}, "", "REMAP from=0x1000 to=0x9000 len=0x3000"},
		{"remove", rawMsg(EventRemove, 0x2000, 0x4000, 0, 0), Msg{Event: EventRemove, Start: 0x2000, End: 0x4000}, "", "REMOVE [0x2000, 0x4000)"},
		{"unmap", rawMsg(EventUnmap, 0x2000, 0x4000, 0, 0), Msg{Event: EventUnmap, Start: 0x2000, End: 0x4000}, "", "UNMAP [0x2000, 0x4000)"},
		{"unknown event", rawMsg(0x42, 1, 2, 3, 0), Msg{Event: 0x42}, "unknown event 0x42", "event(0x42)"},
		{"short", make([]byte, 31), Msg{}, "31 bytes", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeMsg(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if tc.str != "" && got.String() != tc.str {
				t.Errorf("String() = %q, want %q", got.String(), tc.str)
			}
		})
	}
}

func TestOpError(t *testing.T) {
	_, err := done("UFFDIO_COPY", 0x1000, 0x3000, 0x2000, unix.EEXIST)
	if !IsExist(err) || !errors.Is(err, unix.EEXIST) {
		t.Fatalf("%v is not EEXIST", err)
	}
	var oe *OpError
	if !errors.As(err, &oe) || oe.Done != 0x2000 {
		t.Fatalf("want *OpError with Done 0x2000, got %#v", err)
	}
	if want := "uffd: UFFDIO_COPY [0x1000+0x3000] (8192 bytes done): file exists"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	n, err := done("UFFDIO_ZEROPAGE", 0, 0, -int64(unix.EAGAIN), unix.EAGAIN)
	if n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Errorf("negative out field: n=%d err=%v", n, err)
	}
	if n, err := done("UFFDIO_COPY", 0, 0, 4096, nil); n != 4096 || err != nil {
		t.Errorf("success: n=%d err=%v", n, err)
	}
	if s := fmt.Sprint(&OpError{Op: "read", Err: unix.EINVAL}); s != "uffd: read: invalid argument" {
		t.Errorf("no-range error = %q", s)
	}
}

// TestAdopt: an adopted descriptor (a FORK event's) reports the flags and
// features it was given, so ReadMsgs and Has behave as on the parent's.
func TestAdopt(t *testing.T) {
	for _, tc := range []struct {
		fd, flags int
		features  uint64
		has       uint64
		want      bool
	}{
		{7, unix.O_NONBLOCK | unix.O_CLOEXEC, FeatureEventFork | FeatureThreadID, FeatureThreadID, true},
		{8, 0, FeatureEventFork, FeatureMove, false},
		{9, unix.O_NONBLOCK, 0, FeatureEventFork, false},
	} {
		f := Adopt(tc.fd, tc.flags, tc.features)
		if f.Fd() != tc.fd || f.Flags() != tc.flags || f.Features() != tc.features || f.Has(tc.has) != tc.want {
			t.Errorf("Adopt(%d, %#x, %#x) = fd %d flags %#x features %#x Has(%#x)=%v; want Has %v",
				tc.fd, tc.flags, tc.features, f.Fd(), f.Flags(), f.Features(), tc.has, f.Has(tc.has), tc.want)
		}
	}
}
