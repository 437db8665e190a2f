package results

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/splat"
)

// ev builds guest event streams for the verdict tables.
func suiteStart(s string, tests ...string) event.Event {
	return event.Event{Type: event.SuiteStart, Suite: s, Tests: tests}
}
func testEnd(s, name string, r event.Result, msg string, kmsg ...string) event.Event {
	return event.Event{Type: event.TestEnd, Suite: s, Test: name, Result: r, Message: msg, Kmsg: kmsg}
}
func suiteEnd(s string, r event.Result, msg string) event.Event {
	return event.Event{Type: event.SuiteEnd, Suite: s, Result: r, Message: msg}
}

// TestCellVerdict: a cell passes, or counts a mutant as caught, only for
// the right reason. Each row is a guest event stream and the boot's own
// verdict, judged for a normal cell and for an `expect: fail` cell.
func TestCellVerdict(t *testing.T) {
	booted := Boot{Outcome: outcome.Pass}
	tests := []struct {
		name       string
		suites     []string
		events     []event.Event
		boot       Boot
		want       outcome.Outcome // normal cell
		wantExpect outcome.Outcome // expect: fail
		reason     string
	}{
		{"all pass", []string{"s"}, []event.Event{suiteStart("s", "a", "b"), testEnd("s", "a", event.Pass, ""), testEnd("s", "b", event.Skip, "only on 386"), suiteEnd("s", event.Pass, "")},
			booted, outcome.Pass, outcome.UnexpectedOK, ""},
		{"a test fails", []string{"s"}, []event.Event{suiteStart("s", "a", "b"), testEnd("s", "a", event.Pass, ""), testEnd("s", "b", event.Fail, "boom"), suiteEnd("s", event.Fail, "exit status 1")},
			booted, outcome.TestFail, outcome.ExpectedFail, "s/b (test-failure)"},
		{"silence past no_output while a test runs", []string{"s"}, []event.Event{suiteStart("s", "a", "b")},
			Boot{Outcome: outcome.Timeout, Reason: "no events from the guest for 5m0s", Watchdog: true, BlameSuite: "s", BlameTest: "a"},
			outcome.Timeout, outcome.Mismatch, "no events"},
		{"guest powers off before done", []string{"s"}, []event.Event{suiteStart("s", "a", "b"), testEnd("s", "a", event.Pass, "")},
			Boot{Outcome: outcome.KernelCrash, Reason: "the guest rebooted or powered off before the done sentinel"},
			outcome.KernelCrash, outcome.Mismatch, "before the done sentinel"},
		{"suite dies between tests (segfault after 1 of 16)", []string{"cow"}, append([]event.Event{suiteStart("cow", names(16)...), testEnd("cow", "t0", event.Pass, "")}, suiteEnd("cow", event.Fail, "suite exited: signal: segmentation fault")),
			booted, outcome.TestFail, outcome.Mismatch, "15 of 16 declared tests never reported (suite exited: signal: segmentation fault)"},
		{"suite never starts (no binary)", []string{"cow"}, []event.Event{{Type: event.SuiteStart, Suite: "cow"}, suiteEnd("cow", event.Fail, "start /bin/cow: fork/exec /bin/cow: no such file or directory")},
			booted, outcome.TestFail, outcome.Mismatch, "suite cow declared no tests: start /bin/cow: fork/exec /bin/cow: no such file"},
		{"suite absent from the stream", []string{"cow", "s"}, []event.Event{suiteStart("s", "a"), testEnd("s", "a", event.Pass, ""), suiteEnd("s", event.Pass, "")},
			booted, outcome.TestFail, outcome.Mismatch, "suite cow never started"},
		{"suite times out with no test running", []string{"s"}, []event.Event{suiteStart("s", "a"), testEnd("s", "a", event.Pass, ""), suiteEnd("s", event.Timeout, "suite s killed after its 5m0s deadline")},
			booted, outcome.Timeout, outcome.Mismatch, "outran its deadline with no test running"},
		{"suite times out in a test", []string{"s"}, []event.Event{suiteStart("s", "a"), testEnd("s", "a", event.Timeout, "suite s killed after its 5m0s deadline"), suiteEnd("s", event.Timeout, "suite s killed after its 5m0s deadline")},
			booted, outcome.Timeout, outcome.ExpectedFail, "s/a (guest-timeout)"},
		{"every test skipped", []string{"s"}, []event.Event{suiteStart("s", "a", "b"), testEnd("s", "a", event.Skip, "no umcg"), testEnd("s", "b", event.Skip, "no umcg"), suiteEnd("s", event.Pass, "")},
			booted, outcome.AllSkipped, outcome.AllSkipped, "no test passed: s/a (skip: no umcg)"},
		{"splat in a test's kmsg", []string{"s"}, []event.Event{suiteStart("s", "a"), testEnd("s", "a", event.Pass, "", "WARNING: CPU: 0 PID: 1 at mm/highmem.c:623 kunmap_local_indexed+0x5/0x10"), suiteEnd("s", event.Pass, "")},
			booted, outcome.KernelCrash, outcome.ExpectedFail, "s/a (kernel-crash)"},
		{"splat outside any test", []string{"s"}, []event.Event{suiteStart("s", "a"), testEnd("s", "a", event.Pass, ""), suiteEnd("s", event.Pass, "")},
			Boot{Outcome: outcome.Pass, Crashes: []splat.Report{{Kind: splat.Warning, Title: "WARNING in foo"}}},
			outcome.KernelCrash, outcome.Mismatch, "kernel splat outside any test"},
		{"panic in a test", []string{"s"}, []event.Event{suiteStart("s", "a", "b")},
			Boot{Outcome: outcome.KernelCrash, Reason: "Kernel panic - not syncing: sysrq triggered crash", BlameSuite: "s", BlameTest: "a",
				Crash: &splat.Report{Kind: splat.Panic, Title: "Kernel panic - not syncing: sysrq triggered crash", Fatal: true}},
			outcome.KernelCrash, outcome.ExpectedFail, "sysrq triggered crash"},
		{"QEMU killed from outside", []string{"s"}, []event.Event{suiteStart("s", "a")},
			Boot{Outcome: outcome.Infra, Reason: "QEMU was stopped from outside the run", BlameSuite: "s", BlameTest: "a"},
			outcome.Infra, outcome.Infra, "stopped from outside"},
		{"no test at all", nil, nil, booted, outcome.AllSkipped, outcome.AllSkipped, "no test ran"},
	}
	for _, tc := range tests {
		for _, expect := range []bool{false, true} {
			name := tc.name
			if expect {
				name += "/expect fail"
			}
			t.Run(name, func(t *testing.T) {
				c := &Cell{Suites: tc.suites}
				want := tc.want
				if expect {
					c.Expect = &outcome.Expectation{}
					want = tc.wantExpect
				}
				for _, e := range tc.events {
					c.Apply(e)
				}
				c.Finish(tc.boot)
				if c.Outcome != want {
					t.Errorf("outcome %s (raw %s: %q), want %s", c.Outcome, c.Raw, c.Reason, want)
				}
				if !expect && !strings.Contains(c.Reason, tc.reason) {
					t.Errorf("reason %q lacks %q", c.Reason, tc.reason)
				}
			})
		}
	}
}

