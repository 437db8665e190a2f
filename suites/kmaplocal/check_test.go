package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kharness/kharness/suites/sysinfo"
)

var testHigh = sysinfo.Zone{Name: "HighMem", StartPFN: 0x38000, Spanned: 0x48000, Present: 0x48000}

var (
	exp386      = expect{kmapReal: true, high: testHigh, hasHigh: true}
	exp386Force = expect{kmapReal: true, forceMap: true, high: testHigh, hasHigh: true}
	expAmd64    = expect{}
)

// good386 is a correct i386 HIGHMEM answer: fixmap slots 2 pages apart
// (DEBUG_KMAP_LOCAL guard pages) descending from the CPU's first slot.
func good386(op uint32, depth int, flags uint32, forceMap bool) *kmtReq {
	r := &kmtReq{Op: op, Depth: uint32(depth), Flags: flags, CPUBefore: 1, CPUAfter: 1, KmapReal: 1}
	if op == opIRQ {
		r.IRQChecks = 3
	}
	for i := 0; i < depth; i++ {
		if flags&kmtFlagLowmem != 0 {
			r.PFN[i] = 0x1000 + uint64(i)
			if forceMap {
				r.Vaddr[i] = 0xffb00000 - uint64(2*(i+1)+32)*0x1000
			} else {
				r.Vaddr[i] = 0xc0000000 + r.PFN[i]<<12 // direct map: ascending
			}
		} else {
			r.PFN[i] = 0x40000 + uint64(7*i)
			r.Vaddr[i] = 0xffb00000 - uint64(2*(i+1)+32)*0x1000
			r.NrHighmem++
		}
	}
	return r
}

// goodAmd64 is a correct x86_64 answer: page_address() of each page.
func goodAmd64(op uint32, depth int) *kmtReq {
	r := &kmtReq{Op: op, Depth: uint32(depth), CPUBefore: 0, CPUAfter: 0}
	if op == opIRQ {
		r.IRQChecks = 1
	}
	for i := 0; i < depth; i++ {
		r.PFN[i] = 0x12345 + uint64(i)
		r.Vaddr[i] = 0xffff888000000000 + r.PFN[i]<<12
	}
	return r
}

