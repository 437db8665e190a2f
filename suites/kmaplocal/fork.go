package main

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Fork/COW storm. A worker owns an anonymous region; every round it
// forks with a raw fork() (fork+exec would throw the shared mapping
// away), then parent and child write their own stamps into overlapping
// sets of pages, so both sides break COW on shared pages at the same
// time. On i386 HIGHMEM every COW copy is copy_user_highpage(): two
// nested kmap_local maps; with HIGHPTE fork's copy_pte_range also nests
// the PTE page maps. Each side must see only its own writes, the pre-fork
// snapshot elsewhere, and intact page bodies.
//
// Page layout: word 0 and the last word are the page's stamp, the words
// in between its body, fixed at setup (bodyWord). Stamps carry who wrote
// them in the top two bits (0 setup, 1 parent, 2 child), the round in
// bits 14..29 and the page in bits 0..13, so parent, child and pre-fork
// values never collide.

const (
	tagSetup  = 0
	tagParent = 1
	tagChild  = 2

	childStride  = 3 // the child writes pages with (p+round)%3 == 0
	parentStride = 2 // the parent those with (p+3*round)%2 == 0
)

//go:nosplit
func stampOf(tag, round uint32, page uintptr) uint32 {
	return tag<<30 | (round&0xffff)<<14 | uint32(page)&0x3fff
}

//go:nosplit
func bodyWord(page, word uintptr) uint32 {
	x := uint32(page)*0x9e3779b1 ^ uint32(word)*0x85ebca77 ^ 0x5bd1e995
	x ^= x >> 15
	x *= 0x2c1b3c6d
	x ^= x >> 12
	return x
}

//go:nosplit
func childWrites(page uintptr, round uint32) bool {
	return (page+uintptr(round))%childStride == 0
}

//go:nosplit
func parentWrites(page uintptr, round uint32) bool {
	return (page+3*uintptr(round))%parentStride == 0
}

// Child exit codes.
const (
	childOK       = 0
	childBadSnap  = 11 // a page's stamp before the child wrote is not the pre-fork one
	childBadBody  = 12 // a page body is wrong after the child's COW copy
	childBadAfter = 13 // after the parent's writes, the child sees something else than its own view
	childPipe     = 14
)

// childArgs is everything the child touches besides the region. It is
// allocated before the fork: the child must not allocate.
type childArgs struct {
	base       unsafe.Pointer // region
	npages     uintptr
	words      uintptr        // 32-bit words per page
	stamps     unsafe.Pointer // *[npages]uint32: pre-fork stamps
	report     unsafe.Pointer // shared page: phase, page, word, got, want
	round      uint32
	toParent   int32
	fromParent int32
	buf        [1]byte
}

// forkChild is the child's whole life. It runs on the parent's goroutine
// stack without a Go runtime behind it (no other threads, maybe a lock
// held by a thread that no longer exists): so it is nosplit (a stack
// check could find a preemption request and enter the scheduler), calls
// only nosplit code and raw system calls, allocates nothing and ends in
// exit_group.
//
//go:nosplit
//go:norace
func forkChild(a *childArgs) {
	last := a.words - 1
	for p := uintptr(0); p < a.npages; p++ {
		pg := unsafe.Add(a.base, p*a.words*4)
		pre := *(*uint32)(unsafe.Add(a.stamps, p*4))
		if w := *(*uint32)(pg); w != pre {
			childFail(a, childBadSnap, p, 0, w, pre)
		}
		if w := *(*uint32)(unsafe.Add(pg, last*4)); w != pre {
			childFail(a, childBadSnap, p, last, w, pre)
		}
		if !childWrites(p, a.round) {
			continue
		}
		st := stampOf(tagChild, a.round, p)
		*(*uint32)(pg) = st // COW break
		*(*uint32)(unsafe.Add(pg, last*4)) = st
		for w := uintptr(1); w < last; w++ {
			if got := *(*uint32)(unsafe.Add(pg, w*4)); got != bodyWord(p, w) {
				childFail(a, childBadBody, p, w, got, bodyWord(p, w))
			}
		}
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(a.toParent), uintptr(unsafe.Pointer(&a.buf[0])), 1); e != 0 {
		childFail(a, childPipe, 0, 0, uint32(e), 0)
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(a.fromParent), uintptr(unsafe.Pointer(&a.buf[0])), 1)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || n != 1 {
			childFail(a, childPipe, 1, 0, uint32(e), 0)
		}
		break
	}
	// The parent has written its pages: none of that may show here.
	for p := uintptr(0); p < a.npages; p++ {
		pg := unsafe.Add(a.base, p*a.words*4)
		want := *(*uint32)(unsafe.Add(a.stamps, p*4))
		if childWrites(p, a.round) {
			want = stampOf(tagChild, a.round, p)
		}
		if w := *(*uint32)(pg); w != want {
			childFail(a, childBadAfter, p, 0, w, want)
		}
		if w := *(*uint32)(unsafe.Add(pg, last*4)); w != want {
			childFail(a, childBadAfter, p, last, w, want)
		}
	}
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, childOK, 0, 0)
}

