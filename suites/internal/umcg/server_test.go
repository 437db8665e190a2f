package umcg

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestServerQueue exercises the local queue a server keeps between
// umcg_wait calls: FIFO order, requeue at the front, the queued flags that
// catch a worker listed twice.
func TestServerQueue(t *testing.T) {
	a := newTestArena(t, 64)
	s, err := NewServer(a, 0, ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var ws []*Worker
	for i := 0; i < 5; i++ {
		w, err := s.NewWorker(i)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	if s.Live() != 5 {
		t.Fatalf("live = %d", s.Live())
	}
	type op struct {
		kind string // push, pop, unpop
		w    int
		want int // pop result, -1 for nil
	}
	ops := []op{
		{"pop", 0, -1},
		{"push", 0, 0}, {"push", 1, 0}, {"push", 2, 0},
		{"pop", 0, 0},
		{"unpop", 0, 0},
		{"pop", 0, 0}, {"pop", 0, 1},
		{"push", 3, 0}, {"unpop", 1, 0},
		{"pop", 0, 1}, {"pop", 0, 2}, {"pop", 0, 3}, {"pop", 0, -1},
	}
	for i, o := range ops {
		switch o.kind {
		case "push":
			s.push(ws[o.w])
		case "unpop":
			s.unpop(ws[o.w])
		case "pop":
			got := s.pop()
			id := -1
			if got != nil {
				id = got.ID
				if got.queued {
					t.Errorf("op %d: popped worker %d still flagged queued", i, id)
				}
			}
			if id != o.want {
				t.Fatalf("op %d: pop = %d, want %d", i, id, o.want)
			}
		}
		if int(s.Stats.QueueLen.Load()) != s.qn {
			t.Errorf("op %d: QueueLen stat %d, queue %d", i, s.Stats.QueueLen.Load(), s.qn)
		}
	}
}

// TestTakeRunnable feeds the server's list walk lists the kernel could
// hand it, good and bad, and checks the queue and the violations.
func TestTakeRunnable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		build     func(a *Arena, s *Server, ws []*Worker)
		wantQueue []int
		wantViol  []ViolationKind
	}{
		{"two runnable", func(a *Arena, s *Server, ws []*Worker) {
			ws[0].T.SetState(StateRunnable)
			ws[1].T.SetState(StateRunnable)
			s.T.PushRunnable(ws[0].T)
			s.T.PushRunnable(ws[1].T)
		}, []int{1, 0}, nil},
		{"queued twice", func(a *Arena, s *Server, ws []*Worker) {
			ws[2].T.SetState(StateRunnable)
			s.push(ws[2])
			s.T.PushRunnable(ws[2].T)
		}, []int{2}, []ViolationKind{VQueuedTwice}},
		{"running on list", func(a *Arena, s *Server, ws []*Worker) {
			ws[0].T.SetState(StateRunning)
			s.T.PushRunnable(ws[0].T)
		}, []int{0}, []ViolationKind{VNotRunnableOnList}},
		{"foreign link", func(a *Arena, s *Server, ws []*Worker) {
			ws[0].T.SetState(StateRunnable)
			s.T.PushRunnable(ws[0].T)
			ws[0].T.SetRunnableWorkers(0xdead0000)
		}, []int{0}, []ViolationKind{VForeignLink}},
		{"cycle", func(a *Arena, s *Server, ws []*Worker) {
			ws[0].T.SetState(StateRunnable)
			ws[1].T.SetState(StateRunnable)
			s.T.PushRunnable(ws[0].T)
			s.T.PushRunnable(ws[1].T)
			ws[0].T.SetRunnableWorkers(uint64(ws[1].T.Addr()))
			// the walk clears each link it follows, so the cycle ends at
			// the second visit of slot 1, which is already queued
		}, []int{1, 0}, []ViolationKind{VQueuedTwice}},
		{"slot of nobody", func(a *Arena, s *Server, ws []*Worker) {
			s.T.PushRunnable(a.Task(a.Len() - 1))
		}, nil, []ViolationKind{VUnknownWorker}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestArena(t, 64)
			s, err := NewServer(a, 0, ServerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			var ws []*Worker
			for i := 0; i < 3; i++ {
				w, _ := s.NewWorker(i)
				ws = append(ws, w)
			}
			tc.build(a, s, ws)
			s.takeRunnable()
			var q []int
			for w := s.pop(); w != nil; w = s.pop() {
				q = append(q, w.ID)
			}
			if len(q) != len(tc.wantQueue) {
				t.Errorf("queue %v, want %v", q, tc.wantQueue)
			} else {
				for i := range q {
					if q[i] != tc.wantQueue[i] {
						t.Errorf("queue %v, want %v", q, tc.wantQueue)
						break
					}
				}
			}
			vs, total := s.Violations()
			var kinds []ViolationKind
			for _, v := range vs {
				kinds = append(kinds, v.Kind)
			}
			if int(total) != len(tc.wantViol) || len(kinds) != len(tc.wantViol) {
				t.Fatalf("violations %v (total %d), want %v", vs, total, tc.wantViol)
			}
			for i := range kinds {
				if kinds[i] != tc.wantViol[i] {
					t.Errorf("violations %v, want %v", kinds, tc.wantViol)
				}
			}
			if s.T.RunnableWorkers() != 0 {
				t.Errorf("list head not taken")
			}
		})
	}
}

