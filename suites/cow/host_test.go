package main

import (
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func mapped(t *testing.T, size int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

func TestPatternsDisagree(t *testing.T) {
	tags := []uint32{tagPre, tagParent, tagChild}
	for i := uintptr(0); i < 4096; i++ {
		for a := range tags {
			for b := a + 1; b < len(tags); b++ {
				if patWord(tags[a], i) == patWord(tags[b], i) {
					t.Fatalf("tags %#x and %#x agree at word %d", tags[a], tags[b], i)
				}
			}
		}
		if patWord(tagPre, i) == patWord(tagPre, i+1) {
			t.Fatalf("neighbouring words %d and %d agree", i, i+1)
		}
	}
}

func TestMismatchNamesTheIntruder(t *testing.T) {
	b := mapped(t, 2*pageSize)
	fill(b, tagPre, 0)
	if m := mismatch(b, tagPre, 0); m != "" {
		t.Fatalf("fresh fill mismatches: %s", m)
	}
	fill(b[pageSize:pageSize+8], tagChild, pageSize/4) // the child's words at their own index
	m := mismatch(b, tagPre, 0)
	for _, want := range []string{"byte 0x1000", "page 1", "pre-fork data", "it is the child's write"} {
		if !strings.Contains(m, want) {
			t.Errorf("mismatch %q lacks %q", m, want)
		}
	}
	// A sub-slice checked with its own first index.
	if m := mismatch(b[pageSize+8:], tagPre, (pageSize+8)/4); m != "" {
		t.Errorf("offset check: %s", m)
	}
}

func newTestScript(t *testing.T) *script {
	rep := mapped(t, pageSize)
	return &script{rep: (*report)(unsafe.Pointer(&rep[0]))}
}

// The interpreter run in-process: steps that do not exit or fork.
func TestScriptChecksAndFills(t *testing.T) {
	b := mapped(t, 2*pageSize)
	fill(b, tagPre, 0)
	s := newTestScript(t)
	s.check(b, tagPre, 0, "snapshot")
	s.fill(b[pageSize:], tagChild, pageSize/4)
	s.check(b[:pageSize], tagPre, 0, "untouched half")
	s.check(b, tagPre, 0, "must fail in the second page")
	if code := s.run(); code != 10+3 {
		t.Fatalf("run() = %d, want %d (step 4 fails)", code, 10+3)
	}
	if s.rep.step != 4 || s.rep.index != uintptr(pageSize/4) {
		t.Errorf("report step %d index %d, want 4 and %d", s.rep.step, s.rep.index, pageSize/4)
	}
	if s.rep.got != patWord(tagChild, uintptr(pageSize/4)) || s.rep.want != patWord(tagPre, uintptr(pageSize/4)) {
		t.Errorf("report got %#x want %#x", s.rep.got, s.rep.want)
	}
	msg := describeFailure(&s.steps[3], 4, s.rep)
	for _, want := range []string{"step 4 (check)", "must fail in the second page", "page 1", "it is the child's write"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestScriptPipesAndVmsplice(t *testing.T) {
	b := mapped(t, 2*pageSize)
	fill(b, tagPre, 0)
	var p, q [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	if err := unix.Pipe(q[:]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, fd := range append(p[:], q[:]...) {
			unix.Close(fd)
		}
	}()
	buf := mapped(t, 2*pageSize)
	s := newTestScript(t)
	s.notify(q[1])
	s.wait(q[0])
	s.vmsplice(p[1], b)
	s.pipeCheck(p[0], buf, tagPre, "pipe")
	s.mprotect(b, unix.PROT_READ)
	s.mprotect(b, unix.PROT_READ|unix.PROT_WRITE)
	s.fill(b, tagParent, 0)
	if code := s.run(); code != 0 {
		t.Fatalf("run() = %d; report %+v", code, *s.rep)
	}
	if s.rep.transferred != uintptr(len(b)) {
		t.Errorf("vmsplice transferred %d, want %d", s.rep.transferred, len(b))
	}
	// Reading from a pipe whose write end is gone fails the step.
	s2 := newTestScript(t)
	unix.Close(q[1])
	q[1] = -1
	s2.wait(q[0])
	if code := s2.run(); code != 10 {
		t.Errorf("wait on a closed pipe: run() = %d, want 10", code)
	}
}

func TestScriptFull(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("adding step %d did not panic", maxSteps+1)
		}
	}()
	s := newTestScript(t)
	for i := 0; i <= maxSteps; i++ {
		s.notify(1)
	}
}

func TestCoherentPages(t *testing.T) {
	last := pageSize/4 - 1
	cases := []struct {
		name    string
		first   []uint32
		lastw   []uint32
		ok      bool
		badPage uintptr
		wantLo  uint32
		wantHi  uint32
	}{
		{"one round", []uint32{7, 7, 7}, []uint32{7, 7, 7}, true, 0, 7, 7},
		{"writer mid-round", []uint32{8, 8, 7}, []uint32{8, 7, 7}, true, 0, 7, 8},
		{"copied across a round in page order", []uint32{7, 8, 8}, []uint32{7, 8, 8}, true, 0, 7, 8},
		{"torn page", []uint32{7, 7, 7}, []uint32{7, 8, 7}, false, 1, 7, 8},
		{"pages from far-apart rounds", []uint32{7, 7, 900}, []uint32{7, 7, 900}, false, 3, 7, 900},
		{"first two ahead of last", []uint32{9, 7, 7}, []uint32{7, 7, 7}, false, 0, 7, 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := mapped(t, len(c.first)*pageSize)
			w := unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), len(b)/4)
			for p := range c.first {
				w[p*pageSize/4] = c.first[p]
				w[p*pageSize/4+last] = c.lastw[p]
			}
			var r report
			ok := coherentPages(&r, unsafe.Pointer(&b[0]), uintptr(len(c.first)))
			if ok != c.ok {
				t.Fatalf("coherent = %v, want %v (report %+v)", ok, c.ok, r)
			}
			if !ok && r.index != c.badPage {
				t.Errorf("bad page %d, want %d", r.index, c.badPage)
			}
			if r.lo != c.wantLo || r.hi != c.wantHi {
				t.Errorf("lo..hi = %d..%d, want %d..%d", r.lo, r.hi, c.wantLo, c.wantHi)
			}
		})
	}
}