//go:nosplit
//go:norace
func childFail(a *childArgs, code int, page, word uintptr, got, want uint32) {
	r := a.report
	*(*uint32)(r) = uint32(code)
	*(*uint32)(unsafe.Add(r, 4)) = uint32(page)
	*(*uint32)(unsafe.Add(r, 8)) = uint32(word)
	*(*uint32)(unsafe.Add(r, 12)) = got
	*(*uint32)(unsafe.Add(r, 16)) = want
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, uintptr(code), 0, 0)
}

// forkWorker is one forking thread with its region.
type forkWorker struct {
	c       *tcase
	cpu     int
	region  []byte
	report  []byte // MAP_SHARED: survives the child
	stamps  []uint32
	args    childArgs
	p2c     [2]int // parent -> child pipe
	c2p     [2]int // child -> parent pipe
	words   int
	rounds  int
	cowSeen int // pages the parent wrote after a fork (each one a COW break)
}

func newForkWorker(c *tcase, cpu, size int) (*forkWorker, error) {
	w := &forkWorker{c: c, cpu: cpu, words: pageSize / 4}
	var err error
	if w.region, err = mmapAnon(size); err != nil {
		return nil, err
	}
	if w.report, err = unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS); err != nil {
		munmap(w.region)
		return nil, err
	}
	if err := unix.Pipe2(w.p2c[:], unix.O_CLOEXEC); err != nil {
		w.close()
		return nil, err
	}
	if err := unix.Pipe2(w.c2p[:], unix.O_CLOEXEC); err != nil {
		w.close()
		return nil, err
	}
	n := size / pageSize
	w.stamps = make([]uint32, n)
	for p := 0; p < n; p++ {
		pg := w.page(p)
		for i := 1; i < w.words-1; i++ {
			pg[i] = bodyWord(uintptr(p), uintptr(i))
		}
		st := stampOf(tagSetup, 0, uintptr(p))
		pg[0], pg[w.words-1] = st, st
		w.stamps[p] = st
	}
	w.args = childArgs{base: unsafe.Pointer(&w.region[0]), npages: uintptr(n), words: uintptr(w.words),
		stamps: unsafe.Pointer(&w.stamps[0]), report: unsafe.Pointer(&w.report[0]),
		toParent: int32(w.c2p[1]), fromParent: int32(w.p2c[0])}
	return w, nil
}

// page returns page p of the region as words.
func (w *forkWorker) page(p int) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(&w.region[p*pageSize])), w.words)
}

func (w *forkWorker) close() {
	for _, fd := range []int{w.p2c[0], w.p2c[1], w.c2p[0], w.c2p[1]} {
		if fd > 0 {
			unix.Close(fd)
		}
	}
	if w.report != nil {
		unix.Munmap(w.report)
	}
	if w.region != nil {
		munmap(w.region)
	}
}

// fork forks; in the child it never returns.
func (w *forkWorker) fork() (int, error) {
	pid, _, e := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("fork: %w", e)
	}
	if pid == 0 {
		forkChild(&w.args)
	}
	return int(pid), nil
}

// round does one fork round and returns a failure description, if any.
// The calling goroutine must be locked to its thread.
func (w *forkWorker) round(r uint32) error {
	w.args.round = r
	clear(w.report[:32])
	pid, err := w.fork()
	if err != nil {
		return err
	}
	reaped := false
	var ws unix.WaitStatus
	defer func() {
		if !reaped {
			unix.Kill(pid, unix.SIGKILL)
			unix.Wait4(pid, &ws, 0, nil)
		}
	}()
	// Break COW on the parent's pages while the child breaks it on its own.
	var bad []string
	for p := 0; p < len(w.stamps); p++ {
		if !parentWrites(uintptr(p), r) {
			continue
		}
		pg := w.page(p)
		st := stampOf(tagParent, r, uintptr(p))
		pg[0], pg[w.words-1] = st, st
		w.cowSeen++
		for i := 1; i < w.words-1; i++ {
			if pg[i] != bodyWord(uintptr(p), uintptr(i)) {
				bad = append(bad, fmt.Sprintf("page=%d word=%d: parent's copy has %#08x, want %#08x (body corrupted by the COW copy)", p, i, pg[i], bodyWord(uintptr(p), uintptr(i))))
				break
			}
		}
	}
	// Wait for the child's "written", then let it check.
	if err := awaitByte(w.c2p[0], pid, &ws, &reaped); err != nil {
		if reaped {
			return w.childError(pid, ws, "before its first report")
		}
		return err
	}
	if _, err := unix.Write(w.p2c[1], []byte{1}); err != nil {
		return fmt.Errorf("pipe to child: %w", err)
	}
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait4(%d): %w", pid, err)
		}
		reaped = true
		break
	}
	if !ws.Exited() || ws.ExitStatus() != childOK {
		return w.childError(pid, ws, "")
	}
	// The parent must see its own stamps and the pre-fork ones, never
	// the child's.
	for p := 0; p < len(w.stamps) && len(bad) < 4; p++ {
		want := w.stamps[p]
		if parentWrites(uintptr(p), r) {
			want = stampOf(tagParent, r, uintptr(p))
		}
		pg := w.page(p)
		for _, i := range []int{0, w.words - 1} {
			if pg[i] != want {
				who := "?"
				switch pg[i] >> 30 {
				case tagChild:
					who = "the child's write"
				case tagParent:
					who = "a parent stamp of another round"
				case tagSetup:
					who = "the setup stamp"
				}
				bad = append(bad, fmt.Sprintf("page=%d word=%d: parent sees %#08x (%s), want %#08x", p, i, pg[i], who, want))
				break
			}
		}
	}
	for p := range w.stamps {
		if parentWrites(uintptr(p), r) {
			w.stamps[p] = stampOf(tagParent, r, uintptr(p))
		}
	}
	w.rounds++
	if len(bad) > 0 {
		return fmt.Errorf("round %d: %s", r, joinMax(bad, 4))
	}
	return nil
}

