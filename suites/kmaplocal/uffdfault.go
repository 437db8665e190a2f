package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// faultIter is one COPY request that may fault on the worker's
// userfaultfd-registered buffer, as seen by the fault handler.
type faultIter struct {
	r      *kmtReq
	tid    int
	faults atomic.Int32
	// The mover changes the blocked thread's affinity from another thread.
	moveStarted atomic.Bool
	moveDone    chan struct{}
	moveErr     error
	moveDur     time.Duration
}

// faultWorker is one driver thread pinned to CPU a whose COPY requests
// fault on buf, with its own userfaultfd and handler goroutine.
type faultWorker struct {
	c     *tcase
	id    int
	a, b  int // home CPU, CPU the mover sends the blocked thread to (-1: none)
	dev   kmtDev
	u     *uffd.FD
	h     *uffd.Handler
	k     *counter
	sl    *slots
	hm    *lockedHighmem
	hrng  *rand.Rand // handler goroutine only
	cur   atomic.Pointer[faultIter]
	buf   []byte // registered MODE_MISSING, zapped before every request
	ref   []byte // plain memory: the same request without faults
	ref2  []byte // plain memory: a request with another seed
	src   []byte // COPY_FROM_USER data the handler copies into buf
	fill  []byte // COPY_TO_USER: what the handler's UFFDIO_COPY puts in buf
	bufsz int
}

// lockedHighmem is a highmem accumulator shared by workers.
type lockedHighmem struct {
	mu sync.Mutex
	highmem
}

func (h *lockedHighmem) sample(e *env, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.highmem.sample(e, b)
}

// driverUffdFault makes the driver's copy_to_user/copy_from_user, done
// with all `depth` pages mapped, fault on userfaultfd-registered memory:
// the driver thread then sleeps in handle_userfault() with every kmap
// live. The handler resolves the fault only after a random delay, while
// churn threads reuse the slots on the same CPU, and meanwhile moves the
// blocked thread to another CPU with sched_setaffinity. On i386 the task
// is migrate-disabled, so it must finish the section on its CPU (and the
// affinity call waits for the section to end); on x86_64 nothing pins it,
// which is allowed (and counted in migrated_in_section). Data must be
// exactly what the same request gives without faults.
func driverUffdFault(c *tcase) {
	c.dev().Close()
	before := c.stats(false)
	sl := newSlots()
	var k counter
	var hm lockedHighmem
	stopChurn := c.startChurn(c.intensity, 1000, sl, &k)
	var wg sync.WaitGroup
	id := 0
	var maxWait atomic.Int64
	for i, a := range c.env.cpus {
		b := -1
		if len(c.env.cpus) > 1 {
			b = c.env.cpus[(i+1)%len(c.env.cpus)]
		}
		for j := 0; j < c.intensity; j++ {
			w := &faultWorker{c: c, id: id, a: a, b: b, k: &k, sl: sl, hm: &hm, hrng: newRand(c.seed, uint64(id)|2<<32)}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.run(&maxWait)
			}()
			id++
		}
	}
	c.wait(&wg)
	stopChurn()
	k.report(c)
	// affinity_wait_max_us is a measurement.
	c.Metric("affinity_wait_max_us", float64(maxWait.Load()))
	c.Metric("slots_shared", float64(sl.shared()))
	if k.load("requests") == 0 {
		c.errorAll("no COPY request on userfaultfd memory completed")
	}
	c.churnRan(&k)
	if c.env.kmapReal && sl.shared() == 0 {
		c.errorAll("no fixmap slot was used by two threads: the churn threads never reused a faulting section's slots")
	}
	if len(c.env.cpus) > 1 && k.load("faults_in_section") > 0 && k.load("affinity_moves") == 0 {
		c.errorAll("%d faults in sections and no blocked thread was moved to another CPU (affinity_moves=0)", k.load("faults_in_section"))
	}
	if k.load("requests") > 0 && k.load("faults_in_section") == 0 {
		c.errorAll("%d COPY requests on userfaultfd memory and not one fault: the copies never slept inside the section", k.load("requests"))
	}
	if k.load("faults_in_section") > 10 && k.load("fault_op_switches") == 0 {
		c.errorAll("%d faults in sections but no voluntary switch counted inside any (nvcsw=0)", k.load("faults_in_section"))
	}
	hm.report(c, "the userfaultfd buffers the driver copied to/from")
	c.checkStats(before)
}

