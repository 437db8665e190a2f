package main

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// TestReqLayout pins struct kmt_req: 6 u32, 3 u64, 12 u32, 2×16 u64 =
// 352 bytes with every u64 8-aligned, the same on i386 and x86_64 (run
// the tests with GOARCH=386 too).
func TestReqLayout(t *testing.T) {
	var r kmtReq
	for _, tc := range []struct {
		field     string
		got, want uintptr
	}{
		{"sizeof", unsafe.Sizeof(r), 352},
		{"op", unsafe.Offsetof(r.Op), 0},
		{"sleep_us", unsafe.Offsetof(r.SleepUS), 12},
		{"__pad0", unsafe.Offsetof(r.Pad0), 20},
		{"user_buf", unsafe.Offsetof(r.UserBuf), 24},
		{"user_len", unsafe.Offsetof(r.UserLen), 32},
		{"seed", unsafe.Offsetof(r.Seed), 40},
		{"cpu_before", unsafe.Offsetof(r.CPUBefore), 48},
		{"idx_after", unsafe.Offsetof(r.IdxAfter), 60},
		{"nr_highmem", unsafe.Offsetof(r.NrHighmem), 64},
		{"errors", unsafe.Offsetof(r.Errors), 68},
		{"irq_checks", unsafe.Offsetof(r.IRQChecks), 72},
		{"nvcsw", unsafe.Offsetof(r.Nvcsw), 80},
		{"kmap_real", unsafe.Offsetof(r.KmapReal), 88},
		{"__pad1", unsafe.Offsetof(r.Pad1), 92},
		{"vaddr", unsafe.Offsetof(r.Vaddr), 96},
		{"pfn", unsafe.Offsetof(r.PFN), 224},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.field, tc.got, tc.want)
		}
	}
	if kmtIocRun != 0xc1606b01 {
		t.Errorf("KMT_IOC_RUN = %#x, want 0xc1606b01 (_IOWR('k', 1, 352 bytes))", kmtIocRun)
	}
}

// TestReset: inputs survive, out fields a driver must write are poisoned.
func TestReset(t *testing.T) {
	r := kmtReq{Op: opSleep, Depth: 3, Flags: 1, SleepUS: 5, SpinUS: 6, UserBuf: 7, UserLen: 8, Seed: 9,
		CPUBefore: 1, CPUAfter: 1, Errors: 0, KmapReal: 1, Nvcsw: 4}
	r.Vaddr[0], r.PFN[0] = 0x1000, 5
	r.reset()
	in := kmtReq{Op: opSleep, Depth: 3, Flags: 1, SleepUS: 5, SpinUS: 6, UserBuf: 7, UserLen: 8, Seed: 9}
	if r.Op != in.Op || r.Depth != in.Depth || r.Flags != in.Flags || r.SleepUS != in.SleepUS || r.SpinUS != in.SpinUS ||
		r.UserBuf != in.UserBuf || r.UserLen != in.UserLen || r.Seed != in.Seed {
		t.Errorf("reset lost inputs: %+v", r)
	}
	if r.CPUBefore == r.CPUAfter || r.Errors == 0 || r.IdxAfter == 0 || r.KmapReal <= 1 || r.Nvcsw != 0 || r.Vaddr[0] != 0 || r.PFN[0] != 0 {
		t.Errorf("reset left out fields that would pass unchecked: %s vaddr0=%#x pfn0=%d", r.outString(), r.Vaddr[0], r.PFN[0])
	}
	if len(checkResult(expect{}, &r, false)) == 0 {
		t.Errorf("an answer the driver never wrote passes the checks")
	}
}

func TestParseStats(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want map[string]int64
	}{
		{"colon", "runs: 12\nerrors: 0\nirq_checks:\t5\n", map[string]int64{"runs": 12, "errors": 0, "irq_checks": 5}},
		{"space", "runs 12\nirq errors 3\n", map[string]int64{"runs": 12, "irq_errors": 3}},
		{"key=value", "runs=7 errors=1 max_depth=16\nirq_checks=0x10\n", map[string]int64{"runs": 7, "errors": 1, "max_depth": 16, "irq_checks": 16}},
		{"junk", "# comment\n\nkmap_local_test v1\nErrors: 2 (pattern)\nname: test\n", map[string]int64{"errors": 2}},
		{"empty", "", map[string]int64{}},
		{"driver", "runs 10\nrejected 2\nerrors 0\ncpu_changed 0\nhighmem 1\nmax_depth_irq 15\nmax_depth_copy_to_user 13\n",
			map[string]int64{"runs": 10, "rejected": 2, "errors": 0, "cpu_changed": 0, "highmem": 1, "max_depth_irq": 15, "max_depth_copy_to_user": 13}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseStats(tc.text); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseStats(%q) = %v, want %v", tc.text, got, tc.want)
			}
		})
	}
}

