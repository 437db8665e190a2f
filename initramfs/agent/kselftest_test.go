package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
)

// runKselftest runs a plan of shell-script programs through the agent's
// kselftest runner and returns the events it emitted.
func runKselftest(t *testing.T, s guest.Suite, progs map[string]string, plan guest.KselftestPlan) []event.Event {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, guest.KselftestDir(s.Name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, script := range progs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(plan)
	if err := os.WriteFile(filepath.Join(dir, guest.KselftestPlanFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	a := &agent{log: io.Discard, ev: event.NewWriter(&buf), drain: func() {}, root: root}
	p, ok := a.readPlan(s.Name)
	if !ok {
		t.Fatal("plan not found")
	}
	a.kselftest(s, p, guest.BootArgs{Heartbeat: time.Hour})
	var evs []event.Event
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var e event.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// ends maps each reported test to its result (and message).
func ends(evs []event.Event) map[string]event.Event {
	m := map[string]event.Event{}
	for _, e := range evs {
		if e.Type == event.TestEnd {
			m[e.Test] = e
		}
	}
	return m
}

func TestKselftestPrograms(t *testing.T) {
	ktapOK := `cat <<'X'
TAP version 13
1..3
# [RUN] first
ok 1 first
# [RUN] second
not ok 2 second
# [RUN] third
ok 3 # SKIP no THP
# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
X
exit 1
`
	crash := `cat <<'X'
TAP version 13
1..2
ok 1 first
# [RUN] second
X
kill -9 $$
`
	uffd := `echo "Testing register-ioctls on anon... done"
echo "Testing wp-unpopulated on anon... skipped [reason: feature missing]"
echo "Testing move on anon... failed [reason: wrong byte]"
exit 1
`
	tests := []struct {
		name     string
		suite    guest.Suite
		progs    map[string]string
		plan     []guest.KselftestProgram
		want     map[string]event.Result
		suiteEnd event.Result
	}{
		{name: "ktap cases and the program's exit", suite: guest.Suite{Name: "ks"},
			progs:    map[string]string{"cow": ktapOK},
			plan:     []guest.KselftestProgram{{Name: "cow", Format: "ktap", Timeout: time.Minute}},
			want:     map[string]event.Result{"cow": event.Fail, "cow/first": event.Pass, "cow/second": event.Fail, "cow/third": event.Skip},
			suiteEnd: event.Pass},
		{name: "a program killed mid-case: the case crashed", suite: guest.Suite{Name: "ks"},
			progs:    map[string]string{"gup": crash},
			plan:     []guest.KselftestProgram{{Name: "gup", Timeout: time.Minute}},
			want:     map[string]event.Result{"gup": event.Fail, "gup/first": event.Pass, "gup/second": event.Fail},
			suiteEnd: event.Pass},
		{name: "uffd-unit lines", suite: guest.Suite{Name: "ks"},
			progs: map[string]string{"uffd-unit-tests": uffd},
			plan:  []guest.KselftestProgram{{Name: "uffd-unit-tests", Format: "uffd-unit", Timeout: time.Minute}},
			want: map[string]event.Result{"uffd-unit-tests": event.Fail, "uffd-unit-tests/register-ioctls on anon": event.Pass,
				"uffd-unit-tests/wp-unpopulated on anon": event.Skip, "uffd-unit-tests/move on anon": event.Fail},
			suiteEnd: event.Pass},
		{name: "exit 4 is a skip, a hang its timeout", suite: guest.Suite{Name: "ks"},
			progs: map[string]string{"skipper": "echo no hugetlb; exit 4\n", "hang": "sleep 60\n"},
			plan: []guest.KselftestProgram{{Name: "skipper", Timeout: time.Minute},
				{Name: "hang", Timeout: 300 * time.Millisecond}},
			want:     map[string]event.Result{"skipper": event.Skip, "hang": event.Timeout},
			suiteEnd: event.Pass},
		{name: "the suite's test regexp selects programs", suite: guest.Suite{Name: "ks", Tests: "b"},
			progs:    map[string]string{"a": "exit 1\n", "b": "exit 0\n"},
			plan:     []guest.KselftestProgram{{Name: "a", Timeout: time.Minute}, {Name: "b", Timeout: time.Minute}},
			want:     map[string]event.Result{"b": event.Pass},
			suiteEnd: event.Pass},
		{name: "the suite's deadline stops the rest", suite: guest.Suite{Name: "ks", Deadline: 300 * time.Millisecond},
			progs:    map[string]string{"slow": "sleep 60\n", "next": "exit 0\n"},
			plan:     []guest.KselftestProgram{{Name: "slow", Timeout: time.Minute}, {Name: "next", Timeout: time.Minute}},
			want:     map[string]event.Result{"slow": event.Timeout},
			suiteEnd: event.Timeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := runKselftest(t, tc.suite, tc.progs, guest.KselftestPlan{Programs: tc.plan})
			got := ends(evs)
			for name, want := range tc.want {
				if e, ok := got[name]; !ok {
					t.Errorf("%s: never reported", name)
				} else if e.Result != want {
					t.Errorf("%s: %s (%q), want %s", name, e.Result, e.Message, want)
				}
			}
			for name := range got {
				if _, ok := tc.want[name]; !ok {
					t.Errorf("%s reported, not expected", name)
				}
			}
			if evs[0].Type != event.SuiteStart {
				t.Fatalf("first event %s, want suite-start", evs[0].Type)
			}
			var declared []string
			for _, p := range tc.plan {
				if tc.suite.Tests == "" || strings.Contains(tc.suite.Tests, p.Name) {
					declared = append(declared, p.Name)
				}
			}
			if strings.Join(evs[0].Tests, ",") != strings.Join(declared, ",") {
				t.Errorf("declared %v, want %v", evs[0].Tests, declared)
			}
			last := evs[len(evs)-1]
			if last.Type != event.SuiteEnd || last.Result != tc.suiteEnd {
				t.Errorf("last event %s %s, want suite-end %s", last.Type, last.Result, tc.suiteEnd)
			}
		})
	}
}

// TestKselftestRealOutput replays what cow and uffd-unit-tests printed in
// a guest here (testdata/real-*.out): every case is reported, named
// after its "[RUN]" announcement, with the program's own totals; on i386
// uffd-unit-tests died of a SIGSEGV in move-pmd, which is that case's
// failure (the program printed "Testing move-pmd on anon... " and no
// result).
func TestKselftestRealOutput(t *testing.T) {
	abs := func(f string) string { p, _ := filepath.Abs(filepath.Join("testdata", f)); return p }
	tests := []struct {
		prog, file, format string
		then               string // what the program does after printing
		pass, skip, fail   int
		named              map[string]event.Result
	}{
		{"cow", "real-cow-x86_64.out", "ktap", "", 491, 253, 0, map[string]event.Result{
			"cow/Basic COW after fork() ... with base page":             event.Pass,
			"cow/Basic COW after fork() ... with swapped out base page": event.Skip,
			"cow/R/O longterm GUP-fast pin ... with huge zeropage":      event.Pass,
		}},
		{"uffd-unit-tests", "real-uffd-unit-tests-x86_64.out", "uffd-unit", "", 42, 24, 0, map[string]event.Result{
			"uffd-unit-tests/register-ioctls on anon":    event.Pass,
			"uffd-unit-tests/register-ioctls on hugetlb": event.Skip,
		}},
		{"uffd-unit-tests", "real-uffd-unit-tests-i386-segv.out", "uffd-unit", "kill -SEGV $$\n", 8, 5, 1, map[string]event.Result{
			"uffd-unit-tests":                  event.Fail,
			"uffd-unit-tests/move on anon":     event.Pass,
			"uffd-unit-tests/move-pmd on anon": event.Fail,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.prog, func(t *testing.T) {
			evs := runKselftest(t, guest.Suite{Name: "kselftest-mm"}, map[string]string{tc.prog: "cat " + abs(tc.file) + "\n" + tc.then},
				guest.KselftestPlan{Programs: []guest.KselftestProgram{{Name: tc.prog, Format: tc.format, Timeout: time.Minute}}})
			got := ends(evs)
			pass, skip, other := 0, 0, 0
			for name, e := range got {
				if name == tc.prog {
					continue
				}
				switch e.Result {
				case event.Pass:
					pass++
				case event.Skip:
					skip++
				default:
					other++
					if tc.named[name] != e.Result {
						t.Errorf("%s: %s %q", name, e.Result, e.Message)
					}
				}
			}
			if pass != tc.pass || skip != tc.skip || other != tc.fail {
				t.Errorf("cases: %d pass, %d skip, %d other; want %d, %d, %d (the program's own totals)", pass, skip, other, tc.pass, tc.skip, tc.fail)
			}
			for name, want := range tc.named {
				if got[name].Result != want {
					t.Errorf("%s: %q, want %s", name, got[name].Result, want)
				}
			}
		})
	}
}

// TestSysctl: a suite's settings are made before its programs and undone
// after; one the kernel lacks, or grants in part, is logged.
func TestSysctl(t *testing.T) {
	root := t.TempDir()
	vm := filepath.Join(root, "proc/sys/vm")
	os.MkdirAll(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "nr_hugepages"), []byte("0\n"), 0o644)
	var buf bytes.Buffer
	a := &agent{log: io.Discard, ev: event.NewWriter(&buf), drain: func() {}, root: root}
	restore := a.sysctl("ks", map[string]string{"vm.nr_hugepages": "16", "vm.no_such_knob": "1"})
	if b, _ := os.ReadFile(filepath.Join(vm, "nr_hugepages")); string(b) != "16" {
		t.Errorf("during the suite: %q, want 16", b)
	}
	restore()
	if b, _ := os.ReadFile(filepath.Join(vm, "nr_hugepages")); string(b) != "0\n" {
		t.Errorf("after the suite: %q, want the old 0", b)
	}
	if !strings.Contains(buf.String(), "sysctl vm.no_such_knob=1") {
		t.Errorf("a missing knob was not logged: %s", buf.String())
	}
}