func TestViolationLogCaps(t *testing.T) {
	var l violationLog
	for i := 0; i < 40; i++ {
		l.add(Violation{Kind: VQueuedTwice, Worker: i})
	}
	vs, total := l.list()
	if len(vs) != 32 || total != 40 || vs[31].Worker != 31 {
		t.Errorf("kept %d, total %d, last %+v", len(vs), total, vs[len(vs)-1])
	}
	if s := vs[0].String(); s == "" {
		t.Errorf("empty rendering")
	}
}

// TestSettle checks what the server makes of umcg_wait's result for the
// worker it had picked, in particular the race where the running worker
// leaves between pick and umcg_wait: the kernel then answers ESRCH for
// next_tid|TID_RUNNING and that answer is the server's only news of the
// departure (before, the server dropped the worker and then waited for
// it forever at Close).
func TestSettle(t *testing.T) {
	const tid = 4242
	for _, tc := range []struct {
		name         string
		e            unix.Errno
		state        uint32 // the worker's state after the wait
		final        bool
		nextTID      uint32
		fresh        bool
		wantDeparted bool
		wantRejoins  uint64
		wantCur      bool // still the server's current worker
		wantQueued   bool // put back at the front of the queue
		wantViol     []ViolationKind
		wantRet      unix.Errno
	}{
		{name: "running worker exits before the wait", e: unix.ESRCH, state: StateNone, final: true,
			nextTID: tid | TIDRunning, wantDeparted: true},
		{name: "running worker unregisters to rejoin", e: unix.ESRCH, state: StateNone,
			nextTID: tid | TIDRunning, wantRejoins: 1},
		{name: "rejoining worker already queued again", e: unix.ESRCH, state: StateRunnable,
			nextTID: tid | TIDRunning},
		{name: "queued worker gone", e: unix.ESRCH, state: StateNone, final: true,
			nextTID: tid, fresh: true, wantViol: []ViolationKind{VWaitError}},
		{name: "switched to", e: 0, state: StateRunning, nextTID: tid | TIDRunning, fresh: true, wantCur: true},
		{name: "refused, put back", e: unix.EAGAIN, state: StateRunnable, nextTID: tid, fresh: true, wantQueued: true},
		{name: "unknown error", e: unix.ENOMEM, state: StateRunning, nextTID: tid | TIDRunning, wantCur: true,
			wantViol: []ViolationKind{VWaitError}, wantRet: unix.ENOMEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestArena(t, 64)
			s, err := NewServer(a, 0, ServerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			w, err := s.NewWorker(7)
			if err != nil {
				t.Fatal(err)
			}
			w.tid.Store(tid)
			w.final.Store(tc.final)
			w.T.SetState(tc.state)
			s.T.SetState(StateRunning)
			s.T.SetNextTID(tc.nextTID)
			s.setCur(w)
			if got := s.settle(tc.e, tc.fresh); got != tc.wantRet {
				t.Errorf("settle = %v, want %v", got, tc.wantRet)
			}
			if w.Departed() != tc.wantDeparted {
				t.Errorf("departed = %v, want %v", w.Departed(), tc.wantDeparted)
			}
			wantLive := 1
			if tc.wantDeparted {
				wantLive = 0
			}
			if s.Live() != wantLive {
				t.Errorf("live = %d, want %d", s.Live(), wantLive)
			}
			if r := s.Stats.Rejoins.Load(); r != tc.wantRejoins {
				t.Errorf("rejoins = %d, want %d", r, tc.wantRejoins)
			}
			if (s.cur == w) != tc.wantCur {
				t.Errorf("current worker %v, want kept %v", curID(s.cur), tc.wantCur)
			}
			if w.queued != tc.wantQueued {
				t.Errorf("queued = %v, want %v", w.queued, tc.wantQueued)
			}
			vs, _ := s.Violations()
			if len(vs) != len(tc.wantViol) {
				t.Fatalf("violations %v, want %v", vs, tc.wantViol)
			}
			for i := range vs {
				if vs[i].Kind != tc.wantViol[i] {
					t.Errorf("violations %v, want %v", vs, tc.wantViol)
				}
			}
		})
	}
}