func TestStatErrors(t *testing.T) {
	for _, tc := range []struct {
		m    map[string]int64
		want int64
	}{
		{map[string]int64{"runs": 5, "errors": 0}, 0},
		{map[string]int64{"runs": 5, "errors": 2, "irq_errors": 1}, 3},
		{map[string]int64{"pattern_mismatches": 4}, 4},
		{map[string]int64{"cpu_changed": 1, "idx_leaked": 2, "rejected": 9, "failed": 3}, 3},
		{map[string]int64{}, 0},
	} {
		if got, _ := statErrors(tc.m); got != tc.want {
			t.Errorf("statErrors(%v) = %d, want %d", tc.m, got, tc.want)
		}
	}
}

func TestOpNames(t *testing.T) {
	r := &kmtReq{Op: opCopyToUser, Depth: 4, Seed: 0x10, UserBuf: 0x1000, UserLen: 16384}
	if got, want := r.String(), "op=COPY_TO_USER depth=4 flags=0x0 seed=0x10 user_buf=0x1000 user_len=16384"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if opName(42) != "op42" {
		t.Errorf("opName(42) = %q", opName(42))
	}
}

func TestDepthLimits(t *testing.T) {
	lim := depthLimits(parseStats("max_depth_nest 16\nmax_depth_irq 15\nmax_depth_copy_to_user 13\nmax_depth_copy_from_user 13\n"))
	want := map[uint32]int{opNest: 16, opSleep: 16, opSpin: 16, opCopyToUser: 13, opCopyFromUser: 13, opIRQ: 15}
	if !reflect.DeepEqual(lim, want) {
		t.Errorf("depthLimits = %v, want %v", lim, want)
	}
	if lim := depthLimits(nil); lim[opIRQ] != kmtMaxDepth {
		t.Errorf("no stats: limit %d, want %d", lim[opIRQ], kmtMaxDepth)
	}
	c := &tcase{env: &env{expect: expect{kmapReal: true}}, maxDepth: want}
	for _, tc := range []struct {
		op, flags uint32
		forceMap  bool
		want      int
	}{
		{opCopyToUser, 0, false, 13},
		{opCopyToUser, kmtFlagLowmem, false, 16}, // direct map: no slots
		{opCopyToUser, kmtFlagLowmem, true, 13},
		{opIRQ, 0, false, 15},
	} {
		c.env.forceMap = tc.forceMap
		if got := c.depthCap(tc.op, tc.flags); got != tc.want {
			t.Errorf("depthCap(%s, %#x, force_map=%v) = %d, want %d", opName(tc.op), tc.flags, tc.forceMap, got, tc.want)
		}
	}
	for _, k := range []string{"errors", "irq_errors", "cpu_changed", "idx_leaked"} {
		if !isErrorStat(k) {
			t.Errorf("%s is not treated as an error counter", k)
		}
	}
	for _, k := range []string{"runs", "rejected", "failed", "max_depth_irq", "nvcsw"} {
		if isErrorStat(k) {
			t.Errorf("%s is treated as an error counter", k)
		}
	}
	if isCounterStat("force_map") || isCounterStat("max_depth_nest") || !isCounterStat("runs") {
		t.Error("isCounterStat confuses configuration lines and counters")
	}
}

func TestIRQDepths(t *testing.T) {
	for lim, want := range map[int][]uint32{
		16: {1, 2, 3, 4, 8, 12, 15, 16},
		15: {1, 2, 3, 4, 8, 12, 14, 15},
		12: {1, 2, 3, 4, 8, 11, 12},
		2:  {1, 2},
		1:  {1},
	} {
		if got := irqDepths(lim); !reflect.DeepEqual(got, want) {
			t.Errorf("irqDepths(%d) = %v, want %v", lim, got, want)
		}
	}
}

func TestStatFloors(t *testing.T) {
	before := map[string]int64{"runs": 100, "nests": 60, "sleeps": 40}
	for _, tc := range []struct {
		name  string
		after map[string]int64
		done  map[string]int64
		words []string
	}{
		{"counted", map[string]int64{"runs": 110, "nests": 65, "sleeps": 45}, map[string]int64{"NEST": 5, "SLEEP": 5}, nil},
		{"other tasks' runs on top", map[string]int64{"runs": 130, "nests": 80, "sleeps": 50}, map[string]int64{"NEST": 5, "SLEEP": 5}, nil},
		{"a SLEEP not counted", map[string]int64{"runs": 110, "nests": 66, "sleeps": 44}, map[string]int64{"NEST": 5, "SLEEP": 5},
			[]string{"sleeps rose by 4", "completed 5 SLEEP requests"}},
		{"runs not counted", map[string]int64{"runs": 101, "nests": 65, "sleeps": 45}, map[string]int64{"NEST": 5, "SLEEP": 5},
			[]string{"runs rose by 1", "completed 10 requests"}},
		{"counters the driver does not show", map[string]int64{}, map[string]int64{"NEST": 5}, nil},
	} {
		errs := statFloors(before, tc.after, tc.done)
		all := strings.Join(errs, "\n")
		if len(tc.words) == 0 && len(errs) > 0 {
			t.Errorf("%s: %v, want none", tc.name, errs)
		}
		if len(tc.words) > 0 && len(errs) == 0 {
			t.Errorf("%s: no failure", tc.name)
		}
		for _, w := range tc.words {
			if !strings.Contains(all, w) {
				t.Errorf("%s: %q lacks %q", tc.name, all, w)
			}
		}
	}
}