func TestCheckResult(t *testing.T) {
	for _, tc := range []struct {
		name  string
		e     expect
		r     *kmtReq
		mut   func(r *kmtReq)
		moved bool
		want  []string // substrings of the problems, in order; none = valid
		page  int      // page of the first problem
	}{
		{name: "i386 depth 1", e: exp386, r: good386(opNest, 1, 0, false)},
		{name: "i386 depth 16", e: exp386, r: good386(opNest, 16, 0, false)},
		{name: "i386 lowmem without FORCE_MAP: direct map", e: exp386, r: good386(opNest, 5, kmtFlagLowmem, false)},
		{name: "i386 lowmem with FORCE_MAP", e: exp386Force, r: good386(opNest, 5, kmtFlagLowmem, true)},
		{name: "i386 irq", e: exp386, r: good386(opIRQ, 4, 0, false)},
		{name: "amd64 depth 16", e: expAmd64, r: goodAmd64(opNest, 16)},
		{name: "amd64 moved may migrate", e: expAmd64, r: goodAmd64(opCopyToUser, 3), mut: func(r *kmtReq) { r.CPUAfter = 1 }, moved: true},
		{name: "amd64 unmoved must not migrate", e: expAmd64, r: goodAmd64(opNest, 3), mut: func(r *kmtReq) { r.CPUAfter = 1 },
			want: []string{"changed CPU inside the kmap_local section: cpu_before=0 cpu_after=1"}, page: -1},
		{name: "i386 moved must not migrate", e: exp386, r: good386(opCopyToUser, 3, 0, false), mut: func(r *kmtReq) { r.CPUAfter = 0 }, moved: true,
			want: []string{"migrate_disable"}, page: -1},
		{name: "idx leak", e: exp386, r: good386(opNest, 2, 0, false), mut: func(r *kmtReq) { r.IdxAfter = 2 },
			want: []string{"kmap_ctrl.idx is 2"}, page: -1},
		{name: "pattern errors", e: expAmd64, r: goodAmd64(opSleep, 2), mut: func(r *kmtReq) { r.Errors = 3 },
			want: []string{"3 pattern mismatches"}, page: -1},
		{name: "i386 kmap not real", e: exp386, r: good386(opNest, 1, 0, false), mut: func(r *kmtReq) { r.KmapReal = 0 },
			want: []string{"kmap_real=0, want 1"}, page: -1},
		{name: "amd64 kmap real", e: expAmd64, r: goodAmd64(opNest, 1), mut: func(r *kmtReq) { r.KmapReal = 1 },
			want: []string{"kmap_real=1, want 0"}, page: -1},
		{name: "nr_highmem short", e: exp386, r: good386(opNest, 4, 0, false), mut: func(r *kmtReq) { r.NrHighmem = 3 },
			want: []string{"nr_highmem=3, want 4"}, page: -1},
		{name: "amd64 highmem", e: expAmd64, r: goodAmd64(opNest, 4), mut: func(r *kmtReq) { r.NrHighmem = 1 },
			want: []string{"nr_highmem=1, want 0"}, page: -1},
		{name: "shared slot", e: exp386, r: good386(opNest, 4, 0, false), mut: func(r *kmtReq) { r.Vaddr[3] = r.Vaddr[1] },
			want: []string{"also the mapping of page 1", "not below"}, page: 3},
		{name: "ascending slots", e: exp386, r: good386(opNest, 3, 0, false), mut: func(r *kmtReq) { r.Vaddr[1], r.Vaddr[2] = r.Vaddr[2], r.Vaddr[1] },
			want: []string{"must descend"}, page: 2},
		{name: "zero vaddr", e: expAmd64, r: goodAmd64(opNest, 3), mut: func(r *kmtReq) { r.Vaddr[2] = 0 },
			want: []string{"vaddr is 0"}, page: 2},
		{name: "unaligned vaddr", e: expAmd64, r: goodAmd64(opNest, 3), mut: func(r *kmtReq) { r.Vaddr[0] += 8 },
			want: []string{"not page aligned"}, page: 0},
		{name: "lowmem page for highmem request", e: exp386, r: good386(opNest, 3, 0, false), mut: func(r *kmtReq) { r.PFN[1] = 0x100 },
			want: []string{"not in ZONE_HIGHMEM"}, page: 1},
		{name: "highmem page for lowmem request", e: exp386, r: good386(opNest, 3, kmtFlagLowmem, false), mut: func(r *kmtReq) { r.PFN[2] = 0x50000 },
			want: []string{"KMT_F_LOWMEM page is in ZONE_HIGHMEM"}, page: 2},
		{name: "duplicate pfn", e: expAmd64, r: goodAmd64(opNest, 3), mut: func(r *kmtReq) { r.PFN[2] = r.PFN[0] },
			want: []string{"also page 0's"}, page: 2},
		{name: "zero pfn", e: expAmd64, r: goodAmd64(opNest, 3), mut: func(r *kmtReq) { r.PFN[1] = 0 },
			want: []string{"pfn is 0"}, page: 1},
		{name: "irq never ran", e: exp386, r: good386(opIRQ, 2, 0, false), mut: func(r *kmtReq) { r.IRQChecks = 0 },
			want: []string{"irq_checks=0"}, page: -1},
		{name: "irq errors", e: expAmd64, r: goodAmd64(opIRQ, 2), mut: func(r *kmtReq) { r.IRQErrors = 1 },
			want: []string{"hard-irq maps"}, page: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *tc.r
			if tc.mut != nil {
				tc.mut(&r)
			}
			ps := checkResult(tc.e, &r, tc.moved)
			if len(ps) != len(tc.want) {
				t.Fatalf("got %d problems %v, want %d (%q)", len(ps), ps, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(ps[i].Msg, w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, ps[i].Msg, w)
				}
			}
			if len(ps) > 0 {
				if ps[0].Page != tc.page {
					t.Errorf("first problem names page %d, want %d", ps[0].Page, tc.page)
				}
				msg := describe("driver-nest", &r, ps[0])
				for _, w := range []string{"driver-nest:", "cpu=", "depth=", "page=", "op=", "seed="} {
					if !strings.Contains(msg, w) {
						t.Errorf("failure message %q does not name %q", msg, w)
					}
				}
			}
		})
	}
}

