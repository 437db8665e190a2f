package main

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
	"github.com/kharness/kharness/suites/suite"
)

// tb is what a test body needs from its runner (suite.TB: *suite.T in the
// guest, suitetest.T in the host tests).
type tb = suite.TB

// Waits. TCG guests are slow and a woken thread must still be scheduled,
// so "finishes" waits are long; they only cost time when a kernel bug
// leaves a thread blocked. "Stays blocked" checks are short: a waiter
// released by mistake completes its system call within milliseconds.
const (
	waitDone    = 15 * time.Second
	waitBlocked = 250 * time.Millisecond
	// waitRelease is how long cleanup waits for threads still blocked
	// after the test's userfaultfds were closed.
	waitRelease = 10 * time.Second
)

// tcase is one running test: the runner plus everything the test set up,
// torn down in a fixed order whatever way the body ends (return, Fatalf,
// Skipf): child processes are killed, threads still blocked are released
// by closing the test's userfaultfds, handlers are stopped, descriptors
// closed and memory unmapped — unless a thread could not be released, in
// which case its memory stays mapped (unmapping it would crash the suite
// when the thread wakes up).
type tcase struct {
	tb
	mu       sync.Mutex
	children []int
	threads  []*thread
	handlers []*uffd.Handler
	fds      []*uffd.FD
	regions  []region
	closers  []func() error
}

// run adapts a test body to the suite API. Garbage collection is off
// while a body runs: a goroutine that faults on userfaultfd memory can be
// stopped where the runtime cannot preempt it (inside runtime.memmove,
// or in a raw fork() waiting for its FORK event to be read), and a
// stop-the-world would then wait for it while the handler goroutine that
// would resolve the fault waits for the stop-the-world. Tests allocate
// little; the collector runs between tests.
func run(body func(c *tcase)) func(t *suite.T) {
	return func(t *suite.T) { runBody(t, body) }
}

func runBody(t tb, body func(c *tcase)) {
	old := debug.SetGCPercent(-1)
	defer func() {
		debug.SetGCPercent(old)
		runtime.GC()
	}()
	c := &tcase{tb: t}
	defer c.finish()
	body(c)
}

// track registers a userfaultfd for closing at the end (and for the
// release of blocked threads).
func (c *tcase) track(f *uffd.FD) *uffd.FD {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fds = append(c.fds, f)
	return f
}

// onClose registers a close function (files, pipes) for the end.
func (c *tcase) onClose(fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closers = append(c.closers, fn)
}

// child registers a child process to be killed and reaped at the end if
// the test has not reaped it.
func (c *tcase) child(pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.children = append(c.children, pid)
}

// reaped removes a child the test waited for.
func (c *tcase) reaped(pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.children {
		if p == pid {
			c.children = append(c.children[:i], c.children[i+1:]...)
			return
		}
	}
}

// newFD opens a nonblocking userfaultfd (flags may add
// uffd.UserModeOnly) and handshakes it with the required features plus
// whichever optional ones the kernel has. A kernel without a required
// feature skips the test when its configuration leaves the feature out
// and fails it otherwise (featureVerdict), naming the missing bits and
// what the kernel offers.
func (c *tcase) newFD(flags int, required, optional uint64) *uffd.FD {
	have, err := uffd.Probe()
	if err != nil {
		c.Fatalf("userfaultfd: %v", err)
	}
	if miss := required &^ have; miss != 0 {
		c.need(miss, have)
	}
	f, err := uffd.New(flags|unix.O_CLOEXEC|unix.O_NONBLOCK, required, optional)
	if err != nil {
		c.Fatalf("userfaultfd with features %#x: %v", required, err)
	}
	return c.track(f)
}

// need ends the test for features the kernel does not offer (miss; it
// offers have): a skip or a failure, as featureVerdict decides.
func (c *tcase) need(miss, have uint64) {
	cfg, err := kernelConfig()
	featureVerdict(miss, have, cfg, err).Apply(c)
}

// serve starts a handler pool on f, stopped (and its errors reported) at
// the end.
func (c *tcase) serve(f *uffd.FD, workers int, fn uffd.HandleFunc) *uffd.Handler {
	h, err := uffd.Serve(c.Context(), f, workers, fn)
	if err != nil {
		c.Fatalf("serve: %v", err)
	}
	c.mu.Lock()
	c.handlers = append(c.handlers, h)
	c.mu.Unlock()
	return h
}

// finish tears the test down; see tcase.
func (c *tcase) finish() {
	c.mu.Lock()
	children, threads, handlers := c.children, c.threads, c.handlers
	fds, regions, closers := c.fds, c.regions, c.closers
	c.mu.Unlock()

	for _, pid := range children {
		unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
	}
	var stuck []string
	for _, th := range threads {
		if !th.wait(waitDone) {
			stuck = append(stuck, th.name)
		}
	}
	if len(stuck) > 0 {
		c.Errorf("threads %v still blocked in the kernel %s after the test; closing its userfaultfds to release them", stuck, waitDone)
		for _, f := range fds {
			f.Close()
		}
	}
	abandoned := false
	for _, th := range threads {
		if !th.wait(waitRelease) {
			c.Errorf("thread %s (tid %d) still blocked %s after its userfaultfds were closed; leaving its memory mapped", th.name, th.tid.Load(), waitRelease)
			abandoned = true
		}
	}
	for _, h := range handlers {
		if err := h.Stop(); err != nil {
			c.Errorf("fault handler: %v", err)
		}
	}
	for _, f := range fds {
		f.Close()
	}
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	if !abandoned {
		for _, r := range regions {
			r.unmap()
		}
	}
}

// errno returns the errno inside err, or 0.
func errno(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// errName names an error's errno for messages ("EINVAL", "success").
func errName(err error) string {
	if err == nil {
		return "success"
	}
	if e := errno(err); e != 0 {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return err.Error()
}

// wantErrno checks that err carries want; what names the operation.
func (c *tcase) wantErrno(what string, err error, want unix.Errno) {
	if errno(err) != want {
		c.Errorf("%s: got %s (%v), want %s", what, errName(err), err, unix.ErrnoName(want))
	}
}

// check reports a failed setup step as fatal.
func (c *tcase) check(err error, format string, args ...any) {
	if err != nil {
		c.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
