package main

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
	"github.com/kharness/kharness/suites/sysinfo"
)

// openRaw opens a userfaultfd without handshaking it.
func (c *tcase) openRaw(flags int) *uffd.FD {
	f, err := uffd.Open(flags | unix.O_CLOEXEC | unix.O_NONBLOCK)
	if errors.Is(err, unix.ENOSYS) {
		c.Fatalf("userfaultfd(2): %v (the uffd kconfig fragment asks for CONFIG_USERFAULTFD=y)", err)
	}
	c.check(err, "userfaultfd")
	return c.track(f)
}

// rawAPI issues UFFDIO_API with api and features and returns the struct
// as the kernel left it.
func rawAPI(f *uffd.FD, api, features uint64) (uffd.APIArg, error) {
	a := uffd.APIArg{API: api, Features: features}
	err := f.Ioctl(uffd.IoctlAPI, unsafe.Pointer(&a))
	return a, err
}

// handshake checks UFFDIO_API (userfaultfd_api, fs/userfaultfd.c): before
// it every other ioctl and read() fail with EINVAL; a wrong API number or
// an unknown feature bit (including the kernel-internal INITIALIZED bit
// 31) is refused with EINVAL and the struct is zeroed, and the descriptor
// can still be handshaken afterwards; the answer lists every supported
// feature and UFFD_API_IOCTLS; a second UFFDIO_API fails with EINVAL.
// The features are compared with what 6.12 computes from the kernel's
// configuration (on i386 no write-protect or minor modes).
func handshake(c *tcase) {
	// userfaultfd(2) accepts only O_CLOEXEC, O_NONBLOCK and USER_MODE_ONLY.
	if r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_RDWR, 0, 0); e != unix.EINVAL {
		if e == 0 {
			unix.Close(int(r))
		}
		c.Errorf("userfaultfd(O_RDWR): %s, want EINVAL", errName(errOrNil(e)))
	}

	f := c.openRaw(0)
	var b [uffd.MsgSize]byte
	_, err := unix.Read(f.Fd(), b[:])
	c.wantErrno("read() before UFFDIO_API", err, unix.EINVAL)
	scratch := make([]byte, 64) // a valid argument for every ioctl
	for _, tc := range []struct {
		name string
		req  uintptr
	}{
		{"UFFDIO_REGISTER", uffd.IoctlRegister}, {"UFFDIO_UNREGISTER", uffd.IoctlUnregister},
		{"UFFDIO_WAKE", uffd.IoctlWake}, {"UFFDIO_COPY", uffd.IoctlCopy},
		{"UFFDIO_ZEROPAGE", uffd.IoctlZeropage}, {"UFFDIO_MOVE", uffd.IoctlMove},
		{"UFFDIO_WRITEPROTECT", uffd.IoctlWriteProtect}, {"UFFDIO_CONTINUE", uffd.IoctlContinue},
		{"UFFDIO_POISON", uffd.IoctlPoison},
	} {
		err := f.Ioctl(tc.req, unsafe.Pointer(&scratch[0]))
		c.wantErrno(tc.name+" before UFFDIO_API", err, unix.EINVAL)
	}
	if info, err := readFdinfo(f.Fd()); err != nil {
		c.Errorf("fdinfo before UFFDIO_API: %v", err)
	} else if info.Features != 0 {
		c.Errorf("fdinfo before UFFDIO_API shows features %#x, want 0 (not initialized)", info.Features)
	}

	// Refused handshakes: EINVAL, struct zeroed, descriptor still fresh.
	for _, tc := range []struct {
		name          string
		api, features uint64
	}{
		{"api 0xab", 0xAB, 0},
		{"api 0", 0, 0},
		{"first undefined feature bit 17", uffd.API, 1 << 17},
		{"kernel-internal INITIALIZED bit 31", uffd.API, featureInitialized},
		{"feature bit 62", uffd.API, 1 << 62},
		{"a known feature plus bit 40", uffd.API, uffd.FeatureThreadID | 1<<40},
	} {
		a, err := rawAPI(f, tc.api, tc.features)
		c.wantErrno("UFFDIO_API with "+tc.name, err, unix.EINVAL)
		if a != (uffd.APIArg{}) {
			c.Errorf("UFFDIO_API with %s left %+v, want the struct zeroed", tc.name, a)
		}
	}
	_, err = unix.Read(f.Fd(), b[:])
	c.wantErrno("read() after refused handshakes", err, unix.EINVAL)

	a, err := f.API(0)
	if err != nil {
		c.Fatalf("UFFDIO_API with no features after refused ones: %v", err)
	}
	if a.API != uffd.API {
		c.Errorf("UFFDIO_API answered api %#x, want %#x", a.API, uffd.API)
	}
	if a.Ioctls != apiIoctls {
		c.Errorf("UFFDIO_API answered ioctls %#x, want UFFD_API_IOCTLS %#x", a.Ioctls, apiIoctls)
	}
	c.Metric("features", float64(a.Features))
	c.Logf("%s kernel offers userfaultfd features %#x: %s", runtime.GOARCH, a.Features, featureNames(a.Features))
	c.checkFeatures(a.Features)

	_, err = unix.Read(f.Fd(), b[:])
	c.wantErrno("nonblocking read() with nothing queued", err, unix.EAGAIN)
	again, err := rawAPI(f, uffd.API, 0)
	c.wantErrno("second UFFDIO_API", err, unix.EINVAL)
	if again != (uffd.APIArg{}) {
		c.Errorf("second UFFDIO_API left %+v, want the struct zeroed", again)
	}

	// Every feature the kernel offers can be asked for at once.
	g := c.openRaw(0)
	if _, err := g.API(a.Features); err != nil {
		c.Errorf("UFFDIO_API with every offered feature %#x: %v", a.Features, err)
	}
	// USER_MODE_ONLY descriptors and /dev/userfaultfd handshake alike.
	h := c.openRaw(uffd.UserModeOnly)
	if _, err := h.API(uffd.FeatureThreadID); err != nil {
		c.Errorf("UFFDIO_API on a USER_MODE_ONLY descriptor: %v", err)
	}
	d, err := uffd.OpenDevice(unix.O_CLOEXEC | unix.O_NONBLOCK)
	switch {
	case errors.Is(err, unix.ENOENT) && !sysinfo.Mounted("/dev", "devtmpfs"):
		c.Logf("%s missing and /dev is no devtmpfs: device path not checked", uffd.DevicePath)
	case errors.Is(err, unix.ENOENT):
		c.Errorf("%s missing although /dev is a devtmpfs: a CONFIG_USERFAULTFD kernel registers the misc device", uffd.DevicePath)
	case err != nil:
		c.Errorf("userfaultfd through %s: %v", uffd.DevicePath, err)
	default:
		c.track(d)
		if da, err := d.API(0); err != nil || da.Features != a.Features {
			c.Errorf("UFFDIO_API through %s: %+v, %v; want features %#x", uffd.DevicePath, da, err, a.Features)
		}
	}
}

func errOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// checkFeatures compares the offered features with the kernel's
// configuration (exactly, on the 6.12 kernels this suite is written for)
// and with the architecture.
func (c *tcase) checkFeatures(got uint64) {
	if runtime.GOARCH == "386" && got&archOnlyFeatures != 0 {
		c.Errorf("i386 kernel offers %s: write-protect and minor modes are x86_64-only (HAVE_ARCH_USERFAULTFD_WP/MINOR)", featureNames(got&archOnlyFeatures))
	}
	cfg, err := kernelConfig()
	if err != nil {
		c.Errorf("the offered features %#x cannot be compared with the kernel configuration: %v", got, err)
		return
	}
	release, _, _ := sysinfo.Uname()
	if !strings.HasPrefix(release, "6.12") {
		c.Logf("kernel %s is not 6.12: features not compared with the configuration", release)
		return
	}
	if want := expectedFeatures(cfg); got != want {
		c.Errorf("UFFDIO_API offers %#x, the configuration implies %#x: missing %s, unexpected %s",
			got, want, featureNames(want&^got), featureNames(got&^want))
	}
}

// register checks UFFDIO_REGISTER (userfaultfd_register): the answered
// ioctls per mode, and the refusals — unaligned start or length, zero
// length, no mode, an unknown mode bit, an unmapped range, a range past
// the end of user space (EINVAL); a range another userfaultfd owns
// (EBUSY); a shared mapping without write permission (EPERM); WP where
// the architecture has no write-protect and MINOR on anonymous memory
// (EINVAL). Then UNREGISTER (after which faults are served normally),
// and the range checks of WAKE and COPY/ZEROPAGE on unregistered memory
// (ENOENT).
func register(c *tcase) {
	f := c.newFD(0, 0, uffd.FeaturePagefaultFlagWP)
	buf := c.anon(4)
	ioctls, err := f.Register(buf.addr(), uintptr(buf.n), uffd.ModeMissing)
	c.check(err, "register anonymous memory")
	if want := rangeIoctls(uffd.ModeMissing); ioctls != want {
		c.Errorf("REGISTER(MISSING) answered ioctls %#x, want %#x", ioctls, want)
	}
	c.Metric("register_ioctls_missing", float64(ioctls))

	ps := uintptr(pageSize)
	taskEnd := uintptr(0xC0000000) // i386 3G/1G split: TASK_SIZE
	if unsafe.Sizeof(uintptr(0)) == 8 {
		var top uint64 = 1 << 47 // x86_64 4-level TASK_SIZE is 2^47 - 4096
		taskEnd = uintptr(top) - ps
	}
	other := c.newFD(0, 0, 0)
	taken := c.anon(2)
	if _, err := other.Register(taken.addr(), uintptr(taken.n), uffd.ModeMissing); err != nil {
		c.Fatalf("register on the other descriptor: %v", err)
	}
	ro := c.readOnlyShared()
	spare := c.anon(2)
	gone := c.hole(2) // last: a later mmap could reuse the hole
	for _, tc := range []struct {
		name  string
		start uintptr
		len   uintptr
		mode  uint64
		want  unix.Errno
	}{
		{"unaligned start", spare.addr() + 1, ps, uffd.ModeMissing, unix.EINVAL},
		{"unaligned length", spare.addr(), ps + 1, uffd.ModeMissing, unix.EINVAL},
		{"zero length", spare.addr(), 0, uffd.ModeMissing, unix.EINVAL},
		{"mode 0", spare.addr(), ps, 0, unix.EINVAL},
		{"unknown mode bit 3", spare.addr(), ps, 1 << 3, unix.EINVAL},
		{"unmapped range", gone.addr(), uintptr(gone.n), uffd.ModeMissing, unix.EINVAL},
		{"range past the end of user space", taskEnd, 2 * ps, uffd.ModeMissing, unix.EINVAL},
		{"MINOR on anonymous memory", spare.addr(), ps, uffd.ModeMinor, unix.EINVAL},
		{"range owned by another userfaultfd", taken.addr(), uintptr(taken.n), uffd.ModeMissing, unix.EBUSY},
		{"read-only shared mapping (no VM_MAYWRITE)", ro.addr(), uintptr(ro.n), uffd.ModeMissing, unix.EPERM},
	} {
		_, err := f.Register(tc.start, tc.len, tc.mode)
		c.wantErrno("REGISTER "+tc.name, err, tc.want)
	}
	ioctls, err = f.Register(spare.addr(), uintptr(spare.n), uffd.ModeMissing|uffd.ModeWP)
	if f.Supported()&uffd.FeaturePagefaultFlagWP == 0 {
		c.wantErrno("REGISTER(MISSING|WP) on a kernel without write-protect", err, unix.EINVAL)
	} else if err != nil {
		c.Errorf("REGISTER(MISSING|WP): %v", err)
	} else if want := rangeIoctls(uffd.ModeMissing | uffd.ModeWP); ioctls != want {
		c.Errorf("REGISTER(MISSING|WP) answered ioctls %#x, want %#x", ioctls, want)
	}

	// Range checks of the other ioctls.
	c.wantErrno("UNREGISTER unaligned", f.Unregister(buf.addr()+1, ps), unix.EINVAL)
	c.wantErrno("WAKE with length 0", f.Wake(buf.addr(), 0), unix.EINVAL)
	c.wantErrno("WAKE unaligned", f.Wake(buf.addr()+8, ps), unix.EINVAL)
	src := c.anon(1)
	_, err = f.Copy(buf.addr()+8, src.addr(), ps, 0)
	c.wantErrno("COPY to an unaligned destination", err, unix.EINVAL)
	_, err = f.Copy(buf.addr(), src.addr(), ps, 1<<5)
	c.wantErrno("COPY with an unknown mode bit", err, unix.EINVAL)
	plain := c.anon(1)
	_, err = f.Copy(plain.addr(), src.addr(), ps, 0)
	c.wantErrno("COPY into unregistered memory", err, unix.ENOENT)
	_, err = f.Zeropage(plain.addr(), ps, 0)
	c.wantErrno("ZEROPAGE into unregistered memory", err, unix.ENOENT)

	// After UNREGISTER the range faults like plain memory, without a
	// message.
	c.check(f.Unregister(buf.addr(), uintptr(buf.n)), "unregister")
	th := c.start("reader of the unregistered range", func() error {
		for i := 0; i < buf.pages(); i++ {
			sink.Add(atomic.LoadUint32(buf.word(i * pageSize)))
		}
		return nil
	})
	c.await(th, "reading a range that was unregistered")
	c.nothingQueued(f, "no faults may be reported for an unregistered range")
	for i, p := range c.present(buf) {
		if !p {
			c.Errorf("page %d of the unregistered range is not mapped after being read", i)
		}
	}
}

// readOnlyShared maps a shmem file read-only through an O_RDONLY
// descriptor: a MAP_SHARED mapping without VM_MAYWRITE.
func (c *tcase) readOnlyShared() region {
	fd := c.memfd("ro", pattern(2*pageSize, 1))
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	c.check(err, "reopen memfd read-only")
	c.onClose(func() error { return unix.Close(rfd) })
	return c.mmap(2, unix.PROT_READ, unix.MAP_SHARED, rfd)
}