func (w *faultWorker) setup() error {
	var err error
	w.bufsz = kmtMaxDepth * pageSize
	for _, p := range []*[]byte{&w.buf, &w.ref, &w.ref2, &w.src, &w.fill} {
		if *p, err = mmapAnon(w.bufsz); err != nil {
			return err
		}
	}
	// Kernel-mode faults: no UserModeOnly.
	if w.u, err = uffd.New(unix.O_CLOEXEC|unix.O_NONBLOCK, 0, uffd.FeatureThreadID); err != nil {
		return err
	}
	if _, err = w.u.Register(addrOf(w.buf), uintptr(w.bufsz), uffd.ModeMissing); err != nil {
		return err
	}
	w.h, err = uffd.Serve(context.Background(), w.u, 1, w.handle)
	return err
}

func (w *faultWorker) teardown() {
	if w.h != nil {
		if err := w.h.Stop(); err != nil {
			w.c.fail("%s: cpu=%d depth=- page=-: fault handler: %v", w.c.name, w.a, err)
		}
	}
	if w.u != nil {
		w.u.Close()
	}
	for _, b := range [][]byte{w.buf, w.ref, w.ref2, w.src, w.fill} {
		if b != nil {
			munmap(b)
		}
	}
	if w.dev != nil {
		w.dev.Close()
	}
}

func (w *faultWorker) run(maxWait *atomic.Int64) {
	c := w.c
	tid, err := pinSelf(w.a)
	if err != nil {
		c.fail("%s: cpu=%d depth=- page=-: %v", c.name, w.a, err)
		return
	}
	var ok bool
	if w.dev, ok = c.openWorkerDev(w.a); !ok {
		return
	}
	defer w.teardown()
	if err := w.setup(); err != nil {
		c.fail("%s: cpu=%d depth=- page=-: setup: %v", c.name, w.a, err)
		return
	}
	rng := newRand(c.seed, uint64(w.id))
	for n := 0; n < 2 || c.Running(); n++ {
		op := uint32(opCopyToUser)
		if n%2 == 1 {
			op = opCopyFromUser
		}
		depth := c.randDepth(rng, op, 0)
		if !w.one(rng, tid, n, op, depth, maxWait) {
			return // the thread's state is unknown; stop this worker
		}
	}
}

