package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/kharness/kharness/suites/sysinfo"
)

// expect is what a correct driver answer looks like on this kernel.
type expect struct {
	// kmapReal: kmap_local_page really maps (i386 with CONFIG_HIGHMEM);
	// false on x86_64, where kmap_local_page() is page_address() and the
	// suite is a negative control.
	kmapReal bool
	// forceMap: CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP, lowmem pages go through
	// the fixmap too (only matters when kmapReal).
	forceMap bool
	// high is ZONE_HIGHMEM, if the kernel has one.
	high    sysinfo.Zone
	hasHigh bool
}

// fixmapped reports whether the driver's maps of r's pages must be
// fixmap slots: distinct, descending, and the same for the same CPU and
// depth every time.
func (e expect) fixmapped(r *kmtReq) bool {
	return e.kmapReal && (r.Flags&kmtFlagLowmem == 0 || e.forceMap)
}

// problem is one thing wrong with a driver answer. Page is the index of
// the page (depth level) concerned, or -1 for the request as a whole.
type problem struct {
	Page int
	Msg  string
}

// describe renders a problem as a failure message naming the case, the
// CPU, the depth and the page, as every failure of the suite does.
func describe(caseName string, r *kmtReq, p problem) string {
	page := "-"
	if p.Page >= 0 {
		page = fmt.Sprint(p.Page)
		if p.Page < kmtMaxDepth && r.PFN[p.Page] != 0 {
			page += fmt.Sprintf(" (pfn %#x)", r.PFN[p.Page])
		}
	}
	return fmt.Sprintf("%s: cpu=%d depth=%d page=%s: %s [%s; %s]", caseName, int32(r.CPUBefore), r.Depth, page, p.Msg, r, r.outString())
}

// checkResult checks the out fields of a request the driver accepted.
// moved says another thread changed the task's affinity while it was
// inside the section: without a real kmap (x86_64) nothing pins the task
// to its CPU then, so a CPU change is allowed; with one, migrate_disable()
// must have kept it.
func checkResult(e expect, r *kmtReq, moved bool) []problem {
	var ps []problem
	add := func(page int, f string, a ...any) { ps = append(ps, problem{page, fmt.Sprintf(f, a...)}) }
	depth := int(r.Depth)
	if depth < 1 || depth > kmtMaxDepth {
		add(-1, "checker called with depth %d", depth)
		return ps
	}
	if r.CPUBefore != r.CPUAfter && (e.kmapReal || !moved) {
		add(-1, "task changed CPU inside the kmap_local section: cpu_before=%d cpu_after=%d (migrate_disable not holding)", int32(r.CPUBefore), int32(r.CPUAfter))
	}
	if r.IdxAfter != 0 || r.IdxAfter != r.IdxBefore {
		add(-1, "kmap_ctrl.idx is %d after unmapping everything (%d on entry), want 0: leaked or unbalanced slot", int32(r.IdxAfter), int32(r.IdxBefore))
	}
	if r.Errors != 0 {
		add(-1, "driver saw %d pattern mismatches through its mappings", int32(r.Errors))
	}
	if r.Op == opIRQ {
		if r.IRQErrors != 0 {
			add(-1, "%d mismatches seen by the hard-irq maps", r.IRQErrors)
		}
		if r.IRQChecks == 0 {
			add(-1, "no hard-irq map+verify ran while the task held its maps (irq_checks=0)")
		}
	}
	wantReal := uint32(0)
	if e.kmapReal {
		wantReal = 1
	}
	if r.KmapReal != wantReal {
		add(-1, "kmap_real=%d, want %d on this kernel", int32(r.KmapReal), wantReal)
	}
	lowmem := r.Flags&kmtFlagLowmem != 0
	wantHigh := 0
	if e.kmapReal && !lowmem {
		wantHigh = depth
	}
	if int(r.NrHighmem) != wantHigh {
		add(-1, "nr_highmem=%d, want %d", int32(r.NrHighmem), wantHigh)
	}
	fix := e.fixmapped(r)
	seenV := map[uint64]int{}
	seenP := map[uint64]int{}
	for i := 0; i < depth; i++ {
		v, p := r.Vaddr[i], r.PFN[i]
		switch {
		case v == 0:
			add(i, "vaddr is 0")
		case v%uint64(os.Getpagesize()) != 0:
			add(i, "vaddr %#x is not page aligned", v)
		}
		if j, dup := seenV[v]; dup && v != 0 {
			add(i, "vaddr %#x is also the mapping of page %d: two live maps share a slot", v, j)
		}
		seenV[v] = i
		if fix && i > 0 && v != 0 && r.Vaddr[i-1] != 0 && v >= r.Vaddr[i-1] {
			add(i, "vaddr %#x is not below the enclosing map's %#x: fixmap slots must descend with depth", v, r.Vaddr[i-1])
		}
		if p == 0 {
			add(i, "pfn is 0")
			continue
		}
		if j, dup := seenP[p]; dup {
			add(i, "pfn %#x is also page %d's", p, j)
		}
		seenP[p] = i
		if e.hasHigh {
			in := e.high.Contains(p)
			switch {
			case lowmem && in:
				add(i, "KMT_F_LOWMEM page is in ZONE_HIGHMEM (pfn %d..%d)", e.high.StartPFN, e.high.StartPFN+e.high.Spanned)
			case !lowmem && e.kmapReal && !in:
				add(i, "page is not in ZONE_HIGHMEM (pfn %d..%d)", e.high.StartPFN, e.high.StartPFN+e.high.Spanned)
			}
		}
	}
	return ps
}