func TestSlots(t *testing.T) {
	s := newSlots()
	a := good386(opSleep, 3, 0, false)
	if ps := s.observe(exp386, a, 100); len(ps) != 0 {
		t.Fatalf("first observation: %v", ps)
	}
	b := good386(opSleep, 2, 0, false) // same CPU, other thread, same slots
	if ps := s.observe(exp386, b, 101); len(ps) != 0 {
		t.Fatalf("same slots from another thread: %v", ps)
	}
	if got := s.shared(); got != 2 {
		t.Errorf("shared() = %d, want 2 (levels 0 and 1 used by two threads)", got)
	}
	c := good386(opSleep, 3, 0, false)
	c.Vaddr[2] -= 0x1000
	ps := s.observe(exp386, c, 102)
	if len(ps) != 1 || ps[0].Page != 2 || !strings.Contains(ps[0].Msg, "not a function of CPU and depth") {
		t.Errorf("moved slot: %v", ps)
	}
	d := good386(opNest, 3, 0, false) // another op may lay its maps out differently
	d.Vaddr[0] -= 0x10000
	d.Vaddr[1] -= 0x10000
	d.Vaddr[2] -= 0x10000
	if ps := s.observe(exp386, d, 103); len(ps) != 0 {
		t.Errorf("other op: %v", ps)
	}
	if ps := s.observe(exp386, good386(opSleep, 3, kmtFlagLowmem, false), 104); len(ps) != 0 {
		t.Errorf("direct-mapped lowmem is not a slot: %v", ps)
	}
	if ps := s.observe(expAmd64, goodAmd64(opSleep, 3), 105); len(ps) != 0 {
		t.Errorf("x86_64 has no slots: %v", ps)
	}
}

func words(vals ...uint32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	return b
}

func TestCompareCopies(t *testing.T) {
	ps := pageSize
	ref := make([]byte, 3*ps)
	fillRandom(newRand(1, 1), ref)
	const pGot, pRef = 0xaaaa5555, 0x5555aaaa
	for _, tc := range []struct {
		name string
		mut  func(got, ref []byte)
		want []copyMismatch
	}{
		{"identical", nil, nil},
		{"one byte on page 1", func(got, _ []byte) { got[ps+13] ^= 0xff },
			[]copyMismatch{{Page: 1, Offset: 12}}},
		{"two pages", func(got, _ []byte) { got[5] ^= 1; got[2*ps+ps-1] ^= 1 },
			[]copyMismatch{{Page: 0, Offset: 4}, {Page: 2, Offset: ps - 4}}},
		{"unwritten word", func(got, ref []byte) { copy(got[ps+8:], words(pGot)); copy(ref[ps+8:], words(pRef)) },
			[]copyMismatch{{Page: 1, Offset: 8, Unwritten: true}}},
		{"poison on one side only", func(got, _ []byte) { copy(got[16:], words(pGot)) },
			[]copyMismatch{{Page: 0, Offset: 16}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, r := bytes.Clone(ref), bytes.Clone(ref)
			if tc.mut != nil {
				tc.mut(g, r)
			}
			got := compareCopies(g, r, pGot, pRef)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].Page != tc.want[i].Page || got[i].Offset != tc.want[i].Offset || got[i].Unwritten != tc.want[i].Unwritten {
					t.Errorf("mismatch %d = %+v, want %+v", i, got[i], tc.want[i])
				}
				if !strings.Contains(got[i].String(), "page ") {
					t.Errorf("%q does not name the page", got[i].String())
				}
			}
		})
	}
}

func TestSamePagesAndWords(t *testing.T) {
	ps := pageSize
	a := make([]byte, 3*ps)
	fillRandom(newRand(2, 0), a)
	b := bytes.Clone(a)
	fillRandom(newRand(3, 0), b[ps:2*ps])
	if got := samePages(a, b); len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Errorf("samePages = %v, want [0 2]", got)
	}
	i := diffIndex(a, b)
	if i < ps || i >= 2*ps {
		t.Errorf("diffIndex = %d, want an index on page 1", i)
	}
	if d, want := firstDiff(a, b, 0), fmt.Sprintf("1 (offset %#x: got", i-ps); !strings.HasPrefix(d, want) {
		t.Errorf("firstDiff = %q, want prefix %q", d, want)
	}
	if d, want := firstDiff(a, b, 3*ps), fmt.Sprintf("4 (offset %#x:", i-ps); !strings.HasPrefix(d, want) {
		t.Errorf("firstDiff with base = %q, want prefix %q", d, want)
	}
	if d := firstDiff(a, a, 0); d != "" || diffIndex(a, a) != -1 {
		t.Errorf("firstDiff of equal slices = %q", d)
	}
	if d := firstDiff(a[:10], a[:12], 0); !strings.Contains(d, "length 10, want 12") {
		t.Errorf("firstDiff of a prefix = %q", d)
	}
}

