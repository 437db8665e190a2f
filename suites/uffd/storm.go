package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// stormZero decides, per round and page, whether the handlers resolve a
// page with ZEROPAGE (one page in four) or with COPY from the source.
func stormZero(round uint32, page int) bool {
	x := round*0x9e3779b1 ^ uint32(page)*0x85ebca77
	x ^= x >> 15
	x *= 0x2c1b3c6d
	x ^= x >> 12
	return x%4 == 0
}

// stormSeed is the pattern seed of the storm's source pages.
const stormSeed = 0x5a

// collisionPage is the page of round n that threads 0 and 1 both touch
// first, and whose resolution waits until both faults were read: two
// handlers resolve it, and the second must get EEXIST. Odd rounds pick a
// page resolved by COPY, even rounds one resolved by ZEROPAGE, starting
// from a round-dependent page.
func collisionPage(n uint32, pages int) int {
	wantZero := n%2 == 0
	start := int(n*7919) % pages
	for i := 0; i < pages; i++ {
		if p := (start + i) % pages; stormZero(n, p) == wantZero {
			return p
		}
	}
	return start
}

// stormRound is what the handlers need to know about the current round.
type stormRound struct {
	n        uint32
	area     region
	faults   []atomic.Int32 // messages per page
	resolved []atomic.Int32 // successful COPY/ZEROPAGE per page
	claimed  []atomic.Bool  // a thread is about to touch the page first
	collide  int            // collisionPage
}

// stormWorker is one faulting thread, kept across rounds.
type stormWorker struct {
	id      int
	th      *thread
	start   chan *stormRound
	done    chan struct{}
	touched []bool
	lat     []time.Duration // latencies of the faults it raised first, bounded
	maxLat  time.Duration
	touches int64
	page    atomic.Int32 // page being touched, for a stuck report
	bad     int          // wrong values read this round
}

// latCap bounds each worker's latency samples.
const latCap = 1 << 14

