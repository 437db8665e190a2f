package uffd

// Live tests: they call userfaultfd(2) on the machine running `go test`.
// Tests needing kernel-mode faults need privilege (CAP_SYS_PTRACE, or
// vm.unprivileged_userfaultfd=1) and skip without it; user-mode tests use
// UserModeOnly, which anybody may. Faults are served by a Handler and
// every wait is bounded so that a bug fails the test instead of hanging.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var ps = os.Getpagesize()

const liveTimeout = 10 * time.Second

func mmapAnon(t *testing.T, pages int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, pages*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// newFD opens a handshaken nonblocking descriptor or skips the test when
// the kernel or our privileges do not allow it.
func newFD(t *testing.T, flags int, required, optional uint64) *FD {
	t.Helper()
	f, err := New(flags|unix.O_CLOEXEC|unix.O_NONBLOCK, required, optional)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			t.Skipf("userfaultfd unavailable here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// kernelFD is newFD for tests whose faults happen inside system calls.
func kernelFD(t *testing.T, required, optional uint64) *FD {
	t.Helper()
	return newFD(t, 0, required, optional)
}

// serve starts a handler and stops it (checking its errors) at cleanup.
func serve(t *testing.T, f *FD, workers int, fn HandleFunc) *Handler {
	t.Helper()
	h, err := Serve(context.Background(), f, workers, fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("handler: %v", err)
		}
	})
	return h
}

// onThread runs fn on a locked OS thread and returns its tid (published
// before fn runs, so a handler can compare a fault's ptid with it) and a
// channel closed when fn returns.
func onThread(fn func()) (tid *atomic.Int32, done <-chan struct{}) {
	tid = new(atomic.Int32)
	ready, dc := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(dc)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid.Store(int32(unix.Gettid()))
		close(ready)
		fn()
	}()
	<-ready
	return tid, dc
}

// sink keeps the compiler from dropping loads whose only purpose is to
// fault.
var sink atomic.Uint32

func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(liveTimeout):
		t.Fatalf("%s did not finish within %s", what, liveTimeout)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>12)
	}
	return b
}

func TestLiveHandshake(t *testing.T) {
	f, err := Open(unix.O_CLOEXEC | unix.O_NONBLOCK | UserModeOnly)
	if err != nil {
		t.Skipf("userfaultfd unavailable: %v", err)
	}
	defer f.Close()
	var b [MsgSize]byte
	if _, err := unix.Read(f.Fd(), b[:]); !errors.Is(err, unix.EINVAL) {
		t.Errorf("read before UFFDIO_API: %v, want EINVAL", err)
	}
	if _, err := f.ReadMsg(context.Background()); !errors.Is(err, unix.EINVAL) {
		t.Errorf("ReadMsg before UFFDIO_API: %v, want EINVAL", err)
	}
	a, err := f.API(0)
	if err != nil {
		t.Fatal(err)
	}
	const apiBit, regBits = uint64(1) << 0x3F, uint64(3)
	if a.API != API || a.Ioctls&(apiBit|regBits) != apiBit|regBits {
		t.Errorf("handshake answer %+v: want api 0xaa and ioctls API|REGISTER|UNREGISTER", a)
	}
	if f.Supported() == 0 || f.Features() != 0 {
		t.Errorf("supported %#x enabled %#x: want some supported, none enabled", f.Supported(), f.Features())
	}
	if _, err := f.API(0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("second UFFDIO_API: %v, want EINVAL", err)
	}

	g, err := Open(unix.O_CLOEXEC | UserModeOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	raw := APIArg{API: API, Features: 1 << 62}
	if err := g.Ioctl(IoctlAPI, unsafe.Pointer(&raw)); !errors.Is(err, unix.EINVAL) {
		t.Errorf("unknown feature: %v, want EINVAL", err)
	}
	if raw != (APIArg{}) {
		t.Errorf("refused handshake left %+v, want it zeroed", raw)
	}
	t.Logf("kernel supports features %#x", f.Supported())
}

func TestReadMsgDeadline(t *testing.T) {
	f := newFD(t, UserModeOnly, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.ReadMsg(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadMsg with nothing pending: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Errorf("ReadMsg returned after %s, want about 120ms", d)
	}
}

// TestUserFault resolves user-mode read faults in three ways and checks
// the message fields and the data that ends up mapped.
func TestUserFault(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resolve func(f *FD, page uintptr, src []byte) error
		want    func(src []byte) []byte
	}{
		{"copy", func(f *FD, page uintptr, src []byte) error {
			_, err := f.Copy(page, addrOf(src), uintptr(ps), 0)
			return err
		}, func(src []byte) []byte { return src }},
		{"zeropage", func(f *FD, page uintptr, src []byte) error {
			_, err := f.Zeropage(page, uintptr(ps), 0)
			return err
		}, func(src []byte) []byte { return make([]byte, len(src)) }},
		{"copy-dontwake-then-wake", func(f *FD, page uintptr, src []byte) error {
			if _, err := f.Copy(page, addrOf(src), uintptr(ps), CopyModeDontWake); err != nil {
				return err
			}
			return f.Wake(page, uintptr(ps))
		}, func(src []byte) []byte { return src }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const pages = 4
			f := newFD(t, UserModeOnly, 0, FeatureThreadID)
			buf := mmapAnon(t, pages)
			if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing); err != nil {
				t.Fatal(err)
			}
			src := mmapAnon(t, 1)
			copy(src, pattern(ps, 0x5a))
			var mu sync.Mutex
			var msgs []Msg
			serve(t, f, 2, func(_ context.Context, m Msg) error {
				mu.Lock()
				msgs = append(msgs, m)
				mu.Unlock()
				err := tc.resolve(f, uintptr(m.Address), src)
				if IsExist(err) { // the same page reported twice after a signal
					return f.Wake(uintptr(m.Address), uintptr(ps))
				}
				return err
			})
			got := make([]byte, len(buf))
			tidp, done := onThread(func() { copy(got, buf) }) // user-mode read faults
			tid := int(tidp.Load())
			waitDone(t, done, "faulting reader")
			for p := 0; p < pages; p++ {
				if !bytes.Equal(got[p*ps:(p+1)*ps], tc.want(src)) {
					t.Errorf("page %d has the wrong content after resolution", p)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(msgs) < pages {
				t.Errorf("%d fault messages, want at least %d", len(msgs), pages)
			}
			for _, m := range msgs {
				switch {
				case m.Event != EventPagefault:
					t.Errorf("unexpected %v", m)
				case m.Address%uint64(ps) != 0 || m.Address < uint64(addrOf(buf)) || m.Address >= uint64(addrOf(buf))+uint64(len(buf)):
					t.Errorf("%v: address not a page of the buffer", m)
				case m.Flags&PagefaultFlagWrite != 0:
					t.Errorf("%v: a read fault reported as write", m)
				case f.Has(FeatureThreadID) && int(m.PTID) != tid:
					t.Errorf("%v: ptid %d, want the reader's tid %d", m, m.PTID, tid)
				}
			}
		})
	}
}

// tmpFile returns an open file of n bytes of pattern data.
func tmpFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	return fh
}