func TestParseAnonHugeKB(t *testing.T) {
	smaps := `00400000-00500000 r-xp 00000000 00:00 0   /init
Size:               1024 kB
AnonHugePages:         0 kB
b7000000-b7400000 rw-p 00000000 00:00 0
Size:               4096 kB
AnonHugePages:      2048 kB
Swap:                  0 kB
b7400000-b7401000 rw-p 00000000 00:00 0
AnonHugePages:         0 kB
`
	cases := []struct {
		addr    uintptr
		want    int
		wantErr bool
	}{
		{0xb7200000, 2048, false},
		{0xb7400000, 0, false},
		{0x00450000, 0, false},
		{0x1000, 0, true},
	}
	for _, c := range cases {
		got, err := parseAnonHugeKB([]byte(smaps), c.addr)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("addr %#x: %d, %v; want %d, err %v", c.addr, got, err, c.want, c.wantErr)
		}
	}
}

func TestParseHasPinned(t *testing.T) {
	cases := []struct {
		in      string
		v       int
		ok, err bool
	}{
		{"Name:\tcow\nTHP_enabled:\t1\nHasPinned:\t1\nThreads:\t3\n", 1, true, false},
		{"HasPinned:\t0\n", 0, true, false},
		{"Name:\tcow\nTHP_enabled:\t1\n", 0, false, false},
		{"HasPinned:\tyes\n", 0, true, true},
	}
	for _, c := range cases {
		v, ok, err := parseHasPinned([]byte(c.in))
		if v != c.v || ok != c.ok || (err != nil) != c.err {
			t.Errorf("%q: %d %v %v; want %d %v err=%v", c.in, v, ok, err, c.v, c.ok, c.err)
		}
	}
}