// missingStorm is the uffd-stress analogue for MISSING faults: several
// threads read and write random words of a registered area at once (user-
// mode faults, many on the same pages), and a pool of handler goroutines
// resolves every fault with COPY from a source area or ZEROPAGE. A
// handler that loses the race for a page gets EEXIST and counts it as
// done without UFFDIO_WAKE: the winner's resolution must wake every
// thread waiting on the page. Each round every thread must finish, every
// value read must be the source's (writes store the source's value, so
// the content is fixed), every touched page must have been reported at
// least once and be mapped, and no untouched page may be. Reports the
// latency of faults as seen by the faulting threads: the access time of
// the first access to each page in a round, which always faults.
//
// Racing handlers are not left to chance: in every round threads 0 and 1
// first touch the same page (collisionPage), and its resolution waits
// until both faults were read, so two handlers resolve it and one must
// get EEXIST (COPY in odd rounds, ZEROPAGE in even ones) while its
// waiters are woken by the other's resolution. Each touched page must be
// resolved successfully exactly once.
func missingStorm(c *tcase) {
	p := c.Params()
	intensity := max(p.Intensity, 1)
	nThreads := min(6*intensity, 24)
	nHandlers := 3
	pages := min(256*intensity, 1024)
	touches := pages / 2
	seed := testSeed(p.Seed, c.Name())
	lim := &limiter{c: c}
	defer lim.flush()

	// Faulting threads block holding a P; with more Ps than blocked
	// threads the handlers always have one.
	old := runtime.GOMAXPROCS(nThreads + nHandlers + 2)
	defer runtime.GOMAXPROCS(old)

	f := c.newFD(0, 0, uffd.FeatureThreadID)
	src := c.anon(pages)
	copy(src.bytes(), pattern(src.n, stormSeed))
	zeros := make([]byte, pageSize)

	var cur atomic.Pointer[stormRound]
	var tids sync.Map // int32 -> true: the faulting threads
	var faults, eexist, zeropages atomic.Int64
	pool := c.startPool(f, nHandlers, lim, func(m uffd.Msg) error {
		r := cur.Load()
		if m.Event != uffd.EventPagefault {
			return fmt.Errorf("unexpected %v", m)
		}
		if r == nil || m.Address < uint64(r.area.addr()) || m.Address >= uint64(r.area.addr())+uint64(r.area.n) || m.Address%uint64(pageSize) != 0 {
			return fmt.Errorf("fault %v outside the round's area", m)
		}
		pg := int(uintptr(m.Address)-r.area.addr()) / pageSize
		seen := r.faults[pg].Add(1)
		faults.Add(1)
		if pg == r.collide && seen < 2 && !waitCount(&r.faults[pg], 2, waitDone) {
			lim.fail("round %d page %d: the collision page's second fault was not read within %s (%d message(s)); resolving it anyway",
				r.n, pg, waitDone, r.faults[pg].Load())
		}
		if m.Flags&^uffd.PagefaultFlagWrite != 0 {
			lim.fail("round %d page %d: fault flags %#x on a MISSING-only registration", r.n, pg, m.Flags)
		}
		if f.Has(uffd.FeatureThreadID) {
			if _, ok := tids.Load(int32(m.PTID)); !ok {
				lim.fail("round %d page %d: fault from thread %d, which is not a faulting thread", r.n, pg, m.PTID)
			}
		}
		var err error
		if stormZero(r.n, pg) {
			_, err = f.Zeropage(uintptr(m.Address), uintptr(pageSize), 0)
			zeropages.Add(1)
		} else {
			_, err = f.Copy(uintptr(m.Address), src.pageAddr(pg), uintptr(pageSize), 0)
		}
		if uffd.IsExist(err) {
			eexist.Add(1) // another handler mapped it and woke the waiters
			return nil
		}
		if err == nil {
			r.resolved[pg].Add(1)
		}
		return err
	})
	defer pool.stop()

	workers := make([]*stormWorker, nThreads)
	for i := range workers {
		w := &stormWorker{id: i, start: make(chan *stormRound), done: make(chan struct{}, 1),
			touched: make([]bool, pages), lat: make([]time.Duration, 0, latCap)}
		w.th = c.start(fmt.Sprintf("faulting thread %d", i), func() error {
			for r := range w.start {
				w.round(r, src, seed, touches)
				w.done <- struct{}{}
			}
			return nil
		})
		tids.Store(w.th.tid.Load(), true)
		workers[i] = w
	}
	defer func() {
		for _, w := range workers {
			close(w.start)
		}
	}()

	rounds := 0
	for n := uint32(1); n <= 2 || c.Running(); n++ {
		r := &stormRound{n: n, area: c.anon(pages), faults: make([]atomic.Int32, pages), resolved: make([]atomic.Int32, pages),
			claimed: make([]atomic.Bool, pages), collide: collisionPage(n, pages)}
		_, err := f.Register(r.area.addr(), uintptr(r.area.n), uffd.ModeMissing)
		c.check(err, "round %d: register", n)
		cur.Store(r)
		for _, w := range workers {
			w.start <- r
		}
		deadline := time.Now().Add(2 * waitDone)
		var stuck []string
		for _, w := range workers {
			if !recvWithin(w.done, time.Until(deadline)) {
				stuck = append(stuck, fmt.Sprintf("thread %d (tid %d) on page %d", w.id, w.th.tid.Load(), w.page.Load()))
			}
		}
		if len(stuck) > 0 {
			c.Fatalf("round %d: faulting threads still blocked after %s: %v (handlers handled %d faults, %d EEXIST)",
				n, 2*waitDone, stuck, faults.Load(), eexist.Load())
		}
		// A handler may still hold a message of this round that it read
		// before another handler's resolution released its thread.
		if !pool.quiesce(waitDone) {
			c.Fatalf("round %d: a fault handler is stuck in a resolution for %s", n, waitDone)
		}
		c.checkRound(r, workers, src, zeros, lim)
		cur.Store(nil)
		c.forget(r.area)
		c.check(r.area.unmap(), "round %d: munmap", n)
		rounds++
	}

	var lat []time.Duration
	var maxLat time.Duration
	var total int64
	for _, w := range workers {
		lat = append(lat, w.lat...)
		maxLat = max(maxLat, w.maxLat)
		total += w.touches
	}
	// threads, handlers and pages are the run's shape and the latencies
	// are measurements; the counts are checked by stormFloors.
	c.Metric("rounds", float64(rounds))
	c.Metric("threads", float64(nThreads))
	c.Metric("handlers", float64(nHandlers))
	c.Metric("pages", float64(pages))
	c.Metric("touches", float64(total))
	c.Metric("faults", float64(faults.Load()))
	c.Metric("eexist", float64(eexist.Load()))
	c.Metric("zeropages", float64(zeropages.Load()))
	c.Metric("fault_latency_p50_us", float64(percentile(lat, 50).Microseconds()))
	c.Metric("fault_latency_p99_us", float64(percentile(lat, 99).Microseconds()))
	c.Metric("fault_latency_max_us", float64(maxLat.Microseconds()))
	c.Logf("%d rounds, %d touches, %d faults (%d EEXIST), fault latency p50 %s p99 %s max %s",
		rounds, total, faults.Load(), eexist.Load(), percentile(lat, 50), percentile(lat, 99), maxLat)
	for _, e := range stormFloors(rounds, total, int64(rounds*nThreads*touches), faults.Load(), eexist.Load(), zeropages.Load()) {
		c.Errorf("%s", e)
	}
}