// slotKey identifies a fixmap slot: kmap_local uses slot idx + 16*cpu,
// and idx is the task's nesting level, so in a system call (where the
// task enters with idx 0) the address of level d on CPU c is fixed.
type slotKey struct {
	op, cpu, level uint32
}

// slots records, for every op/CPU/level, the fixmap address and the
// threads that used it: the evidence that tasks really reuse each other's
// slots (the case kmap_local's sched_out/sched_in exists for).
type slots struct {
	mu    sync.Mutex
	addr  map[slotKey]uint64
	users map[[2]uint32]map[int]bool // (cpu, level) -> tids, over every op
	ops   map[[2]uint32]map[uint32]bool
}

func newSlots() *slots {
	return &slots{addr: map[slotKey]uint64{}, users: map[[2]uint32]map[int]bool{}, ops: map[[2]uint32]map[uint32]bool{}}
}

// observe records r (run by thread tid, inside the section on CPU
// r.CPUBefore) and returns a problem when a level's address on that CPU
// differs from an earlier run of the same op.
func (s *slots) observe(e expect, r *kmtReq, tid int) []problem {
	if !e.fixmapped(r) || r.CPUBefore != r.CPUAfter {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []problem
	for i := 0; i < int(r.Depth) && i < kmtMaxDepth; i++ {
		k := slotKey{r.Op, r.CPUBefore, uint32(i)}
		v := r.Vaddr[i]
		if old, ok := s.addr[k]; ok && old != v {
			ps = append(ps, problem{i, fmt.Sprintf("level %d on cpu %d mapped at %#x, earlier %s runs used %#x: slot address not a function of CPU and depth", i, r.CPUBefore, v, opName(r.Op), old)})
			continue
		}
		s.addr[k] = v
		ck := [2]uint32{r.CPUBefore, uint32(i)}
		if s.users[ck] == nil {
			s.users[ck] = map[int]bool{}
			s.ops[ck] = map[uint32]bool{}
		}
		s.users[ck][tid] = true
		s.ops[ck][r.Op] = true
	}
	return ps
}

// shared counts slots used by more than one thread.
func (s *slots) shared() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, u := range s.users {
		if len(u) > 1 {
			n++
		}
	}
	return n
}

// copyMismatch is a difference between a COPY_TO_USER buffer and its
// reference.
type copyMismatch struct {
	Page, Offset int
	Got, Want    uint32
	Unwritten    bool // both runs left their own poison word there
}

func (m copyMismatch) String() string {
	if m.Unwritten {
		return fmt.Sprintf("page %d offset %#x: word left as the poison both runs pre-filled (%#x / %#x): not written by copy_to_user", m.Page, m.Offset, m.Got, m.Want)
	}
	return fmt.Sprintf("page %d offset %#x: got %#08x, the same request into plain memory gave %#08x", m.Page, m.Offset, m.Got, m.Want)
}

// compareCopies checks a COPY_TO_USER result got against ref, the same
// request (same seed and depth) delivered to other memory. The driver's
// pattern formula is deliberately not known here; what must hold is that
// the copy is deterministic and complete. got was pre-filled with the
// 32-bit word poisonGot and ref with poisonRef (which must differ), so a
// word both copies skipped shows up as its own poison on both sides. At
// most one mismatch per page is reported.
func compareCopies(got, ref []byte, poisonGot, poisonRef uint32) []copyMismatch {
	var out []copyMismatch
	ps := os.Getpagesize()
	for p := 0; p*ps < len(got) && p*ps < len(ref); p++ {
		g := got[p*ps : min((p+1)*ps, len(got))]
		r := ref[p*ps : min((p+1)*ps, len(ref))]
		if bytes.Equal(g, r) {
			continue
		}
		for off := 0; off+4 <= len(g) && off+4 <= len(r); off += 4 {
			gw, rw := binary.LittleEndian.Uint32(g[off:]), binary.LittleEndian.Uint32(r[off:])
			if gw != rw {
				out = append(out, copyMismatch{Page: p, Offset: off, Got: gw, Want: rw, Unwritten: gw == poisonGot && rw == poisonRef})
				break
			}
		}
	}
	return out
}

// samePages lists the pages on which a and b are identical: runs with
// different seeds must not produce the same page.
func samePages(a, b []byte) []int {
	var out []int
	ps := os.Getpagesize()
	for p := 0; (p+1)*ps <= len(a) && (p+1)*ps <= len(b); p++ {
		if bytes.Equal(a[p*ps:(p+1)*ps], b[p*ps:(p+1)*ps]) {
			out = append(out, p)
		}
	}
	return out
}

// diffIndex returns the index of the first byte where got and want
// differ, or -1.
func diffIndex(got, want []byte) int {
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			return i
		}
	}
	if len(got) != len(want) {
		return min(len(got), len(want))
	}
	return -1
}

// firstDiff describes where got and want first differ, for a "page=%s"
// message: the page number (counting from byte offset base of whatever
// got is a window of: a file, a buffer), then the offset in the page and
// the bytes. Empty if they are equal.
func firstDiff(got, want []byte, base int) string {
	i := diffIndex(got, want)
	if i < 0 {
		return ""
	}
	at := base + i
	if i >= len(got) || i >= len(want) {
		return fmt.Sprintf("%d (offset %#x: length %d, want %d)", at/pageSize, at%pageSize, len(got), len(want))
	}
	return fmt.Sprintf("%d (offset %#x: got %#02x, want %#02x)", at/pageSize, at%pageSize, got[i], want[i])
}