// TestKernelFault blocks a pread() in copy_to_user on a registered buffer
// — the sleep-inside-kmap vehicle of the kmaplocal suite — and checks it
// completes with the file's data once the faults are resolved.
func TestKernelFault(t *testing.T) {
	const pages = 4
	f := kernelFD(t, 0, FeatureThreadID)
	data := pattern(pages*ps, 0x33)
	fh := tmpFile(t, data)
	buf := mmapAnon(t, pages)
	if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing); err != nil {
		t.Fatal(err)
	}
	var faults, writes atomic.Int32
	var wrongTID atomic.Int32
	var tid *atomic.Int32 // set before tidReady is closed
	tidReady := make(chan struct{})
	serve(t, f, 1, func(_ context.Context, m Msg) error {
		<-tidReady
		faults.Add(1)
		if m.Flags&PagefaultFlagWrite != 0 {
			writes.Add(1)
		}
		if f.Has(FeatureThreadID) && int32(m.PTID) != tid.Load() {
			wrongTID.Add(1)
		}
		_, err := f.Zeropage(uintptr(m.Address), uintptr(ps), 0)
		if IsExist(err) {
			return f.Wake(uintptr(m.Address), uintptr(ps))
		}
		return err
	})
	var rerr error
	var done <-chan struct{}
	tid, done = onThread(func() { rerr = PreadFull(int(fh.Fd()), buf, 0) })
	close(tidReady)
	waitDone(t, done, "pread into the registered buffer")
	if rerr != nil {
		t.Fatalf("pread: %v", rerr)
	}
	if !bytes.Equal(buf, data) {
		t.Errorf("buffer differs from the file after the faults were resolved")
	}
	if faults.Load() < 1 || writes.Load() != faults.Load() {
		t.Errorf("%d faults (%d write faults): want at least one, all writes (copy_to_user)", faults.Load(), writes.Load())
	}
	if wrongTID.Load() != 0 {
		t.Errorf("%d faults carried another thread's id", wrongTID.Load())
	}
}