// one runs a request on the registered buffer; false means the worker
// must stop.
func (w *faultWorker) one(rng *rand.Rand, tid, n int, op uint32, depth int, maxWait *atomic.Int64) bool {
	c := w.c
	size := depth * pageSize
	ulen := size // user_len: whole pages, or now and then ending mid-page
	if rng.IntN(4) == 0 {
		ulen = 1 + rng.IntN(size)
	}
	seed := rng.Uint64()
	pBuf, pRef := poisonPair(rng)
	if op == opCopyToUser {
		// The reference: the same request into plain, populated memory.
		fillWord(w.ref[:size], pRef)
		ref := &kmtReq{Op: opCopyToUser, Depth: uint32(depth), Seed: seed, UserBuf: uint64(addrOf(w.ref)), UserLen: uint64(ulen)}
		if !c.runReq(w.dev, w.id, w.a, ref) || !c.checkReq(ref, tid, w.sl, false) {
			return true
		}
		if i := poisonBroken(w.ref[:size], ulen, pRef); i >= 0 {
			c.fail("%s", describe(c.name, ref, problem{i / pageSize, fmt.Sprintf("COPY_TO_USER of %d bytes wrote at offset %d", ulen, i)}))
		}
		if n%4 == 0 {
			w.otherSeed(ref, pRef, tid)
		}
		fillWord(w.fill[:size], pBuf)
	} else {
		fillRandom(rng, w.src[:size])
	}
	if err := zap(w.buf); err != nil {
		c.fail("%s: cpu=%d depth=%d page=-: %v", c.name, w.a, depth, err)
		return false
	}
	r := &kmtReq{Op: op, Depth: uint32(depth), Seed: seed, UserBuf: uint64(addrOf(w.buf)), UserLen: uint64(ulen)}
	it := &faultIter{r: r, tid: tid, moveDone: make(chan struct{})}
	w.cur.Store(it)
	ran := c.runReq(w.dev, w.id, w.a, r)
	w.cur.Store(nil)
	moved := false
	if it.moveStarted.Load() {
		select {
		case <-it.moveDone:
		case <-time.After(30 * time.Second):
			c.fail("%s: cpu=%d depth=%d page=-: sched_setaffinity of the blocked thread did not return 30s after its section ended [%s]", c.name, w.a, depth, r)
			return false
		}
		if it.moveErr != nil {
			c.fail("%s: cpu=%d depth=%d page=-: moving the blocked thread: %v", c.name, w.a, depth, it.moveErr)
		} else {
			moved = true
			w.k.add("affinity_moves", 1)
			for us := it.moveDur.Microseconds(); ; {
				old := maxWait.Load()
				if us <= old || maxWait.CompareAndSwap(old, us) {
					break
				}
			}
		}
	}
	if ran {
		w.k.add("requests", 1)
		faults := int64(it.faults.Load())
		w.k.add("faults_in_section", faults)
		if faults > 0 {
			w.k.add("fault_op_switches", int64(r.Nvcsw))
		}
		w.k.add("sleeps_in_section", int64(r.Nvcsw))
		w.k.add("preemptions_in_section", int64(r.Nivcsw))
		if r.CPUBefore != r.CPUAfter {
			w.k.add("migrated_in_section", 1)
		}
		c.checkReq(r, tid, w.sl, moved)
		w.checkData(r, ulen, pBuf, pRef)
		w.hm.sample(c.env, w.buf[:ulen])
	}
	if moved {
		if cpu := getcpu(); cpu != w.b {
			c.fail("%s: cpu=%d depth=%d page=-: after its section the thread runs on cpu %d although its affinity was set to {%d}", c.name, w.a, depth, cpu, w.b)
		}
		if err := setAffinity(0, w.a); err != nil || getcpu() != w.a {
			c.fail("%s: cpu=%d depth=- page=-: moving back home: %v (on cpu %d)", c.name, w.a, err, getcpu())
			return false
		}
	}
	return true
}

// otherSeed checks that a different seed gives different pages: a copy
// that ignores the seed (or copies stale pages) would pass the
// determinism check alone.
func (w *faultWorker) otherSeed(ref *kmtReq, poison uint32, tid int) {
	c := w.c
	size := int(ref.UserLen)
	fillWord(w.ref2[:size], poison)
	r2 := *ref
	r2.Seed = ref.Seed ^ 0x9e3779b97f4a7c15
	r2.UserBuf = uint64(addrOf(w.ref2))
	if !c.runReq(w.dev, w.id, w.a, &r2) || !c.checkReq(&r2, tid, w.sl, false) {
		return
	}
	for _, p := range samePages(w.ref[:size], w.ref2[:size]) {
		c.fail("%s", describe(c.name, &r2, problem{p, fmt.Sprintf("COPY_TO_USER gave the same page with seeds %#x and %#x", ref.Seed, r2.Seed)}))
	}
}

// checkData compares the size bytes the request copied to or from the
// registered buffer.
func (w *faultWorker) checkData(r *kmtReq, size int, pBuf, pRef uint32) {
	c := w.c
	switch r.Op {
	case opCopyToUser:
		for _, m := range compareCopies(w.buf[:size], w.ref[:size], pBuf, pRef) {
			c.fail("%s", describe(c.name, r, problem{m.Page, "COPY_TO_USER into faulting memory: " + m.String()}))
		}
	case opCopyFromUser:
		if i := diffIndex(w.buf[:size], w.src[:size]); i >= 0 {
			c.fail("%s", describe(c.name, r, problem{i / pageSize, "user buffer after COPY_FROM_USER is not what UFFDIO_COPY placed there: " + firstDiff(w.buf[:size], w.src[:size], 0)}))
		}
	}
}

