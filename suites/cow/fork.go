package main

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Every fork here is a raw fork(): fork+exec would throw away the very
// mappings under test, and Go has no plain fork. The recipe (from
// suites/kmaplocal): the forking goroutine is locked to its OS thread and
// the garbage collector is off (the runner does both for every test), the
// child runs a prebuilt script (script.go) and leaves with exit_group.

// childTimeout bounds every wait for a child: a TCG guest is slow, but a
// child silent this long is stuck.
const childTimeout = 60 * time.Second

// forker owns what a child and its parent talk through: a pipe each way
// and a MAP_SHARED page for the child's report. It serves one child at a
// time.
type forker struct {
	toChild   [2]int
	fromChild [2]int
	repMem    []byte
	rep       *report
}

func newForker() (*forker, error) {
	f := &forker{toChild: [2]int{-1, -1}, fromChild: [2]int{-1, -1}}
	var err error
	if f.repMem, err = unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS); err != nil {
		return nil, fmt.Errorf("mmap report page: %w", err)
	}
	f.rep = (*report)(unsafe.Pointer(&f.repMem[0]))
	if err := unix.Pipe2(f.toChild[:], unix.O_CLOEXEC); err != nil {
		f.close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	if err := unix.Pipe2(f.fromChild[:], unix.O_CLOEXEC); err != nil {
		f.close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return f, nil
}

func (f *forker) close() {
	for _, fd := range []int{f.toChild[0], f.toChild[1], f.fromChild[0], f.fromChild[1]} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if f.repMem != nil {
		unix.Munmap(f.repMem)
	}
}

// script returns an empty script reporting into f.
func (f *forker) script() *script { return &script{rep: f.rep} }

// The child's ends: it waits on childIn and notifies on childOut.
func (f *forker) childIn() int  { return f.toChild[0] }
func (f *forker) childOut() int { return f.fromChild[1] }

// child is a running (or reaped) forked child.
type child struct {
	f      *forker
	s      *script
	pid    int
	reaped bool
	ws     unix.WaitStatus
}

// fork starts a child running s. The calling goroutine must be locked to
// its thread with the GC off.
func (f *forker) fork(s *script) (*child, error) {
	*f.rep = report{}
	pid, err := rawFork(s)
	if err != nil {
		return nil, err
	}
	return &child{f: f, s: s, pid: pid}, nil
}

// rawFork forks; in the child it runs s and never returns.
//
//go:norace
func rawFork(s *script) (int, error) {
	pid, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("fork: %w", e)
	}
	if pid == 0 {
		childMain(s)
	}
	return int(pid), nil
}

//go:nosplit
//go:norace
func childMain(s *script) {
	code := s.run()
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, code, 0, 0)
}

// await waits for the child's next notify; if the child exits instead,
// the error says why.
func (c *child) await() error {
	deadline := time.Now().Add(childTimeout)
	for time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(c.f.fromChild[0]), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 50)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			var b [1]byte
			if _, err := unix.Read(c.f.fromChild[0], b[:]); err != nil {
				return fmt.Errorf("pipe from child: %w", err)
			}
			return nil
		}
		if c.poll() {
			if err := c.failure(); err != nil {
				return err
			}
			return fmt.Errorf("child %d exited before notifying", c.pid)
		}
	}
	return fmt.Errorf("child %d silent for %s", c.pid, childTimeout)
}

// release lets the child past its next wait step.
func (c *child) release() error {
	if _, err := unix.Write(c.f.toChild[1], []byte{1}); err != nil {
		return fmt.Errorf("pipe to child: %w", err)
	}
	return nil
}

// poll reaps the child if it has exited.
func (c *child) poll() bool {
	if c.reaped {
		return true
	}
	pid, err := unix.Wait4(c.pid, &c.ws, unix.WNOHANG, nil)
	if err == nil && pid == c.pid {
		c.reaped = true
	}
	return c.reaped
}

// finish waits for the child to exit and returns its failure, if any.
func (c *child) finish() error {
	deadline := time.Now().Add(childTimeout)
	for !c.poll() {
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("child %d did not exit within %s", c.pid, childTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return c.failure()
}

// kill ends a child that is still running (deferred by every test).
func (c *child) kill() {
	if c == nil || c.reaped {
		return
	}
	unix.Kill(c.pid, unix.SIGKILL)
	if _, err := unix.Wait4(c.pid, &c.ws, 0, nil); err == nil {
		c.reaped = true
	}
}

// failure decodes a reaped child's exit into an error (nil for success).
func (c *child) failure() error {
	switch {
	case c.ws.Signaled():
		return fmt.Errorf("child %d killed by %v", c.pid, c.ws.Signal())
	case c.ws.Exited() && c.ws.ExitStatus() == 0:
		return nil
	}
	r := *c.f.rep
	if r.step == 0 || int(r.step) > c.s.n {
		return fmt.Errorf("child %d exited with status %d", c.pid, c.ws.ExitStatus())
	}
	return fmt.Errorf("child %d: %s", c.pid, describeFailure(&c.s.steps[r.step-1], int(r.step), &r))
}

// describeFailure turns a report about step st (number n) into words.
func describeFailure(st *step, n int, r *report) string {
	head := fmt.Sprintf("step %d (%s)", n, st.op)
	switch st.op {
	case opCheck, opPipeCheck:
		i := st.first + r.index
		what := "memory"
		if st.op == opPipeCheck {
			what = "pipe data"
			if r.errno != 0 {
				return fmt.Sprintf("%s: read: %v", head, syscall.Errno(r.errno))
			}
		}
		return fmt.Sprintf("%s: %s: %s at byte %#x of the area (page %d) is %#08x, want %#08x (%s); it is %s",
			head, st.why, what, i*4, int(i*4)/pageSize, r.got, r.want, tagName(st.tag), whoseWord(r.got, i))
	case opZero:
		return fmt.Sprintf("%s: %s: memory at byte %#x of the area (page %d) is %#08x, want 0; it is %s",
			head, st.why, r.index*4, int(r.index*4)/pageSize, r.got, whoseWord(r.got, r.index))
	case opVmsplice:
		return fmt.Sprintf("%s: transferred %d: %v", head, r.transferred, syscall.Errno(r.errno))
	case opCoherent:
		if r.index >= st.n {
			return fmt.Sprintf("%s: the child's copy is not one snapshot of the writer: its pages come from rounds %d..%d of %d pages",
				head, r.lo, r.hi, st.n)
		}
		return fmt.Sprintf("%s: the child's copy is not one snapshot of the writer: page %d is torn (first counter %d, last %d; pages seen so far span rounds %d..%d)",
			head, r.index, r.got, r.want, r.lo, r.hi)
	}
	return fmt.Sprintf("%s: %v", head, syscall.Errno(r.errno))
}
