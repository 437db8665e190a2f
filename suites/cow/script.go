package main

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A forked child cannot use the Go runtime (it has one thread, maybe a
// runtime lock held by a thread that no longer exists, and no stack
// growth), so what it does is a script: a fixed list of steps, built by
// the parent before fork() in memory the child inherits, and executed by
// nosplit code that only does loads, stores and raw system calls. When a
// step fails the child writes what it saw into a report in a MAP_SHARED
// page and exits; the parent turns that into a message.
//
// run() does not exit, so the host tests run scripts in-process.

type opcode uint32

const (
	opCheck     opcode = iota + 1 // n words at p must be pattern tag from index first
	opFill                        // write n words of pattern tag at p, from index first
	opNotify                      // write one byte to fd
	opWait                        // read one byte from fd
	opVmsplice                    // vmsplice(fd, iov at q, 1, 0); report.transferred = result
	opMunmap                      // munmap(p, n)
	opMprotect                    // mprotect(p, n, x)
	opPipeCheck                   // read report.transferred bytes from fd into q, check against pattern tag from first
	opIoctl                       // ioctl(fd, x, p)
	opCoherent                    // n pages at p: counters of a concurrent writer must form one snapshot (see tearing.go)
	opZero                        // n words at p must be zero
)

func (o opcode) String() string {
	switch o {
	case opCheck:
		return "check"
	case opFill:
		return "fill"
	case opNotify:
		return "notify"
	case opWait:
		return "wait"
	case opVmsplice:
		return "vmsplice"
	case opMunmap:
		return "munmap"
	case opMprotect:
		return "mprotect"
	case opPipeCheck:
		return "pipe-check"
	case opIoctl:
		return "ioctl"
	case opCoherent:
		return "coherent"
	case opZero:
		return "zero"
	}
	return "op?"
}

type step struct {
	op    opcode
	fd    int32
	tag   uint32
	p     unsafe.Pointer
	q     unsafe.Pointer
	n     uintptr
	x     uintptr
	first uintptr
	why   string // what a failed check means (for the parent's message)
}

// report is what a failing child leaves behind (in shared memory).
type report struct {
	step        uint32 // 1-based index of the failing step; 0 if none failed
	errno       uint32
	index       uintptr // first bad word (check, pipe-check) or page (coherent)
	got, want   uint32
	transferred uintptr // bytes vmsplice()d
	lo, hi      uint32  // coherent: smallest and largest counter seen
}

const maxSteps = 16

// script is a child's program. Build it with the methods below; each
// panics if the script is full (a bug in the test, found on the host).
type script struct {
	steps [maxSteps]step
	n     int
	rep   *report
	iov   unix.Iovec
}

func (s *script) add(st step) {
	if s.n == maxSteps {
		panic("script: too many steps")
	}
	s.steps[s.n] = st
	s.n++
}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// check: b must hold pattern tag, b's first word being index first;
// why says what a mismatch means.
func (s *script) check(b []byte, tag uint32, first int, why string) {
	s.add(step{op: opCheck, p: ptr(b), n: uintptr(len(b) / 4), tag: tag, first: uintptr(first), why: why})
}

// zero: b must hold zeros; why says what a non-zero word means.
func (s *script) zero(b []byte, why string) {
	s.add(step{op: opZero, p: ptr(b), n: uintptr(len(b) / 4), why: why})
}

// fill writes pattern tag over b.
func (s *script) fill(b []byte, tag uint32, first int) {
	s.add(step{op: opFill, p: ptr(b), n: uintptr(len(b) / 4), tag: tag, first: uintptr(first)})
}

func (s *script) notify(fd int) { s.add(step{op: opNotify, fd: int32(fd)}) }
func (s *script) wait(fd int)   { s.add(step{op: opWait, fd: int32(fd)}) }

// vmsplice splices b into the pipe fd (the child's R/O reference).
func (s *script) vmsplice(fd int, b []byte) {
	s.iov.Base = &b[0]
	s.iov.SetLen(len(b))
	s.add(step{op: opVmsplice, fd: int32(fd), q: unsafe.Pointer(&s.iov)})
}

func (s *script) munmap(b []byte) { s.add(step{op: opMunmap, p: ptr(b), n: uintptr(len(b))}) }

func (s *script) mprotect(b []byte, prot int) {
	s.add(step{op: opMprotect, p: ptr(b), n: uintptr(len(b)), x: uintptr(prot)})
}

// pipeCheck reads what vmsplice put into the pipe fd into buf and checks
// it against pattern tag from index 0.
func (s *script) pipeCheck(fd int, buf []byte, tag uint32, why string) {
	s.add(step{op: opPipeCheck, fd: int32(fd), q: ptr(buf), n: uintptr(len(buf)), tag: tag, why: why})
}

func (s *script) ioctl(fd int, req uintptr, arg unsafe.Pointer) {
	s.add(step{op: opIoctl, fd: int32(fd), x: req, p: arg})
}

// coherent checks the writer counters of the n pages in b (tearing.go).
func (s *script) coherent(b []byte) {
	s.add(step{op: opCoherent, p: ptr(b), n: uintptr(len(b) / pageSize)})
}

// run executes the steps and returns 0, or 10+i when step i failed (the
// child's exit status).
//
//go:nosplit
//go:norace
func (s *script) run() uintptr {
	for i := 0; i < s.n; i++ {
		if !s.exec(&s.steps[i]) {
			s.rep.step = uint32(i + 1)
			return uintptr(10 + i)
		}
	}
	return 0
}

//go:nosplit
//go:norace
func (s *script) exec(st *step) bool {
	r := s.rep
	switch st.op {
	case opCheck:
		if i := checkWords(st.p, st.n, st.tag, st.first); i != st.n {
			r.index, r.got, r.want = i, *(*uint32)(unsafe.Add(st.p, i*4)), patWord(st.tag, st.first+i)
			return false
		}
	case opFill:
		fillWords(st.p, st.n, st.tag, st.first)
	case opNotify:
		var b [1]byte
		_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(st.fd), uintptr(unsafe.Pointer(&b[0])), 1)
		return rawOK(r, e)
	case opWait:
		return rawRead1(r, st.fd)
	case opVmsplice:
		n, _, e := syscall.RawSyscall6(unix.SYS_VMSPLICE, uintptr(st.fd), uintptr(st.q), 1, 0, 0, 0)
		r.transferred = n
		if e != 0 || n == 0 {
			r.errno = uint32(e)
			return false
		}
	case opMunmap:
		_, _, e := syscall.RawSyscall(syscall.SYS_MUNMAP, uintptr(st.p), st.n, 0)
		return rawOK(r, e)
	case opMprotect:
		_, _, e := syscall.RawSyscall(syscall.SYS_MPROTECT, uintptr(st.p), st.n, st.x)
		return rawOK(r, e)
	case opPipeCheck:
		return pipeCheck(r, st)
	case opIoctl:
		_, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, uintptr(st.fd), st.x, uintptr(st.p))
		return rawOK(r, e)
	case opCoherent:
		return coherentPages(r, st.p, st.n)
	case opZero:
		for i := uintptr(0); i < st.n; i++ {
			if w := *(*uint32)(unsafe.Add(st.p, i*4)); w != 0 {
				r.index, r.got, r.want = i, w, 0
				return false
			}
		}
	default:
		return false
	}
	return true
}

//go:nosplit
func rawOK(r *report, e syscall.Errno) bool {
	if e != 0 {
		r.errno = uint32(e)
		return false
	}
	return true
}

//go:nosplit
//go:norace
func rawRead1(r *report, fd int32) bool {
	var b [1]byte
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || n != 1 {
			r.errno = uint32(e)
			return false
		}
		return true
	}
}

//go:nosplit
//go:norace
func pipeCheck(r *report, st *step) bool {
	want := r.transferred
	if want > st.n {
		want = st.n
	}
	for got := uintptr(0); got < want; {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(st.fd), uintptr(st.q)+got, want-got)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || n == 0 {
			r.errno = uint32(e)
			return false
		}
		got += n
	}
	words := want / 4
	if i := checkWords(st.q, words, st.tag, st.first); i != words {
		r.index, r.got, r.want = i, *(*uint32)(unsafe.Add(st.q, i*4)), patWord(st.tag, st.first+i)
		return false
	}
	return true
}