func names(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("t%d", i))
	}
	return out
}

func TestStoreStreamsAndReports(t *testing.T) {
	root := t.TempDir()
	run := &Run{ID: NewID(time.Unix(0, 0)), Started: time.Now()}
	cell := &Cell{ID: "default.x86_64", Target: "x86_64", Suites: []string{"smoke"}, Dir: "cells/default.x86_64"}
	run.Cells = []*Cell{cell}
	s, err := Create(root, run)
	if err != nil {
		t.Fatal(err)
	}
	s.Append(Record{Cell: cell.ID, Kind: "guest", Event: &event.Event{Type: event.TestStart, Suite: "smoke", Test: "cpus"}})
	// The record must be on disk before Close: a crash must not lose it.
	b, err := os.ReadFile(filepath.Join(s.Dir, "events.jsonl"))
	if err != nil || !bytes.Contains(b, []byte(`"test":"cpus"`)) {
		t.Fatalf("event not streamed to disk: %q %v", b, err)
	}
	s.Update(func(*Run) {
		cell.Tests = append(cell.Tests,
			&Test{Suite: "smoke", Name: "cpus", Outcome: outcome.Pass},
			&Test{Suite: "smoke", Name: "highmem", Outcome: outcome.TestFail, Message: "no highmem\nmore", Kmsg: []string{"k"}},
			&Test{Suite: "smoke", Name: "x", Outcome: outcome.Skip, Message: "only on 386"})
		cell.Finish(Boot{Outcome: outcome.Pass})
		cell.Reproducer = "qemu-system-x86_64 -kernel k"
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := Load(filepath.Join(s.Dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != outcome.TestFail || got.ExitCode != 1 {
		t.Errorf("run outcome %s exit %d", got.Outcome, got.ExitCode)
	}
	var ju junitSuites
	jb, _ := os.ReadFile(filepath.Join(s.Dir, "junit.xml"))
	if err := xml.Unmarshal(jb, &ju); err != nil {
		t.Fatalf("junit: %v", err)
	}
	if ju.Tests != 3 || ju.Failures != 1 || ju.Skipped != 1 {
		t.Errorf("junit counts tests=%d failures=%d skipped=%d", ju.Tests, ju.Failures, ju.Skipped)
	}
	var out bytes.Buffer
	Summary(&out, got)
	for _, w := range []string{"default.x86_64", "TEST-FAILURE 1/3", "smoke/highmem: test-failure: no highmem", "reproduce the boot:", "(exit 1)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("summary lacks %q:\n%s", w, out.String())
		}
	}
	if l, err := os.Readlink(filepath.Join(root, "latest")); err != nil || l != run.ID {
		t.Errorf("latest link %q %v", l, err)
	}
}