func TestPatterns(t *testing.T) {
	a, b := make([]byte, 1000), make([]byte, 1000)
	fillRandom(newRand(7, 3), a)
	fillRandom(newRand(7, 3), b)
	if !bytes.Equal(a, b) {
		t.Error("same seed and stream gave different bytes")
	}
	fillRandom(newRand(7, 4), b)
	if bytes.Equal(a, b) {
		t.Error("another stream gave the same bytes")
	}
	rng := newRand(1, 1)
	for i := 0; i < 1000; i++ {
		if x, y := poisonPair(rng); x == y {
			t.Fatalf("poisonPair gave equal words %#x", x)
		}
	}
	if testSeed(1, "a") == testSeed(1, "b") || testSeed(1, "a") != testSeed(1, "a") {
		t.Error("testSeed not a function of the name")
	}
}

func TestLargeFolioPages(t *testing.T) {
	const block = 4
	for _, tc := range []struct {
		name string
		pfns []uint64
		want int
	}{
		{"one aligned block", []uint64{8, 9, 10, 11}, 4},
		{"unaligned start", []uint64{9, 10, 11, 12}, 0},
		{"hole", []uint64{8, 9, 0, 11}, 0},
		{"two blocks, one broken", []uint64{8, 9, 10, 11, 20, 21, 22, 30}, 4},
		{"tail shorter than a block", []uint64{8, 9, 10, 11, 12, 13}, 4},
	} {
		if got := largeFolioPages(tc.pfns, block); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestCrossingWindow(t *testing.T) {
	rng := newRand(5, 5)
	size := 64 * pageSize
	long := 0
	for i := 0; i < 10000; i++ {
		off, n := crossingWindow(rng, size)
		if off < 0 || n < 1 || off+n > size {
			t.Fatalf("window [%d,+%d) outside a %d-byte file", off, n, size)
		}
		if d := off % pageSize; d > 64 && d < pageSize-64 {
			t.Fatalf("window starts at %d, not next to a page boundary", off)
		}
		if off/pageSize == (off+n-1)/pageSize && off+n < size {
			t.Fatalf("window [%d,+%d) does not cross a page boundary", off, n)
		}
		if n > 4*pageSize {
			long++
		}
	}
	if long == 0 {
		t.Error("no long window in 10000")
	}
}

func TestForkStamps(t *testing.T) {
	seen := map[uint32]string{}
	for _, tag := range []uint32{tagSetup, tagParent, tagChild} {
		for r := uint32(0); r < 4; r++ {
			for p := uintptr(0); p < 100; p++ {
				if tag == tagSetup && r != 0 {
					continue
				}
				s := stampOf(tag, r, p)
				if prev, dup := seen[s]; dup {
					t.Fatalf("stamp %#x for tag %d round %d page %d collides with %s", s, tag, r, p, prev)
				}
				seen[s] = "another"
				if s>>30 != tag {
					t.Fatalf("stamp %#x does not carry tag %d", s, tag)
				}
			}
		}
	}
	both, child, parent := 0, 0, 0
	for p := uintptr(0); p < 600; p++ {
		c, pa := childWrites(p, 5), parentWrites(p, 5)
		if c && pa {
			both++
		} else if c {
			child++
		} else if pa {
			parent++
		}
	}
	if both == 0 || child == 0 || parent == 0 {
		t.Errorf("page sets do not overlap partially: both %d child-only %d parent-only %d", both, child, parent)
	}
}

func TestPoisonBroken(t *testing.T) {
	b := make([]byte, 64)
	fillWord(b, 0x11223344)
	if i := poisonBroken(b, 5, 0x11223344); i != -1 {
		t.Errorf("intact poison reported broken at %d", i)
	}
	b[37] = 0
	if i := poisonBroken(b, 5, 0x11223344); i != 37 {
		t.Errorf("poisonBroken = %d, want 37", i)
	}
	if i := poisonBroken(b, 38, 0x11223344); i != -1 {
		t.Errorf("damage before from reported: %d", i)
	}
	if roundUp(1) != uintptr(pageSize) || roundUp(uintptr(pageSize)) != uintptr(pageSize) || roundUp(0) != 0 {
		t.Error("roundUp")
	}
}