// handle serves one fault of the worker's buffer: check who faulted and
// how, start the mover, wait a random while (churn threads run on the
// CPU meanwhile), then resolve one page or the rest of the request's
// range, sometimes with DONTWAKE plus a separate WAKE.
func (w *faultWorker) handle(_ context.Context, m uffd.Msg) error {
	base := addrOf(w.buf)
	page := uintptr(m.Address) &^ uintptr(pageSize-1)
	if m.Event != uffd.EventPagefault {
		return fmt.Errorf("unexpected %v", m)
	}
	it := w.cur.Load()
	if it == nil {
		w.resolve(page, uintptr(pageSize), false, 0)
		return fmt.Errorf("fault %v outside any request", m)
	}
	r := it.r
	it.faults.Add(1)
	pg := int(page-base) / pageSize
	end := base + roundUp(uintptr(r.UserLen))
	if page < base || page >= end {
		w.failFault(r, pg, fmt.Sprintf("fault at %#x outside the user range [%#x, +%#x)", m.Address, base, r.UserLen))
	}
	if w.u.Has(uffd.FeatureThreadID) && int(m.PTID) != it.tid {
		w.failFault(r, pg, fmt.Sprintf("fault reported for thread %d, the driver thread is %d", m.PTID, it.tid))
	}
	if write := m.Flags&uffd.PagefaultFlagWrite != 0; write != (r.Op == opCopyToUser) {
		w.failFault(r, pg, fmt.Sprintf("%v during %s", m, opName(r.Op)))
	}
	if w.b >= 0 && it.moveStarted.CompareAndSwap(false, true) {
		go func() {
			t0 := time.Now()
			it.moveErr = setAffinity(it.tid, w.b) // waits for the section's end on i386
			it.moveDur = time.Since(t0)
			close(it.moveDone)
		}()
	}
	time.Sleep(time.Duration(200+w.hrng.IntN(3000)) * time.Microsecond)
	length := uintptr(pageSize)
	if w.hrng.IntN(2) == 0 && end > page {
		length = end - page
	}
	var mode uint64
	if w.hrng.IntN(4) == 0 {
		mode = uffd.CopyModeDontWake // same bit as ZeropageModeDontWake
	}
	zero := r.Op == opCopyToUser && w.hrng.IntN(2) == 0
	src := w.fill
	if r.Op == opCopyFromUser {
		src = w.src
	}
	if err := w.resolve(page, length, zero, mode, addrOf(src)+(page-base)); err != nil {
		return err
	}
	if zero {
		w.k.add("resolved_zeropage", 1)
	} else {
		w.k.add("resolved_copy", 1)
	}
	return nil
}

// failFault reports a problem seen while r is still inside the driver
// (its out fields are not written yet, so the CPU is the worker's home).
func (w *faultWorker) failFault(r *kmtReq, page int, msg string) {
	w.c.fail("%s: cpu=%d depth=%d page=%d: %s [%s]", w.c.name, w.a, r.Depth, page, msg, r)
}

// resolve fills [page, page+length) with the zero page or from src[0],
// retrying EAGAIN, accepting pages already there, and wakes explicitly
// after a DONTWAKE resolution. On failure it still tries to zero-fill
// and wake the page, so that a broken resolution fails the test instead
// of leaving the driver thread asleep for ever.
func (w *faultWorker) resolve(page, length uintptr, zero bool, mode uint64, src ...uintptr) error {
	var err error
	exist := false
	for done := uintptr(0); done < length; {
		var n int64
		if zero || len(src) == 0 {
			n, err = w.u.Zeropage(page+done, length-done, mode)
		} else {
			n, err = w.u.Copy(page+done, src[0]+done, length-done, mode)
		}
		done += uintptr(n)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if uffd.IsExist(err) {
			err, exist = nil, true
			done += uintptr(pageSize) // that page is there; go on after it
			continue
		}
		break
	}
	if err != nil {
		w.u.Zeropage(page, uintptr(pageSize), 0)
	}
	if mode != 0 || err != nil || exist {
		time.Sleep(100 * time.Microsecond)
		if werr := w.u.Wake(page, length); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// roundUp rounds n up to whole pages.
func roundUp(n uintptr) uintptr {
	return (n + uintptr(pageSize) - 1) &^ (uintptr(pageSize) - 1)
}

// poisonBroken returns the first offset at or after from where b no
// longer holds the poison word w it was filled with, or -1: a copy of
// from bytes must not write past them.
func poisonBroken(b []byte, from int, w uint32) int {
	for i := from; i < len(b); i++ {
		if b[i] != byte(w>>(8*(i%4))) {
			return i
		}
	}
	return -1
}
