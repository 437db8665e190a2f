package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// sched is one scenario's M:N scheduler: an arena, servers, workers with
// their echo threads, and the coordinator (the child's main goroutine)
// that starts them, watches them and checks what they recorded.
type sched struct {
	r    *reporter
	p    params
	a    *umcg.Arena
	pid  int
	srvs []*srvCtx
	stop atomic.Bool // workers finish their op and leave

	wkMu sync.Mutex               // serialises additions to wks
	wks  atomic.Pointer[[]*wkCtx] // copy-on-write: workers read it lock-free

	mem    []byte // futex words and fault pages of all workers
	shared []byte // MAP_SHARED report words of forked children

	replace bool     // workers that exit get a successor (lifecycle)
	retired []*wkCtx // workers replaced by a successor (under wkMu)
	total   int      // workers ever started (under wkMu)
	noMore  bool     // said so once: no more successors
	nextID  int
	base    pins
	pinsOK  bool
	maxHeld int64
}

// srvCtx is a server and what its workers share.
type srvCtx struct {
	s     *umcg.Server
	owner atomic.Int32 // 1 + ID of the worker that last entered an on-cpu section
	err   atomic.Pointer[error]
	mark  progressMark
	r2    time.Time // since when it looks asleep with work queued
	loops uint64
}

// Worker phases.
const (
	phNew = iota
	phRegistering
	phRunning
	phDone   // unregistered for good
	phExited // left its thread while registered (or died trying)
	phFailed // registration failed
)

var phaseNames = []string{"new", "registering", "running", "done", "exited", "register-failed"}

// wkCtx is one worker and its resources.
type wkCtx struct {
	sc   *sched
	srv  *srvCtx
	w    *umcg.Worker
	id   int
	rng  uint64
	body func(k *wkCtx) bool // one round; false: the worker ends

	phase      atomic.Int32
	progress   atomic.Uint64
	lastOp     atomic.Int32
	ops        [nOps]atomic.Uint64
	blocks     atomic.Uint64
	rejoins    atomic.Uint64
	forks      atomic.Uint64
	preempts   atomic.Uint64 // preemptions it noticed (preempt scenario)
	spins      atomic.Uint64
	spinBlocks atomic.Uint64 // spins cut short by a block
	coop       atomic.Uint64 // TF_PREEMPT taken cooperatively

	yieldEAGAIN    atomic.Uint64
	ev             evlog
	fatalErr       atomic.Pointer[error]
	registerFailed bool
	replaced       bool // a successor was started (coordinator only)
	echoClosed     bool // coordinator only
	announced      bool // coordinator only
	mark           progressMark

	futex      *uint32
	page       []byte
	report     []uint32
	reqW, repR int // the worker's ends of its echo pipes
	reqR, repW int // the echo thread's ends
	buf        [2]byte
	sink       uint64
	forkArgs   forkArgs
}

type progressMark struct {
	v  uint64
	at time.Time
}

const (
	memPerWorker = 8192 // a page for the futex word, a page to fault on
	maxWorkers   = 96
)

// newSched maps the arena and the workers' memory.
func newSched(r *reporter, p params) (*sched, error) {
	a, err := umcg.NewArena(p.threads() + maxWorkers + 64) // at least two pages
	if err != nil {
		return nil, err
	}
	sc := &sched{r: r, p: p, a: a, pid: unix.Getpid()}
	sc.wks.Store(&[]*wkCtx{})
	if sc.mem, err = unix.Mmap(-1, 0, maxWorkers*memPerWorker, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap worker memory: %w", err)
	}
	if sc.shared, err = unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS); err != nil {
		return nil, fmt.Errorf("mmap shared report page: %w", err)
	}
	r.emit(record{Kind: recArena, Addr: uint64(a.Base()), N: a.Len()})
	if sc.base, err = readPins(); err == nil {
		sc.pinsOK = true
	} else {
		// Every kernel since 5.7 has the counters: without them the
		// pin-leak oracle cannot run, and that is no pass.
		r.Errorf("the pin balance cannot be checked: %v", err)
	}
	return sc, nil
}

