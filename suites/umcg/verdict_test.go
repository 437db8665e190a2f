package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

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