// waitCount waits up to d for n to reach at least want.
func waitCount(n *atomic.Int32, want int32, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for n.Load() < want {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// stormFloors checks the storm's counts against what its rounds
// guarantee: every thread made all its touches; each round's collision
// page drew two faults and one EEXIST; the even rounds' collision pages
// were resolved with ZEROPAGE.
func stormFloors(rounds int, touches, wantTouches, faults, eexist, zeropages int64) []string {
	var errs []string
	if touches != wantTouches {
		errs = append(errs, fmt.Sprintf("the faulting threads made %d touches in %d rounds, want %d", touches, rounds, wantTouches))
	}
	if faults < 2*int64(rounds) {
		errs = append(errs, fmt.Sprintf("%d faults reported in %d rounds, want at least 2 per round (the collision page's)", faults, rounds))
	}
	if eexist < int64(rounds) {
		errs = append(errs, fmt.Sprintf("%d EEXIST in %d rounds, want at least one per round: the losing resolution of a collision page must fail with EEXIST", eexist, rounds))
	}
	if rounds >= 2 && zeropages == 0 {
		errs = append(errs, fmt.Sprintf("no ZEROPAGE resolution in %d rounds, though every even round's collision page is resolved with ZEROPAGE", rounds))
	}
	return errs
}

// recvWithin receives from ch if it is ready now or becomes ready
// within d.
func recvWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	default:
	}
	if d <= 0 {
		return false
	}
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// round touches random words of r's area: reads, and one in four a write
// of the value the word must have, so that the content stays known.
func (w *stormWorker) round(r *stormRound, src region, seed uint64, touches int) {
	rng := newRand(seed, uint64(r.n)<<8|uint64(w.id))
	clear(w.touched)
	w.bad = 0
	pages := r.area.pages()
	for i := 0; i < touches; i++ {
		pg := rng.IntN(pages)
		if i == 0 && w.id < 2 {
			pg = r.collide // threads 0 and 1 meet there first
		}
		off := pg*pageSize + rng.IntN(pageSize/4)*4
		want := uint32(0)
		if !stormZero(r.n, pg) {
			want = *src.word(off)
		}
		ptr := r.area.word(off)
		// The first thread to touch a page in a round certainly faults:
		// its access time is a fault's latency (resolution included).
		first := r.claimed[pg].CompareAndSwap(false, true)
		w.page.Store(int32(pg))
		t0 := time.Now()
		var got uint32
		if rng.IntN(4) == 0 {
			atomic.StoreUint32(ptr, want)
			got = atomic.LoadUint32(ptr)
		} else {
			got = atomic.LoadUint32(ptr)
		}
		d := time.Since(t0)
		w.page.Store(-1)
		w.touches++
		w.touched[pg] = true
		if first {
			w.maxLat = max(w.maxLat, d)
			if len(w.lat) < latCap {
				w.lat = append(w.lat, d)
			}
		}
		if got != want {
			w.bad++
		}
	}
}

// checkRound checks a finished round: values the threads read, the page
// tables (touched pages mapped, untouched ones not) and the faults
// reported per page, then every touched page's content.
func (c *tcase) checkRound(r *stormRound, workers []*stormWorker, src region, zeros []byte, lim *limiter) {
	pages := r.area.pages()
	touched := make([]bool, pages)
	for _, w := range workers {
		if w.bad > 0 {
			lim.fail("round %d: thread %d read %d wrong values", r.n, w.id, w.bad)
		}
		for p, t := range w.touched {
			touched[p] = touched[p] || t
		}
	}
	present := c.present(r.area)
	if nf := r.faults[r.collide].Load(); nf < 2 {
		lim.fail("round %d page %d: the collision page drew %d fault message(s), want 2 (threads 0 and 1 both touched it first): the EEXIST path was not taken", r.n, r.collide, nf)
	}
	for p := 0; p < pages; p++ {
		nf := r.faults[p].Load()
		if nr := r.resolved[p].Load(); touched[p] && nr != 1 {
			how := "COPY"
			if stormZero(r.n, p) {
				how = "ZEROPAGE"
			}
			lim.fail("round %d page %d: %s succeeded %d times for %d fault message(s), want exactly once: every later resolution of a mapped page must fail with EEXIST", r.n, p, how, nr, nf)
		}
		switch {
		case touched[p] && !present[p]:
			lim.fail("round %d page %d: touched but not mapped", r.n, p)
			continue
		case !touched[p] && present[p]:
			lim.fail("round %d page %d: never touched but mapped", r.n, p)
		case touched[p] && nf == 0:
			lim.fail("round %d page %d: touched (was missing) but no fault was reported", r.n, p)
		case !touched[p] && nf != 0:
			lim.fail("round %d page %d: never touched but %d faults were reported", r.n, p, nf)
		}
		if !touched[p] {
			continue
		}
		want := src.page(p)
		if stormZero(r.n, p) {
			want = zeros
		}
		if !bytes.Equal(r.area.page(p), want) {
			lim.fail("round %d page %d: content is %s, want %s", r.n, p, describePage(r.area.page(p), stormSeed), describePage(want, stormSeed))
		}
	}
}

// handlerPool is the storm's fault handlers. Unlike uffd.Serve it can be
// quiesced: every read is bounded by readSlice, and a handler counts the
// reads it starts, so once it has started one after a point in time, the
// message it held then (if any) has been handled.
type handlerPool struct {
	cycles []atomic.Uint64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const readSlice = 20 * time.Millisecond

// startPool starts n handlers calling fn for each message of f; errors
// go to lim. The caller stops them (stop).
func (c *tcase) startPool(f *uffd.FD, n int, lim *limiter, fn func(uffd.Msg) error) *handlerPool {
	ctx, cancel := context.WithCancel(c.Context())
	p := &handlerPool{cycles: make([]atomic.Uint64, n), cancel: cancel}
	for i := 0; i < n; i++ {
		p.wg.Add(1)
		go func(i int) {
			defer p.wg.Done()
			for ctx.Err() == nil {
				p.cycles[i].Add(1)
				rctx, rcancel := context.WithTimeout(ctx, readSlice)
				m, err := f.ReadMsg(rctx)
				rcancel()
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
					continue
				}
				if err != nil {
					lim.fail("fault handler %d: %v", i, err)
					return
				}
				if err := fn(m); err != nil {
					lim.fail("fault handler %d: %v: %v", i, m, err)
				}
			}
		}(i)
	}
	return p
}

// stop stops the handlers and waits for them; it must run before the
// descriptor is closed (a read of a closed descriptor is an error).
func (p *handlerPool) stop() {
	p.cancel()
	p.wg.Wait()
}

// quiesce waits until every handler has started a new read, i.e.
// finished whatever message it held when quiesce was called.
func (p *handlerPool) quiesce(d time.Duration) bool {
	marks := make([]uint64, len(p.cycles))
	for i := range p.cycles {
		marks[i] = p.cycles[i].Load()
	}
	deadline := time.Now().Add(d)
	for i := range p.cycles {
		for p.cycles[i].Load() == marks[i] {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(time.Millisecond)
		}
	}
	return true
}
