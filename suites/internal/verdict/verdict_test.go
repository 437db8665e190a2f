package verdict

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/guest"
)

func check(t *testing.T, name string, got Verdict, wantSkip bool, words ...string) {
	t.Helper()
	if got.Skip != wantSkip {
		t.Errorf("%s: %v, want skip=%v", name, got, wantSkip)
	}
	for _, w := range words {
		if !strings.Contains(got.Why, w) {
			t.Errorf("%s: reason %q lacks %q", name, got.Why, w)
		}
	}
}

func TestPatchSet(t *testing.T) {
	all := guest.BootArgs{PatchSets: []string{"cow", "kmap-local", "umcg", "mutants/umcg-no-tid-running"}}
	for _, tc := range []struct {
		name     string
		set      string
		boot     guest.BootArgs
		bootErr  error
		wantSkip bool
		words    []string
	}{
		{"nothing applied", "umcg", guest.BootArgs{}, nil, true, []string{"feature gone", "umcg is not applied", "patch sets none"}},
		{"others applied", "umcg", guest.BootArgs{PatchSets: []string{"cow"}}, nil, true, []string{"patch sets cow"}},
		{"applied", "umcg", all, nil, false, []string{"feature gone", "although patch set umcg is applied", "mutants/umcg-no-tid-running"}},
		{"a mutant's directory is not its set", "umcg-no-tid-running", all, nil, true, []string{"not applied"}},
		{"command line unreadable", "umcg", guest.BootArgs{}, errors.New("bad value"), false, []string{"cannot be told", "bad value"}},
	} {
		check(t, tc.name, PatchSet(tc.set, "feature gone", tc.boot, tc.bootErr), tc.wantSkip, tc.words...)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      map[string]string
		cfgErr   error
		wantSkip bool
		words    []string
	}{
		{"built in", map[string]string{"CONFIG_X": "y"}, nil, false, []string{"feature gone", "although the kernel is built with CONFIG_X=y"}},
		{"module", map[string]string{"CONFIG_X": "m"}, nil, true, []string{"CONFIG_X=m in /proc/config.gz"}},
		{"not set", map[string]string{}, nil, true, []string{"CONFIG_X is not set"}},
		{"config unreadable", nil, errors.New("no /proc/config.gz"), false, []string{"cannot be told", "no /proc/config.gz"}},
	} {
		check(t, tc.name, Config("CONFIG_X", "feature gone", tc.cfg, tc.cfgErr), tc.wantSkip, tc.words...)
	}
}

type fakeT struct{ skipped, failed string }

func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestApply(t *testing.T) {
	var s, f fakeT
	Skipf("why %d", 1).Apply(&s)
	Failf("why %d", 2).Apply(&f)
	if s.skipped != "why 1" || s.failed != "" || f.failed != "why 2" || f.skipped != "" {
		t.Errorf("skip -> %+v, fail -> %+v", s, f)
	}
}