// addServer creates a server and starts its thread.
func (sc *sched) addServer(cfg umcg.ServerConfig) (*srvCtx, error) {
	s, err := umcg.NewServer(sc.a, len(sc.srvs), cfg)
	if err != nil {
		return nil, err
	}
	c := &srvCtx{s: s}
	sc.srvs = append(sc.srvs, c)
	go func() {
		if err := s.Run(); err != nil {
			c.err.Store(&err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Registered() {
		if e := c.err.Load(); e != nil {
			return nil, *e
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("server %d did not register within 10s", s.ID)
		}
		time.Sleep(time.Millisecond)
	}
	sc.r.emit(record{Kind: recTask, Msg: "server", Slot: s.Slot, TID: s.TID(), ID: s.ID})
	return c, nil
}

// addPool adds p.Servers servers configured by cfg, with p.Workers
// workers running body each.
func (sc *sched) addPool(cfg umcg.ServerConfig, body func(*wkCtx) bool) error {
	for i := 0; i < sc.p.Servers; i++ {
		c, err := sc.addServer(cfg)
		if err != nil {
			return err
		}
		for j := 0; j < sc.p.Workers; j++ {
			if _, err := sc.addWorker(c, body); err != nil {
				return err
			}
		}
	}
	return nil
}

// addWorker creates a worker of c with its echo thread and starts it.
func (sc *sched) addWorker(c *srvCtx, body func(*wkCtx) bool) (*wkCtx, error) {
	sc.wkMu.Lock()
	defer sc.wkMu.Unlock()
	id := sc.nextID
	if id >= maxWorkers {
		return nil, fmt.Errorf("more than %d workers", maxWorkers)
	}
	k, err := sc.newWorker(c, body, id)
	if err != nil {
		return nil, err
	}
	sc.nextID++
	sc.total++
	old := *sc.wks.Load()
	nw := append(append([]*wkCtx(nil), old...), k)
	sc.wks.Store(&nw)
	k.start()
	return k, nil
}

// succeed replaces worker old, which has left for good and whose server
// saw it go, with a new worker of the same ID (its memory, its place in
// the list) on the same server.
func (sc *sched) succeed(old *wkCtx) (*wkCtx, error) {
	sc.wkMu.Lock()
	defer sc.wkMu.Unlock()
	if err := old.srv.s.Release(old.w); err != nil {
		return nil, err
	}
	k, err := sc.newWorker(old.srv, old.body, old.id)
	if err != nil {
		return nil, err
	}
	cur := *sc.wks.Load()
	nw := append([]*wkCtx(nil), cur...)
	nw[old.id] = k
	sc.retired = append(sc.retired, old)
	sc.wks.Store(&nw)
	sc.total++
	k.start()
	return k, nil
}

// newWorker builds worker id of c (not started).
func (sc *sched) newWorker(c *srvCtx, body func(*wkCtx) bool, id int) (*wkCtx, error) {
	w, err := c.s.NewWorker(id)
	if err != nil {
		return nil, err
	}
	m := sc.mem[id*memPerWorker : (id+1)*memPerWorker]
	k := &wkCtx{sc: sc, srv: c, w: w, id: id, body: body, rng: uint64(sc.p.Seed)*0x9e3779b97f4a7c15 + uint64(sc.total)*0xbf58476d1ce4e5b9 | 1,
		futex: (*uint32)(unsafe.Pointer(&m[0])), page: m[4096:],
		report: unsafe.Slice((*uint32)(unsafe.Pointer(&sc.shared[id*8])), 2)}
	var req, rep [2]int
	if err := unix.Pipe2(req[:], unix.O_CLOEXEC); err != nil {
		w.Abandon()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	if err := unix.Pipe2(rep[:], unix.O_CLOEXEC); err != nil {
		w.Abandon()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	k.reqR, k.reqW, k.repR, k.repW = req[0], req[1], rep[0], rep[1]
	return k, nil
}

func (k *wkCtx) start() {
	go k.echo()
	go k.main()
}

// all is every worker that ran: the current ones and those replaced.
func (sc *sched) all() []*wkCtx {
	sc.wkMu.Lock()
	defer sc.wkMu.Unlock()
	return append(append([]*wkCtx(nil), sc.retired...), sc.workers()...)
}

// worker returns worker id, or nil; lock-free (workers call it).
func (sc *sched) worker(id int) *wkCtx {
	ws := *sc.wks.Load()
	if id < 0 || id >= len(ws) {
		return nil
	}
	return ws[id]
}

func (sc *sched) nWorkers() int { return len(*sc.wks.Load()) }

func (sc *sched) workers() []*wkCtx { return *sc.wks.Load() }

// main is the worker's thread: register, run rounds of the body until
// asked to stop, leave.
func (k *wkCtx) main() {
	k.phase.Store(phRegistering)
	if err := k.w.Register(); err != nil {
		k.fatal(err)
		k.w.Abandon()
		k.phase.Store(phFailed)
		return
	}
	k.phase.Store(phRunning)
	end := opExitUnreg
	for !k.sc.stop.Load() {
		if !k.body(k) {
			end = int(k.lastOp.Load())
			break
		}
		k.progress.Add(1)
	}
	if k.registerFailed {
		k.phase.Store(phFailed)
		return
	}
	if end == opExit {
		// Leave the thread while still registered: the kernel's exit
		// hook makes the worker NONE and wakes the server.
		k.w.MarkFinal()
		k.phase.Store(phExited)
		return
	}
	if err := k.w.Unregister(true); err != nil {
		k.fatal(err)
		k.phase.Store(phExited) // the thread's exit cleans up
		return
	}
	k.phase.Store(phDone)
}

func (k *wkCtx) fatal(err error) { k.fatalErr.CompareAndSwap(nil, &err) }

// mixRound is the body of the mix scenarios: one random op.
func mixRound(mix [nOps]int) func(k *wkCtx) bool {
	total := 0
	for _, w := range mix {
		total += w
	}
	return func(k *wkCtx) bool {
		op := k.pickOp(&mix, total)
		k.lastOp.Store(int32(op))
		k.ops[op].Add(1)
		return k.doOp(op)
	}
}

// echo answers the worker's pipe requests: at once, or only once it sees
// the worker BLOCKED (bounded, so a kernel that never says BLOCKED costs
// time and a recorded evNoBlock, not a hang).
func (k *wkCtx) echo() {
	var b [1]byte
	for {
		n, err := unix.Read(k.reqR, b[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n != 1 {
			unix.Close(k.reqR)
			unix.Close(k.repW)
			return
		}
		if b[0] == echoWhenBlocked {
			deadline := time.Now().Add(echoBlockWait)
			for umcg.StateOf(k.w.T.State()) != umcg.StateBlocked && time.Now().Before(deadline) {
				nanosleep(20_000)
			}
		}
		unix.Write(k.repW, b[:])
	}
}

// Echo requests.
const (
	echoNow         = 1
	echoWhenBlocked = 2
	echoBlockWait   = time.Second
)

// closeEchoes ends the echo threads once no worker uses them.
func (sc *sched) closeEchoes() {
	for _, k := range sc.workers() {
		k.closeEcho()
	}
}

// closeFinishedEchoes ends the echo threads of workers that are gone, so
// that a long lifecycle run does not pile up threads.
func (sc *sched) closeFinishedEchoes() {
	for _, k := range sc.workers() {
		if k.phase.Load() >= phDone {
			k.closeEcho()
		}
	}
}

// closeEcho closes the worker's ends of its echo pipes (once); the echo
// thread then sees EOF and closes its own.
func (k *wkCtx) closeEcho() {
	if k.echoClosed {
		return
	}
	k.echoClosed = true
	unix.Close(k.reqW)
	unix.Close(k.repR)
}

// run starts nothing by itself: the scenario added servers and workers.
// It lets them run for p.Dur while watching them, stops them, waits for
// every worker and server to leave, and checks what they recorded.
func (sc *sched) run(tick func(now time.Time)) error {
	start := time.Now()
	if err := sc.waitPhase(func(k *wkCtx) bool { return k.phase.Load() >= phRunning }, "register"); err != nil {
		return err
	}
	sc.announceNew()
	sc.r.Logf("%d servers, %d workers running", len(sc.srvs), sc.nWorkers())
	lastPins := time.Now()
	for time.Since(start) < sc.p.Dur {
		time.Sleep(20 * time.Millisecond)
		now := time.Now()
		if err := sc.watch(now); err != nil {
			return err
		}
		if tick != nil {
			tick(now)
		}
		if sc.replace {
			sc.replaceExited()
		}
		sc.closeFinishedEchoes()
		sc.announceNew()
		if sc.pinsOK && now.Sub(lastPins) > 500*time.Millisecond {
			lastPins = now
			if p, err := readPins(); err == nil {
				sc.maxHeld = max(sc.maxHeld, p.held()-sc.base.held())
			}
		}
	}
	sc.stop.Store(true)
	if err := sc.waitPhase(func(k *wkCtx) bool { return k.phase.Load() >= phDone }, "finish"); err != nil {
		return err
	}
	closed := make(chan struct{})
	go func() {
		for _, c := range sc.srvs {
			c.s.Close(unix.SIGURG)
		}
		close(closed)
	}()
	// Every worker has left: a server that still waits after the stall
	// limit missed a departure (its count of live workers is off), so
	// the wait is the watchdog's, not the run's.
	if err := sc.waitUntil(func() bool {
		select {
		case <-closed:
			return true
		default:
			return false
		}
	}, "servers exit", sc.p.Stall); err != nil {
		return err
	}
	sc.closeEchoes()
	return nil
}

// announceNew tells the parent about workers that got their tid since
// (for its post-mortem of a hung child).
func (sc *sched) announceNew() {
	for _, k := range sc.workers() {
		if !k.announced && k.phase.Load() >= phRunning {
			k.announced = true
			sc.r.emit(record{Kind: recTask, Msg: "worker", Slot: k.w.Slot, TID: k.w.TID(), ID: k.id})
		}
	}
}

// replaceExited gives every worker that left for good a successor with
// the same ID on the same server, once the server has seen it go, while
// the run goes on.
func (sc *sched) replaceExited() {
	for _, k := range sc.workers() {
		if ph := k.phase.Load(); (ph != phExited && ph != phDone) || k.replaced || sc.stop.Load() || !k.w.Departed() {
			continue
		}
		k.replaced = true
		k.closeEcho()
		if _, err := sc.succeed(k); err != nil && !sc.noMore {
			sc.noMore = true
			sc.r.Errorf("no successor for worker %d: %v", k.id, err)
		}
	}
}

// waitPhase waits, watching, until ok holds for every worker.
func (sc *sched) waitPhase(ok func(*wkCtx) bool, what string) error {
	return sc.waitUntil(func() bool {
		for _, k := range sc.workers() {
			if !ok(k) {
				return false
			}
		}
		return true
	}, what, sc.p.Stall+sc.p.Dur)
}

// waitUntil polls cond while the watchdog runs, for at most limit.
func (sc *sched) waitUntil(cond func() bool, what string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		now := time.Now()
		if err := sc.watch(now); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if now.After(deadline) {
			return fmt.Errorf("%w: waiting for %s: still not there after %s:\n%s", errHang, what, limit, sc.dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