func TestContiguousFolio(t *testing.T) {
	cases := []struct {
		name   string
		frames []uint64
		folio  int
		ok     bool
	}{
		{"aligned run", []uint64{512, 513, 514, 515}, 512, true},
		{"not aligned", []uint64{513, 514}, 512, false},
		{"gap", []uint64{1024, 1025, 1027}, 512, false},
		{"absent", []uint64{0, 1}, 2, false},
	}
	for _, c := range cases {
		if err := contiguousFolio(c.frames, c.folio); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestExclusiveMismatch(t *testing.T) {
	ex := uint64(pmPresent | pmExclusive | 5)
	sh := uint64(pmPresent | 6)
	cases := []struct {
		entries []uint64
		want    bool
		bad     int
	}{
		{[]uint64{ex, ex}, true, -1},
		{[]uint64{ex, sh}, true, 1},
		{[]uint64{sh, sh}, false, -1},
		{[]uint64{sh, 0}, false, 1}, // not present is never "as wanted"
	}
	for i, c := range cases {
		if got := exclusiveMismatch(c.entries, c.want); got != c.bad {
			t.Errorf("case %d: %d, want %d", i, got, c.bad)
		}
	}
}

// The io_uring structures must match the kernel's sizes on both targets
// (run the tests with GOARCH=386 too).
func TestUringLayout(t *testing.T) {
	if s := unsafe.Sizeof(uringParams{}); s != 120 {
		t.Errorf("io_uring_params is %d bytes, want 120", s)
	}
	if s := unsafe.Sizeof(uringSQE{}); s != 64 {
		t.Errorf("io_uring_sqe is %d bytes, want 64", s)
	}
	if s := unsafe.Sizeof(uringCQE{}); s != 16 {
		t.Errorf("io_uring_cqe is %d bytes, want 16", s)
	}
	var q uringSQE
	if o := unsafe.Offsetof(q.UserData); o != 32 {
		t.Errorf("sqe.user_data at %d, want 32", o)
	}
	if o := unsafe.Offsetof(q.BufIndex); o != 40 {
		t.Errorf("sqe.buf_index at %d, want 40", o)
	}
	var p uringParams
	if o := unsafe.Offsetof(p.CQOff); o != 80 {
		t.Errorf("params.cq_off at %d, want 80", o)
	}
}

func TestDescribeCoherent(t *testing.T) {
	st := &step{op: opCoherent, n: 32}
	torn := describeFailure(st, 1, &report{index: 3, got: 7, want: 9, lo: 7, hi: 9})
	if !strings.Contains(torn, "page 3 is torn (first counter 7, last 9") {
		t.Errorf("torn page: %q", torn)
	}
	spread := describeFailure(st, 1, &report{index: 32, lo: 7, hi: 900})
	if !strings.Contains(spread, "rounds 7..900 of 32 pages") {
		t.Errorf("spread: %q", spread)
	}
}

func TestRaceOverlap(t *testing.T) {
	for _, tc := range []struct {
		forks  int
		copies int64
		fail   bool
	}{
		{minRaceForks, 0, true},
		{500, 0, true},
		{500, 3, false},
		{minRaceForks - 1, 0, false}, // too few forks to require an overlap
		{0, 0, false},                // "nothing raced" is reported on its own
	} {
		msg := raceOverlap(tc.forks, tc.copies)
		if (msg != "") != tc.fail {
			t.Errorf("raceOverlap(%d, %d) = %q, want failure %v", tc.forks, tc.copies, msg, tc.fail)
		}
		if tc.fail && !strings.Contains(msg, "never overlapped") {
			t.Errorf("raceOverlap(%d, %d) = %q: does not say what went wrong", tc.forks, tc.copies, msg)
		}
	}
}