func (w *forkWorker) childError(pid int, ws unix.WaitStatus, when string) error {
	rep := unsafe.Slice((*uint32)(unsafe.Pointer(&w.report[0])), 5)
	what := map[uint32]string{
		childBadSnap:  "saw a page stamp that is not the pre-fork snapshot",
		childBadBody:  "found a corrupted page body after its COW copy",
		childBadAfter: "sees something else than its own writes and the snapshot (the parent's writes leaked in?)",
		childPipe:     "pipe error",
	}[rep[0]]
	if ws.Signaled() {
		return fmt.Errorf("page=- child %d killed by %v %s", pid, ws.Signal(), when)
	}
	if what == "" {
		return fmt.Errorf("page=- child %d exited with status %d %s", pid, ws.ExitStatus(), when)
	}
	return fmt.Errorf("child %d %s: page=%d word=%d: got %#08x, want %#08x", pid, what, rep[1], rep[2], rep[3], rep[4])
}

// awaitByte waits for one byte on fd from child pid, noticing if the
// child exits first (then *reaped is set and ws filled).
func awaitByte(fd, pid int, ws *unix.WaitStatus, reaped *bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			var b [1]byte
			if _, err := unix.Read(fd, b[:]); err != nil {
				return fmt.Errorf("pipe from child: %w", err)
			}
			return nil
		}
		if wpid, _ := unix.Wait4(pid, ws, unix.WNOHANG, nil); wpid == pid {
			*reaped = true
			return errors.New("child exited")
		}
	}
	return fmt.Errorf("child %d silent for 2 minutes", pid)
}

func joinMax(s []string, n int) string {
	if len(s) > n {
		s = append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}

// forkRegionSize is each worker's region: large enough that fork copies
// many PTE pages, small enough for i386's 3 GiB of address space and a
// TCG guest's patience.
func forkRegionSize(arch string, intensity int) int {
	mb := 8
	if arch == "amd64" {
		mb = 16
	}
	return min(mb*intensity, 64) << 20
}

// forkCOWHighmem runs fork storms: one forking worker per CPU (×
// intensity), each pinned, all at once, so forks race with the other
// workers' COW faults on their regions.
func forkCOWHighmem(c *tcase) {
	old := debug.SetGCPercent(-1) // the child runs with a frozen runtime; keep the parent's quiet too
	defer debug.SetGCPercent(old)
	size := forkRegionSize(c.env.arch, c.intensity)
	var k counter
	var hm lockedHighmem
	var wg sync.WaitGroup
	id := 0
	for _, cpu := range c.env.cpus {
		for j := 0; j < c.intensity; j++ {
			wg.Add(1)
			go func(id, cpu int) {
				defer wg.Done()
				if _, err := pinSelf(cpu); err != nil {
					c.fail("%s: cpu=%d depth=2 page=-: %v", c.name, cpu, err)
					return
				}
				w, err := newForkWorker(c, cpu, size)
				if err != nil {
					c.fail("%s: cpu=%d depth=2 page=-: setup: %v", c.name, cpu, err)
					return
				}
				defer w.close()
				hm.sample(c.env, w.region)
				for r := uint32(1); r <= 2 || c.Running(); r++ {
					c.inflight.begin(id, fmt.Sprintf("fork round %d", r))
					err := w.round(r)
					c.inflight.end(id)
					if err != nil {
						page := ""
						if !strings.Contains(err.Error(), "page=") {
							page = " page=-"
						}
						c.fail("%s: cpu=%d depth=2 (copy_user_highpage)%s worker %d: %v", c.name, cpu, page, id, err)
						if w.rounds == 0 {
							return
						}
					}
				}
				hm.sample(c.env, w.region)
				k.add("forks", int64(w.rounds))
				k.add("parent_cow_pages", int64(w.cowSeen))
			}(id, cpu)
			id++
		}
	}
	c.wait(&wg)
	k.report(c)
	c.Metric("region_mb", float64(size>>20)) // the run's shape
	if k.load("forks") == 0 {
		c.errorAll("no fork round completed")
	}
	if k.load("parent_cow_pages") < k.load("forks") {
		c.errorAll("%d fork rounds broke COW on only %d parent pages: every round writes some", k.load("forks"), k.load("parent_cow_pages"))
	}
	hm.report(c, "the forked regions")
}