// TestUserModeOnlyKernelFault: with UserModeOnly the kernel's own access
// does not wait for a handler, it fails.
func TestUserModeOnlyKernelFault(t *testing.T) {
	f := newFD(t, UserModeOnly, 0, 0)
	fh := tmpFile(t, pattern(ps, 1))
	buf := mmapAnon(t, 1)
	if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pread(int(fh.Fd()), buf, 0); !errors.Is(err, unix.EFAULT) {
		t.Errorf("pread into a user-mode-only registered page: %v, want EFAULT", err)
	}
}

// TestDontWake: a COPY with CopyModeDontWake maps the page but leaves the
// waiter asleep until an explicit WAKE of its range. The waiter sits in a
// system call, where the Go runtime does not signal it, so nothing else
// can wake it.
func TestDontWake(t *testing.T) {
	f := kernelFD(t, 0, 0)
	data := pattern(ps, 0x77)
	fh := tmpFile(t, data)
	buf := mmapAnon(t, 1)
	if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing); err != nil {
		t.Fatal(err)
	}
	src := mmapAnon(t, 1)
	copied := make(chan struct{})
	serve(t, f, 1, func(_ context.Context, m Msg) error {
		_, err := f.Copy(uintptr(m.Address), addrOf(src), uintptr(ps), CopyModeDontWake)
		close(copied)
		return err
	})
	var rerr error
	_, done := onThread(func() { rerr = PreadFull(int(fh.Fd()), buf, 0) })
	select {
	case <-copied:
	case <-time.After(liveTimeout):
		t.Fatal("no fault reported")
	}
	select {
	case <-done:
		t.Fatal("the waiter finished without UFFDIO_WAKE")
	case <-time.After(200 * time.Millisecond):
	}
	if err := f.Wake(addrOf(buf)+uintptr(ps), uintptr(ps)); err != nil { // a neighbouring range
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("a WAKE of the next page woke the waiter")
	case <-time.After(100 * time.Millisecond):
	}
	if err := f.Wake(addrOf(buf), uintptr(ps)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, done, "pread after UFFDIO_WAKE")
	if rerr != nil || !bytes.Equal(buf, data) {
		t.Errorf("pread after wake: err %v, data equal %v", rerr, bytes.Equal(buf, data))
	}
}

// TestMove resolves a fault by moving a populated page into the hole.
func TestMove(t *testing.T) {
	f := newFD(t, UserModeOnly, 0, FeatureMove)
	if !f.Has(FeatureMove) {
		t.Skip("kernel without UFFD_FEATURE_MOVE")
	}
	buf := mmapAnon(t, 1)
	if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing); err != nil {
		t.Fatal(err)
	}
	src := mmapAnon(t, 1)
	want := pattern(ps, 0x11)
	copy(src, want)
	serve(t, f, 1, func(_ context.Context, m Msg) error {
		_, err := f.Move(uintptr(m.Address), addrOf(src), uintptr(ps), 0)
		return err
	})
	got := make([]byte, ps)
	_, done := onThread(func() { copy(got, buf) })
	waitDone(t, done, "reader of the moved page")
	if !bytes.Equal(got, want) {
		t.Errorf("moved page has the wrong content")
	}
	if !bytes.Equal(src, make([]byte, ps)) {
		t.Errorf("source still has data after UFFDIO_MOVE; want a hole (zeros)")
	}
}

// TestWriteProtect blocks a writer on a write-protected page and releases
// it by removing the protection (x86_64 kernels only).
func TestWriteProtect(t *testing.T) {
	f := newFD(t, UserModeOnly, 0, FeaturePagefaultFlagWP)
	if !f.Has(FeaturePagefaultFlagWP) {
		t.Skip("kernel without userfaultfd write protection (i386)")
	}
	buf := mmapAnon(t, 1)
	buf[0] = 1 // populate: WP works on present pages
	if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing|ModeWP); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteProtect(addrOf(buf), uintptr(ps), WriteProtectModeWP); err != nil {
		t.Fatal(err)
	}
	var flags atomic.Uint64
	var wrote atomic.Bool
	serve(t, f, 1, func(_ context.Context, m Msg) error {
		flags.Store(m.Flags)
		time.Sleep(50 * time.Millisecond)
		if wrote.Load() {
			return errors.New("write went through a write-protected page")
		}
		return f.WriteProtect(uintptr(m.Address), uintptr(ps), 0)
	})
	_, done := onThread(func() { buf[1] = 2; wrote.Store(true) })
	waitDone(t, done, "writer to the protected page")
	if want := PagefaultFlagWrite | PagefaultFlagWP; flags.Load() != want {
		t.Errorf("fault flags %#x, want WRITE|WP (%#x)", flags.Load(), want)
	}
	if buf[0] != 1 || buf[1] != 2 {
		t.Errorf("page content %v after unprotect", buf[:2])
	}
}

