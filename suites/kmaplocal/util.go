package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/suite"
)

var pageSize = os.Getpagesize()

// --- memory -------------------------------------------------------------

// mmapAnon maps private anonymous memory outside the Go heap: the only
// kind a suite may register with userfaultfd or hand to the driver while
// it sleeps, since the Go runtime never touches or moves it.
func mmapAnon(size int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return b, nil
}

// munmap unmaps memory from mmapAnon.
func munmap(b []byte) { unix.Munmap(b) }

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// zap drops the pages of b (MADV_DONTNEED) so that a userfaultfd
// registration reports them missing again.
func zap(b []byte) error {
	if err := unix.Madvise(b, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("madvise(DONTNEED): %w", err)
	}
	return nil
}

// --- patterns -----------------------------------------------------------

// newRand returns a generator derived from the run's seed and a stream
// number, so that every worker is reproducible from the printed seed.
func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream*0x9e3779b97f4a7c15+1))
}

// fillRandom fills b with pseudo-random bytes from rng.
func fillRandom(rng *rand.Rand, b []byte) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for ; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

// fillWord fills b with a repeated 32-bit word (poison).
func fillWord(b []byte, w uint32) {
	for i := 0; i+4 <= len(b); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], w)
	}
}

// poisonPair returns two different random poison words.
func poisonPair(rng *rand.Rand) (uint32, uint32) {
	a := rng.Uint32() | 1
	b := rng.Uint32() &^ 1
	return a, b
}

// --- threads and CPUs ---------------------------------------------------

// setAffinity binds thread tid (0 = the calling thread) to cpus. It uses
// unix.Syscall, not x/sys's SchedSetaffinity, which is a RawSyscall: when
// tid sits inside a kmap_local section (migrate_disable), the kernel makes
// the caller wait until the section ends (affine_move_task waits for the
// migration), and a raw system call blocked that long holds its P, stops
// the garbage collector and with it the goroutine that would end the
// section.
func setAffinity(tid int, cpus ...int) error {
	var set unix.CPUSet
	set.Zero()
	for _, c := range cpus {
		set.Set(c)
	}
	_, _, e := unix.Syscall(unix.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(set), uintptr(unsafe.Pointer(&set)))
	if e != 0 {
		return fmt.Errorf("sched_setaffinity(tid %d, cpus %v): %w", tid, cpus, e)
	}
	return nil
}

// getcpu returns the CPU the calling thread runs on.
func getcpu() int {
	var cpu uint32
	_, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0)
	if e != 0 {
		return -1
	}
	return int(cpu)
}

// pinSelf locks the calling goroutine to its OS thread and binds the
// thread to cpu. It never unlocks: a goroutine that exits while locked
// takes its thread with it, so a thread whose affinity a test changed is
// never handed back to the Go scheduler.
func pinSelf(cpu int) (tid int, err error) {
	runtime.LockOSThread()
	if err := setAffinity(0, cpu); err != nil {
		return 0, err
	}
	if got := getcpu(); got != cpu {
		return 0, fmt.Errorf("bound to cpu %d but running on cpu %d", cpu, got)
	}
	return unix.Gettid(), nil
}

// usableCPUs lists the CPUs the process may run on.
func usableCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for c := 0; c < len(set)*int(unsafe.Sizeof(set[0]))*8; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil, errors.New("empty CPU affinity mask")
	}
	return cpus, nil
}

// --- reporting ----------------------------------------------------------

// tb is what a test body needs from its runner (suite.TB: *suite.T in the
// guest, suitetest.T in host unit tests).
type tb = suite.TB

// tcase is one running test: its runner, parameters and environment, and
// a failure limiter — a broken kernel must produce a readable report, not
// a million identical lines.
type tcase struct {
	tb
	name      string
	intensity int
	seed      int64
	env       *env
	fails     atomic.Int64
	inflight  inflight
	// abandoned is set when wait gave up on stuck workers: memory they
	// may still be blocked on must then stay mapped (see munmap).
	abandoned atomic.Bool
	// maxDepth is the driver's deepest accepted request per op (stats).
	maxDepth map[uint32]int
	// done counts the driver requests the test completed, per op name:
	// the floor of the driver's own counters (statFloors).
	done counter
}

// munmap unmaps b unless workers were abandoned: a thread blocked in the
// kernel on b would fault on the hole when released and crash the suite
// (and with it the tests after this one).
func (c *tcase) munmap(b []byte) {
	if !c.abandoned.Load() {
		munmap(b)
	}
}

const maxReported = 25

// fail records a failure from any goroutine (never Fatalf there: it
// would only end that goroutine). Beyond maxReported they are counted.
func (c *tcase) fail(format string, args ...any) {
	if c.fails.Add(1) <= maxReported {
		c.Errorf(format, args...)
	}
}

// errorAll reports a failure about the test as a whole (a non-vacuity or
// bookkeeping check), in the same case/CPU/depth/page shape as the rest.
func (c *tcase) errorAll(format string, args ...any) {
	c.Errorf("%s: cpu=all depth=all page=-: %s", c.name, fmt.Sprintf(format, args...))
}

// finish reports the failures fail() did not print.
func (c *tcase) finish() {
	if n := c.fails.Load(); n > maxReported {
		c.Errorf("%s: %d more failures not shown", c.name, n-maxReported)
	}
}

// inflight tracks what each worker is doing, so that a worker stuck in
// the kernel is named in the failure instead of the suite just timing out.
type inflight struct {
	mu  sync.Mutex
	cur map[int]string
	at  map[int]time.Time
}

func (f *inflight) begin(id int, what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		f.cur, f.at = map[int]string{}, map[int]time.Time{}
	}
	f.cur[id], f.at[id] = what, time.Now()
}

func (f *inflight) end(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.cur, id)
	delete(f.at, id)
}

func (f *inflight) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []string
	for id, w := range f.cur {
		s = append(s, fmt.Sprintf("worker %d for %s: %s", id, time.Since(f.at[id]).Round(time.Millisecond), w))
	}
	sort.Strings(s)
	return strings.Join(s, "; ")
}

// stuckGrace is how long workers get to finish after the test's duration.
// It is long because TCG guests are slow, and bounded so that a worker
// stuck in the kernel becomes a named failure before the suite deadline.
var stuckGrace = 90 * time.Second

// wait waits for wg; if workers are still busy stuckGrace after the
// deadline, it fails naming what they are doing and returns false (the
// stuck goroutines are abandoned).
func (c *tcase) wait(wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		if !c.Running() {
			select {
			case <-done:
				return true
			case <-time.After(stuckGrace):
				c.errorAll("workers did not finish %s after the deadline (stuck in the kernel?): %s", stuckGrace, c.inflight.String())
				c.abandoned.Store(true)
				return false
			}
		}
		select {
		case <-done:
			return true
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// counter is a named set of atomic counters reported as metrics.
type counter struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

func (k *counter) get(name string) *atomic.Int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*atomic.Int64{}
	}
	if k.m[name] == nil {
		k.m[name] = new(atomic.Int64)
	}
	return k.m[name]
}

func (k *counter) add(name string, v int64) { k.get(name).Add(v) }

func (k *counter) load(name string) int64 { return k.get(name).Load() }

// report records every counter as a metric.
func (k *counter) report(c *tcase) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, v := range k.m {
		c.Metric(name, float64(v.Load()))
	}
}
