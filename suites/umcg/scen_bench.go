package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// scenarioBench measures context switches through umcg_wait against the
// same hand-off done with futexes, in the same run, with every thread on
// CPU 0:
//   - umcg: one server, two workers that do nothing but yield. A yield is
//     worker -> server (umcg_wait queues the worker and wakes the server)
//     -> next worker (the server's umcg_wait with next_tid): one hand-off
//     from a worker to the next, two context switches.
//   - futex: two threads ping-ponging a word with FUTEX_WAKE/FUTEX_WAIT:
//     one hand-off, one context switch.
//
// Both report hand-offs per second (from the loop counters) and context
// switches per second (from the threads' voluntary+involuntary switch
// counts in /proc), and the ratio umcg/futex.
func scenarioBench(r *reporter, p params) error {
	window := p.Dur / 2
	u, err := benchUMCG(window)
	if err != nil {
		return fmt.Errorf("umcg: %w", err)
	}
	f, err := benchFutex(window)
	if err != nil {
		return fmt.Errorf("futex: %w", err)
	}
	// Measurements (throughput); only "some progress" is checked below.
	r.Metric("umcg_handoffs_per_s", u.handoffs)
	r.Metric("umcg_switches_per_s", u.switches)
	r.Metric("futex_handoffs_per_s", f.handoffs)
	r.Metric("futex_switches_per_s", f.switches)
	if f.handoffs > 0 && f.switches > 0 {
		r.Metric("umcg_vs_futex_handoffs", u.handoffs/f.handoffs)
		r.Metric("umcg_vs_futex_switches", u.switches/f.switches)
	}
	r.Logf("over %s each on CPU 0: umcg %.0f hand-offs/s (%.0f context switches/s), futex %.0f hand-offs/s (%.0f context switches/s); umcg/futex = %.2f (hand-offs), %.2f (switches)",
		window, u.handoffs, u.switches, f.handoffs, f.switches, u.handoffs/f.handoffs, u.switches/f.switches)
	if u.handoffs == 0 || f.handoffs == 0 {
		r.Errorf("a benchmark made no progress: umcg %.0f/s, futex %.0f/s", u.handoffs, f.handoffs)
	}
	return nil
}

type rate struct{ handoffs, switches float64 }

// onCPU0 pins the calling thread (already locked) to CPU 0.
func onCPU0() error {
	var set unix.CPUSet
	set.Set(0)
	return unix.SchedSetaffinity(0, &set)
}

// ctxSwitches is a thread's voluntary+nonvoluntary context switches.
func ctxSwitches(tid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[0], "ctxt_switches:") {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", line, err)
			}
			n += v
		}
	}
	return n, nil
}

func sumSwitches(tids []int) (int64, error) {
	var n int64
	for _, t := range tids {
		v, err := ctxSwitches(t)
		if err != nil {
			return 0, err
		}
		n += v
	}
	return n, nil
}

// measure samples count and the threads' switches around window.
func measure(window time.Duration, count func() uint64, tids []int) (rate, error) {
	time.Sleep(window / 10) // warm up
	s0, err := sumSwitches(tids)
	if err != nil {
		return rate{}, err
	}
	c0, t0 := count(), time.Now()
	time.Sleep(window)
	c1, t1 := count(), time.Now()
	s1, err := sumSwitches(tids)
	if err != nil {
		return rate{}, err
	}
	sec := t1.Sub(t0).Seconds()
	return rate{handoffs: float64(c1-c0) / sec, switches: float64(s1-s0) / sec}, nil
}

func benchUMCG(window time.Duration) (rate, error) {
	a, err := umcg.NewArena(8)
	if err != nil {
		return rate{}, err
	}
	defer a.Close()
	s, err := umcg.NewServer(a, 0, umcg.ServerConfig{Clock: unix.CLOCK_MONOTONIC})
	if err != nil {
		return rate{}, err
	}
	var srvErr atomic.Pointer[error]
	go func() {
		runtime.LockOSThread()
		if err := onCPU0(); err != nil {
			srvErr.Store(&err)
			return
		}
		if err := s.Run(); err != nil {
			srvErr.Store(&err)
		}
	}()
	var stop atomic.Bool
	var yields atomic.Uint64
	var running, left atomic.Int32
	var wErr atomic.Pointer[error]
	var tids [2]atomic.Int32
	for i := 0; i < 2; i++ {
		w, err := s.NewWorker(i)
		if err != nil {
			return rate{}, err
		}
		go func() {
			defer left.Add(1)
			runtime.LockOSThread()
			if err := onCPU0(); err != nil {
				wErr.Store(&err)
				w.Abandon()
				return
			}
			if err := w.Register(); err != nil {
				wErr.Store(&err)
				w.Abandon()
				return
			}
			tids[w.ID].Store(int32(w.TID()))
			running.Add(1)
			for !stop.Load() {
				if err := w.Yield(); err != nil && err != unix.EAGAIN {
					wErr.Store(&err)
					break
				}
				yields.Add(1)
			}
			if err := w.Unregister(true); err != nil {
				wErr.Store(&err)
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); running.Load() < 2; time.Sleep(time.Millisecond) {
		if e := wErr.Load(); e != nil {
			return rate{}, *e
		}
		if e := srvErr.Load(); e != nil {
			return rate{}, *e
		}
		if time.Now().After(deadline) {
			return rate{}, fmt.Errorf("workers did not start within 10s")
		}
	}
	res, merr := measure(window, yields.Load, []int{s.TID(), int(tids[0].Load()), int(tids[1].Load())})
	stop.Store(true)
	for deadline := time.Now().Add(10 * time.Second); left.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return rate{}, fmt.Errorf("workers did not stop within 10s (yields %d)", yields.Load())
		}
	}
	done := make(chan struct{})
	go func() { s.Close(unix.SIGURG); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return rate{}, fmt.Errorf("server did not exit within 10s")
	}
	if e := wErr.Load(); e != nil {
		return rate{}, *e
	}
	if e := srvErr.Load(); e != nil {
		return rate{}, *e
	}
	if vs, n := s.Violations(); n > 0 {
		return rate{}, fmt.Errorf("server violations: %v", vs)
	}
	return res, merr
}

func benchFutex(window time.Duration) (rate, error) {
	var turn uint32
	var stop atomic.Bool
	var count atomic.Uint64
	var tids [2]atomic.Int32
	var left atomic.Int32
	const done = 2
	for me := uint32(0); me < 2; me++ {
		go func() {
			defer left.Add(1)
			runtime.LockOSThread()
			onCPU0()
			tids[me].Store(int32(unix.Gettid()))
			other := 1 - me
			w := uintptr(unsafe.Pointer(&turn))
			for {
				t := atomic.LoadUint32(&turn)
				if t == done {
					return
				}
				if t != me {
					unix.Syscall6(unix.SYS_FUTEX, w, futexWaitPrivate, uintptr(t), 0, 0, 0)
					continue
				}
				count.Add(1)
				if stop.Load() {
					atomic.StoreUint32(&turn, done)
				} else {
					atomic.StoreUint32(&turn, other)
				}
				unix.Syscall6(unix.SYS_FUTEX, w, futexWakePrivate, 1, 0, 0, 0)
			}
		}()
	}
	for tids[0].Load() == 0 || tids[1].Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	res, err := measure(window, count.Load, []int{int(tids[0].Load()), int(tids[1].Load())})
	stop.Store(true)
	for deadline := time.Now().Add(10 * time.Second); left.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return rate{}, fmt.Errorf("ping-pong threads did not stop")
		}
	}
	return res, err
}
