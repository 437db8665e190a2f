package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

func TestParseFdinfo(t *testing.T) {
	const head = "pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t1057\n"
	for _, tc := range []struct {
		name    string
		in      string
		want    fdinfo
		wantErr string
	}{
		{"fresh", head + "pending:\t0\ntotal:\t0\nAPI:\taa:0:80000000000001ff\n",
			fdinfo{API: 0xaa, Ioctls: 0x80000000000001ff}, ""},
		{"note's observation", head + "pending:\t0\ntotal:\t1\nAPI:\taa:80000000:80000000000001ff\n",
			fdinfo{Total: 1, API: 0xaa, Features: 0x80000000, Ioctls: 0x80000000000001ff}, ""},
		{"features", head + "pending:\t2\ntotal:\t3\nAPI:\taa:80000100:80000000000001ff\n",
			fdinfo{Pending: 2, Total: 3, API: 0xaa, Features: 0x80000100, Ioctls: 0x80000000000001ff}, ""},
		{"no API line", head + "pending:\t0\ntotal:\t0\n", fdinfo{}, `no "API" line`},
		{"short API", head + "pending:\t0\ntotal:\t0\nAPI:\taa:0\n", fdinfo{}, "api:features:ioctls"},
		{"bad count", head + "pending:\tx\ntotal:\t0\nAPI:\taa:0:1\n", fdinfo{}, "pending"},
		{"not a userfaultfd", head, fdinfo{}, `no "pending" line`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFdinfo(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if fdinfoIoctls != 0x80000000000001ff {
		t.Errorf("fdinfoIoctls = %#x, want the note's 0x80000000000001ff", fdinfoIoctls)
	}
}

func TestExpectedFeatures(t *testing.T) {
	x86_64 := map[string]string{"CONFIG_HAVE_ARCH_USERFAULTFD_WP": "y", "CONFIG_HAVE_ARCH_USERFAULTFD_MINOR": "y", "CONFIG_PTE_MARKER_UFFD_WP": "y"}
	for _, tc := range []struct {
		name string
		cfg  map[string]string
		want uint64
	}{
		{"i386 (note: 0x149fe)", map[string]string{"CONFIG_USERFAULTFD": "y"}, 0x149fe},
		{"x86_64 (note: 0x1ffff)", x86_64, 0x1ffff},
		{"x86_64 without PTE markers", map[string]string{"CONFIG_HAVE_ARCH_USERFAULTFD_WP": "y", "CONFIG_HAVE_ARCH_USERFAULTFD_MINOR": "y"}, 0x1ffff &^ 0xb000},
		{"minor only", map[string]string{"CONFIG_HAVE_ARCH_USERFAULTFD_MINOR": "y"}, 0x149fe | 0x600},
	} {
		if got := expectedFeatures(tc.cfg); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	if expectedFeatures(map[string]string{})&archOnlyFeatures != 0 {
		t.Errorf("a kernel without WP/MINOR support is expected to offer arch-only features")
	}
}

// TestFeatureVerdict: a missing feature is a skip only when the kernel's
// configuration leaves it out (i386's write-protect and minor modes);
// otherwise, or when the configuration cannot be read, a failure.
func TestFeatureVerdict(t *testing.T) {
	i386 := map[string]string{"CONFIG_USERFAULTFD": "y"}
	x86_64 := map[string]string{"CONFIG_USERFAULTFD": "y", "CONFIG_HAVE_ARCH_USERFAULTFD_WP": "y", "CONFIG_HAVE_ARCH_USERFAULTFD_MINOR": "y", "CONFIG_PTE_MARKER_UFFD_WP": "y"}
	for _, tc := range []struct {
		name     string
		miss     uint64
		cfg      map[string]string
		cfgErr   error
		wantSkip bool
		words    []string
	}{
		{"i386 write-protect", uffd.FeaturePagefaultFlagWP, i386, nil, true,
			[]string{"PAGEFAULT_FLAG_WP need CONFIG_HAVE_ARCH_USERFAULTFD_WP", "CONFIG_HAVE_ARCH_USERFAULTFD_WP is not set", "x86_64-only"}},
		{"i386 minor shmem", uffd.FeatureMinorShmem, i386, nil, true,
			[]string{"MINOR_SHMEM need CONFIG_HAVE_ARCH_USERFAULTFD_MINOR"}},
		{"x86_64 write-protect missing", uffd.FeaturePagefaultFlagWP, x86_64, nil, false,
			[]string{"although its configuration implies PAGEFAULT_FLAG_WP", "CONFIG_HAVE_ARCH_USERFAULTFD_WP=y"}},
		{"x86_64 minor missing", uffd.FeatureMinorShmem, x86_64, nil, false, []string{"implies MINOR_SHMEM"}},
		{"EVENT_FORK is never optional", uffd.FeatureEventFork, i386, nil, false,
			[]string{"EVENT_FORK are offered by every 6.12 kernel"}},
		{"MOVE is never optional", uffd.FeatureMove, x86_64, nil, false, []string{"implies MOVE"}},
		{"one implied, one gated", uffd.FeatureMove | uffd.FeaturePagefaultFlagWP, i386, nil, false, []string{"implies MOVE"}},
		{"no configuration", uffd.FeaturePagefaultFlagWP, nil, errors.New("no /proc/config.gz"), false, []string{"cannot be told", "no /proc/config.gz"}},
	} {
		v := featureVerdict(tc.miss, expectedFeatures(tc.cfg)&^tc.miss, tc.cfg, tc.cfgErr)
		if v.Skip != tc.wantSkip {
			t.Errorf("%s: %v, want skip=%v", tc.name, v, tc.wantSkip)
		}
		for _, w := range append(tc.words, "does not offer userfaultfd features", "it offers") {
			if !strings.Contains(v.Why, w) {
				t.Errorf("%s: reason %q lacks %q", tc.name, v.Why, w)
			}
		}
	}
}

func TestRangeIoctls(t *testing.T) {
	for _, tc := range []struct {
		mode uint64
		want uint64
	}{
		{uffd.ModeMissing, 0x13c},
		{uffd.ModeMissing | uffd.ModeWP, 0x17c},
		{uffd.ModeMinor, 0x1bc},
		{uffd.ModeMissing | uffd.ModeWP | uffd.ModeMinor, 0x1fc},
	} {
		if got := rangeIoctls(tc.mode); got != tc.want {
			t.Errorf("rangeIoctls(%#x) = %#x, want %#x", tc.mode, got, tc.want)
		}
	}
	if apiIoctls != 0x8000000000000003 {
		t.Errorf("apiIoctls = %#x, want the note's 0x8000000000000003", apiIoctls)
	}
}

func TestFeatureNames(t *testing.T) {
	for _, tc := range []struct {
		f    uint64
		want string
	}{
		{0, "none"},
		{uffd.FeatureEventFork | uffd.FeatureMove, "EVENT_FORK|MOVE"},
		{uffd.FeaturePagefaultFlagWP | 1<<40, "PAGEFAULT_FLAG_WP|0x10000000000"},
		{allFeatures, strings.Join([]string{"PAGEFAULT_FLAG_WP", "EVENT_FORK", "EVENT_REMAP", "EVENT_REMOVE",
			"MISSING_HUGETLBFS", "MISSING_SHMEM", "EVENT_UNMAP", "SIGBUS", "THREAD_ID", "MINOR_HUGETLBFS",
			"MINOR_SHMEM", "EXACT_ADDRESS", "WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED", "POISON", "WP_ASYNC", "MOVE"}, "|")},
	} {
		if got := featureNames(tc.f); got != tc.want {
			t.Errorf("featureNames(%#x) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 50, 3 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 100, 5 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0, 1 * time.Millisecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 9 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %g) = %v, want %v", tc.in, tc.p, got, tc.want)
		}
	}
}

// TestStormZero: about one page in four is zero-filled, and the choice
// differs between rounds (so that COPY and ZEROPAGE race on every page
// over a run).
func TestStormZero(t *testing.T) {
	const pages, rounds = 1024, 8
	differs := 0
	for r := uint32(1); r <= rounds; r++ {
		n := 0
		for p := 0; p < pages; p++ {
			if stormZero(r, p) {
				n++
			}
			if stormZero(r, p) != stormZero(r+1, p) {
				differs++
			}
		}
		if n < pages/4-64 || n > pages/4+64 {
			t.Errorf("round %d: %d of %d pages zero-filled, want about a quarter", r, n, pages)
		}
	}
	if differs < rounds*pages/4 {
		t.Errorf("only %d page choices change between rounds", differs)
	}
}

func TestPatternDescribe(t *testing.T) {
	b := pattern(3*pageSize, 0x5a)
	for _, tc := range []struct {
		page []byte
		seed uint32
		want string
	}{
		{b[2*pageSize:], 0x5a, "page 2 of the pattern"},
		{b[pageSize : 2*pageSize], 0x5a, "page 1 of the pattern"},
		{make([]byte, pageSize), 0x5a, "zeros"},
		{append([]byte{0, 0, 0, 0}, b[4:pageSize]...), 0x5a, "data starting with zeros"},
		{pattern(pageSize, 0x11), 0x5a, "unknown data"},
	} {
		if got := describePage(tc.page, tc.seed); !strings.HasPrefix(got, tc.want) {
			t.Errorf("describePage = %q, want %q", got, tc.want)
		}
	}
	seen := map[uint32]bool{}
	for off := 0; off < 2*pageSize; off += 4 {
		w := patternWord(0x5a, off)
		if w == 0 || seen[w] {
			t.Fatalf("patternWord(0x5a, %d) = %#x: zero or repeated", off, w)
		}
		seen[w] = true
	}
}

func TestChildStatus(t *testing.T) {
	exited := func(code int) unix.WaitStatus { return unix.WaitStatus(code << 8) }
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want string
	}{
		{exited(childOK), ""},
		{exited(childBadPage0), "populated before the fork"},
		{exited(childBadPage1), "missing at the fork"},
		{exited(3), "status 3"},
		{unix.WaitStatus(unix.SIGKILL), "killed"},
	} {
		got := childStatus(tc.ws)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("childStatus(%#x) = %q, want %q", uint32(tc.ws), got, tc.want)
		}
	}
}

func TestCollisionPage(t *testing.T) {
	for n := uint32(1); n <= 64; n++ {
		for _, pages := range []int{256, 512, 1024} {
			p := collisionPage(n, pages)
			if p < 0 || p >= pages {
				t.Fatalf("collisionPage(%d, %d) = %d: outside the area", n, pages, p)
			}
			if zero := stormZero(n, p); zero != (n%2 == 0) {
				t.Errorf("collisionPage(%d, %d) = %d, resolved with ZEROPAGE=%v; want ZEROPAGE in even rounds only", n, pages, p, zero)
			}
		}
	}
}

func TestStormFloors(t *testing.T) {
	for _, tc := range []struct {
		name                                         string
		rounds                                       int
		touches, wantTouches, faults, eexist, zeroes int64
		words                                        []string
	}{
		{"healthy", 10, 7680, 7680, 2000, 12, 400, nil},
		{"lost touches", 10, 7000, 7680, 2000, 12, 400, []string{"7000 touches", "want 7680"}},
		{"too few faults", 10, 7680, 7680, 19, 12, 400, []string{"19 faults", "at least 2 per round"}},
		{"EEXIST reported as success", 10, 7680, 7680, 2000, 5, 400, []string{"5 EEXIST in 10 rounds", "must fail with EEXIST"}},
		{"no ZEROPAGE", 2, 1536, 1536, 400, 2, 0, []string{"no ZEROPAGE"}},
	} {
		errs := stormFloors(tc.rounds, tc.touches, tc.wantTouches, tc.faults, tc.eexist, tc.zeroes)
		if len(tc.words) == 0 {
			if len(errs) > 0 {
				t.Errorf("%s: %v, want no failure", tc.name, errs)
			}
			continue
		}
		all := strings.Join(errs, "\n")
		for _, w := range tc.words {
			if !strings.Contains(all, w) {
				t.Errorf("%s: failures %q lack %q", tc.name, all, w)
			}
		}
	}
}
