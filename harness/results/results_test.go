package results

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/report"
)

func TestCellOutcome(t *testing.T) {
	tests := []struct {
		name   string
		expect bool
		boot   outcome.Outcome
		tests  []outcome.Outcome
		splats int
		want   outcome.Outcome
	}{
		{"all pass", false, outcome.Pass, []outcome.Outcome{outcome.Pass, outcome.Skip}, 0, outcome.Pass},
		{"one fails", false, outcome.Pass, []outcome.Outcome{outcome.Pass, outcome.TestFail}, 0, outcome.TestFail},
		{"crash beats fail", false, outcome.Pass, []outcome.Outcome{outcome.KernelCrash, outcome.TestFail}, 0, outcome.KernelCrash},
		{"splat outside tests", false, outcome.Pass, []outcome.Outcome{outcome.Pass}, 1, outcome.KernelCrash},
		{"boot verdict wins", false, outcome.Timeout, []outcome.Outcome{outcome.Pass}, 0, outcome.Timeout},
		{"mutant caught", true, outcome.Pass, []outcome.Outcome{outcome.TestFail}, 0, outcome.ExpectedFail},
		{"mutant crash caught", true, outcome.KernelCrash, nil, 0, outcome.ExpectedFail},
		{"mutant missed", true, outcome.Pass, []outcome.Outcome{outcome.Pass}, 0, outcome.UnexpectedOK},
		{"mutant that does not boot is no catch", true, outcome.BootFail, nil, 0, outcome.BootFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cell{}
			if tc.expect {
				c.Expect = &outcome.Expectation{}
			}
			for i, o := range tc.tests {
				c.Tests = append(c.Tests, &Test{Suite: "s", Name: string(rune('a' + i)), Outcome: o})
			}
			for i := 0; i < tc.splats; i++ {
				c.Crashes = append(c.Crashes, report.Report{Kind: report.Warning, Title: "WARNING in foo"})
			}
			c.Finish(tc.boot, "boot said so")
			if c.Outcome != tc.want {
				t.Errorf("outcome %s (raw %s, %q), want %s", c.Outcome, c.Raw, c.Reason, tc.want)
			}
		})
	}
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
		cell.Finish(outcome.Pass, "")
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