// TestHandlerConcurrent: several threads fault on distinct pages at once
// and a pool of handler goroutines resolves all of them.
func TestHandlerConcurrent(t *testing.T) {
	const pages, threads = 64, 8
	f := newFD(t, UserModeOnly, 0, 0)
	buf := mmapAnon(t, pages)
	if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing); err != nil {
		t.Fatal(err)
	}
	src := mmapAnon(t, pages)
	copy(src, pattern(len(src), 0x42))
	base := addrOf(buf)
	var seen atomic.Int32 // counted before resolving: Handled lags the wake-up
	h := serve(t, f, 3, func(_ context.Context, m Msg) error {
		seen.Add(1)
		off := uintptr(m.Address) - base
		_, err := f.Copy(uintptr(m.Address), addrOf(src)+off, uintptr(ps), 0)
		if IsExist(err) {
			return f.Wake(uintptr(m.Address), uintptr(ps))
		}
		return err
	})
	var wg sync.WaitGroup
	sums := make([]byte, pages)
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for p := i; p < pages; p += threads {
				sums[p] = buf[p*ps+p] // one user-mode fault per page
			}
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitDone(t, done, "concurrent faulting threads")
	for p := 0; p < pages; p++ {
		if sums[p] != src[p*ps+p] {
			t.Errorf("page %d: read %#x, want %#x", p, sums[p], src[p*ps+p])
		}
	}
	if !bytes.Equal(buf, src) {
		t.Errorf("buffer differs from the source after resolution")
	}
	if seen.Load() < pages {
		t.Errorf("handled %d messages, want at least %d", seen.Load(), pages)
	}
	if err := h.Stop(); err != nil || h.Handled() != uint64(seen.Load()) {
		t.Errorf("after Stop: err %v, Handled %d, callback saw %d", err, h.Handled(), seen.Load())
	}
}

// TestHandlerErrors: callback errors are collected, and Stop is prompt.
func TestHandlerErrors(t *testing.T) {
	f := newFD(t, UserModeOnly, 0, 0)
	buf := mmapAnon(t, 1)
	if _, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing); err != nil {
		t.Fatal(err)
	}
	h, err := Serve(context.Background(), f, 2, func(_ context.Context, m Msg) error {
		f.Zeropage(uintptr(m.Address), uintptr(ps), 0)
		return errors.New("boom")
	})
	if err != nil {
		t.Fatal(err)
	}
	_, done := onThread(func() { sink.Store(uint32(buf[0])) })
	waitDone(t, done, "reader")
	start := time.Now()
	err = h.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %s", d)
	}
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("boom")) {
		t.Errorf("Stop() = %v, want the callback's error", err)
	}
	if f.Flags()&unix.O_NONBLOCK == 0 {
		t.Errorf("Serve left the descriptor blocking")
	}
}

// TestRegisterUnregister: after UNREGISTER the range faults normally
// (zero page, no message); a misaligned range is refused with EINVAL and
// the error names the operation and the range.
func TestRegisterUnregister(t *testing.T) {
	f := newFD(t, UserModeOnly, 0, 0)
	buf := mmapAnon(t, 2)
	ioctls, err := f.Register(addrOf(buf), uintptr(len(buf)), ModeMissing)
	if err != nil {
		t.Fatal(err)
	}
	const copyBit, zeropageBit, wakeBit = 1 << 0x03, 1 << 0x04, 1 << 0x02
	if ioctls&(copyBit|zeropageBit|wakeBit) != copyBit|zeropageBit|wakeBit {
		t.Errorf("range ioctls %#x lack COPY/ZEROPAGE/WAKE", ioctls)
	}
	if err := f.Unregister(addrOf(buf), uintptr(len(buf))); err != nil {
		t.Fatal(err)
	}
	h := serve(t, f, 1, func(_ context.Context, m Msg) error {
		return fmt.Errorf("fault after UNREGISTER: %v", m)
	})
	_, done := onThread(func() { sink.Store(uint32(buf[0]) + uint32(buf[ps])) })
	waitDone(t, done, "reader of the unregistered range")
	if h.Handled() != 0 {
		t.Errorf("%d messages after UNREGISTER", h.Handled())
	}
	_, err = f.Register(addrOf(buf)+1, uintptr(ps), ModeMissing)
	var oe *OpError
	if !errors.Is(err, unix.EINVAL) || !errors.As(err, &oe) || oe.Addr != uint64(addrOf(buf)+1) || !strings.Contains(err.Error(), "UFFDIO_REGISTER") {
		t.Errorf("misaligned register: %v, want an UFFDIO_REGISTER *OpError with EINVAL and the address", err)
	}
}
