package gup

import (
	"runtime"
	"testing"
	"unsafe"
)

// The ioctl numbers of both targets, from gcc -m64/-m32 against the 6.12
// headers (and seen in the guests).
func TestIoctlNumbersPerArch(t *testing.T) {
	cases := []struct {
		arch                    string
		gupTest, pinLongterm    uintptr
		start, basic, fastBench uintptr
	}{
		{"amd64", 80, 24, 0x40186707, 0xc0506704, 0xc0506701},
		{"386", 76, 20, 0x40146707, 0xc04c6704, 0xc04c6701},
	}
	for _, c := range cases {
		t.Run(c.arch, func(t *testing.T) {
			if got := ioc(iocWrite, 'g', 7, c.pinLongterm); got != c.start {
				t.Errorf("START for %d-byte pin_longterm_test = %#x, want %#x", c.pinLongterm, got, c.start)
			}
			if got := ioc(iocRead|iocWrite, 'g', 4, c.gupTest); got != c.basic {
				t.Errorf("GUP_BASIC_TEST for %d-byte gup_test = %#x, want %#x", c.gupTest, got, c.basic)
			}
			if got := ioc(iocRead|iocWrite, 'g', 1, c.gupTest); got != c.fastBench {
				t.Errorf("GUP_FAST_BENCHMARK = %#x, want %#x", got, c.fastBench)
			}
			if c.arch != runtime.GOARCH {
				return
			}
			if s := unsafe.Sizeof(PinArgs{}); s != c.pinLongterm {
				t.Errorf("sizeof(pin_longterm_test) = %d on %s, want %d", s, c.arch, c.pinLongterm)
			}
			if s := unsafe.Sizeof(Test{}); s != c.gupTest {
				t.Errorf("sizeof(gup_test) = %d on %s, want %d", s, c.arch, c.gupTest)
			}
			if PinLongtermTestStart != c.start || GupBasicTest != c.basic {
				t.Errorf("built-in numbers START=%#x BASIC=%#x, want %#x %#x", PinLongtermTestStart, GupBasicTest, c.start, c.basic)
			}
		})
	}
	// Same on both: no struct, or a __u64 alone.
	if PinLongtermTestStop != 0x6708 || PinLongtermTestRead != 0x40086709 {
		t.Errorf("STOP=%#x READ=%#x, want 0x6708 0x40086709", PinLongtermTestStop, PinLongtermTestRead)
	}
}

func TestGupTestOffsets(t *testing.T) {
	var g Test
	got := []uintptr{unsafe.Offsetof(g.Addr), unsafe.Offsetof(g.Size), unsafe.Offsetof(g.NrPagesPerCall),
		unsafe.Offsetof(g.GupFlags), unsafe.Offsetof(g.TestFlags), unsafe.Offsetof(g.WhichPages)}
	want := []uintptr{16, 24, 32, 36, 40, 44}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d at offset %d, want %d", i, got[i], want[i])
		}
	}
}

func TestParseVMStat(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		wantErr bool
		want    map[string]int64
	}{
		{"pins", "nr_free_pages 1234\nnr_foll_pin_acquired 10\nnr_foll_pin_released 7\n", false,
			map[string]int64{"nr_free_pages": 1234, PinAcquired: 10, PinReleased: 7}},
		{"negative and blank", "\nnr_x -3\n", false, map[string]int64{"nr_x": -3}},
		{"garbage value", "nr_x abc\n", true, nil},
		{"three fields", "nr_x 1 2\n", true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseVMStat([]byte(c.in))
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d", k, got[k], v)
				}
			}
			if !c.wantErr && len(got) != len(c.want) {
				t.Errorf("got %d counters, want %d", len(got), len(c.want))
			}
		})
	}
}

func TestVMStatDeltaAndPins(t *testing.T) {
	before := VMStat{PinAcquired: 100, PinReleased: 90, "cow_fork_pinned_copy": 5}
	after := VMStat{PinAcquired: 110, PinReleased: 100}
	if d, ok := before.Delta(after, PinAcquired); !ok || d != 10 {
		t.Errorf("Delta(acquired) = %d, %v; want 10, true", d, ok)
	}
	if _, ok := before.Delta(after, "cow_fork_pinned_copy"); ok {
		t.Errorf("Delta of a counter missing afterwards reported ok")
	}
	if a, r, ok := after.Pins(); !ok || a != 110 || r != 100 {
		t.Errorf("Pins() = %d %d %v", a, r, ok)
	}
	if _, _, ok := (VMStat{PinAcquired: 1}).Pins(); ok {
		t.Errorf("Pins() ok without nr_foll_pin_released")
	}
}
