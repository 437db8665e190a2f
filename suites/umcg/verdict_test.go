package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/internal/umcg"
)

// TestProbeVerdict: the UMCG tests skip only on ENOSYS and only when
// patch set umcg is not applied.
func TestProbeVerdict(t *testing.T) {
	enosys := fmt.Errorf("%w: umcg_ctl (syscall 463) = ENOSYS", umcg.ErrAbsent)
	foreign := fmt.Errorf("%w: syscalls 463/464/465 answer EFAULT/EINVAL/EINVAL", umcg.ErrForeign)
	with := guest.BootArgs{PatchSets: []string{"cow", "kmap-local", "umcg"}}
	without := guest.BootArgs{PatchSets: []string{"cow", "kmap-local"}}
	for _, tc := range []struct {
		name     string
		probe    error
		boot     guest.BootArgs
		bootErr  error
		stop     bool
		wantSkip bool
		words    []string
	}{
		{"calls there", nil, with, nil, false, false, nil},
		{"calls there, set not named", nil, without, nil, false, false, nil},
		{"ENOSYS without umcg", enosys, without, nil, true, true, []string{"ENOSYS", "umcg is not applied", "cow,kmap-local"}},
		{"ENOSYS with umcg", enosys, with, nil, true, false, []string{"ENOSYS", "although patch set umcg is applied"}},
		{"ENOSYS, command line unreadable", enosys, guest.BootArgs{}, errors.New("bad kharness value"), true, false, []string{"cannot be told"}},
		{"other calls without umcg", foreign, without, nil, true, false, []string{"EFAULT", "not the UMCG system calls"}},
		{"other calls with umcg", foreign, with, nil, true, false, []string{"EFAULT"}},
	} {
		v, stop := probeVerdict(tc.probe, tc.boot, tc.bootErr)
		if stop != tc.stop {
			t.Errorf("%s: stop=%v, want %v", tc.name, stop, tc.stop)
			continue
		}
		if !stop {
			continue
		}
		if v.Skip != tc.wantSkip {
			t.Errorf("%s: %v, want skip=%v", tc.name, v, tc.wantSkip)
		}
		for _, w := range tc.words {
			if !strings.Contains(v.Why, w) {
				t.Errorf("%s: reason %q lacks %q", tc.name, v.Why, w)
			}
		}
	}
}

func TestRunFloors(t *testing.T) {
	for _, tc := range []struct {
		name                                 string
		progress, blocks, mustBlock, switchs uint64
		words                                []string
	}{
		{"healthy", 5000, 300, 120, 4000, nil},
		{"no must-block op picked", 50, 0, 0, 40, nil},
		{"no progress", 0, 0, 0, 0, []string{"no worker completed a single round"}},
		{"runs without switches", 5000, 300, 120, 0, []string{"switches=0", "UMCG_TID_RUNNING"}},
		{"must-block ops never blocked", 5000, 0, 120, 4000, []string{"120 ops that must block", "blocks=0"}},
	} {
		errs := runFloors(tc.progress, tc.blocks, tc.mustBlock, tc.switchs)
		all := strings.Join(errs, "\n")
		if (len(errs) > 0) != (len(tc.words) > 0) {
			t.Errorf("%s: %q, want failures %v", tc.name, all, tc.words)
		}
		for _, w := range tc.words {
			if !strings.Contains(all, w) {
				t.Errorf("%s: %q lacks %q", tc.name, all, w)
			}
		}
	}
}

func TestStormFloor(t *testing.T) {
	for _, tc := range []struct {
		sent, toServers, eintr uint64
		word                   string
	}{
		{20000, 5000, 800, ""},
		{20000, 5000, 0, "no umcg_wait of a server returned EINTR"},
		{50, minServerSignals - 1, 0, ""}, // too few at servers to require an EINTR
		{0, 0, 0, "sent no signal"},
	} {
		got := stormFloor(tc.sent, tc.toServers, tc.eintr)
		if (got == "") != (tc.word == "") || !strings.Contains(got, tc.word) {
			t.Errorf("stormFloor(%d, %d, %d) = %q, want %q", tc.sent, tc.toServers, tc.eintr, got, tc.word)
		}
	}
}

// TestBenchVerdict: the throughput floor passes the whole measured range
// and catches a halved umcg hand-off rate from the typical ratio and from
// the lowest measurement; unequal worker turns fail.
func TestBenchVerdict(t *testing.T) {
	measured := map[string][3]float64{ // lowest, typical, highest
		"amd64": {0.27, 0.30, 0.46},
		"386":   {0.42, 0.50, 0.72},
	}
	for arch, r := range measured {
		floor := benchFloor[arch]
		if floor == 0 {
			t.Fatalf("no floor for %s", arch)
		}
		for _, v := range r {
			if msg := benchVerdict(v, floor, 1); msg != "" {
				t.Errorf("%s: measured ratio %.3f fails: %s", arch, v, msg)
			}
		}
		for _, v := range r[:2] {
			if msg := benchVerdict(v/2, floor, 1); !strings.Contains(msg, "twice as slow") {
				t.Errorf("%s: halved ratio %.3f passes (floor %.3f)", arch, v/2, floor)
			}
		}
	}
	if msg := benchVerdict(1, 0.18, 0.3); !strings.Contains(msg, "unequal turns") {
		t.Errorf("a 0.3 share passes: %q", msg)
	}
	if got := pctl([]time.Duration{5, 1, 3, 2, 4}, 50); got != 3 {
		t.Errorf("p50 of 1..5 = %d, want 3", got)
	}
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 1..3 = %v, want 2", got)
	}
}
