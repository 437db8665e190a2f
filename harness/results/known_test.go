package results

import (
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/outcome"
)

const knownYAML = `issues:
  - id: ks-cow-ro-pin-i386
    tests: ["kselftest-mm:^cow/R/O-mapping a page registered as iouring fixed buffer.*"]
    targets: [i386-highmem]
    reason: no 32-bit liburing here
    expires: 2027-06-30
  - id: old-uffd
    tests: ["uffd:^move$"]
    reason: was broken
    expires: 2026-01-01
`

// TestKnownFailures: a failure a known issue describes is recorded with
// the id and does not fail the cell; a program whose every failed
// case is known is excused with them; an expired entry, another target,
// an unknown case or a test the expectation names still fail.
func TestKnownFailures(t *testing.T) {
	ks, err := known.Parse("known-issues.yaml", []byte(knownYAML))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	ro := "cow/R/O-mapping a page registered as iouring fixed buffer (4 kB)"
	ks1 := []event.Event{suiteStart("kselftest-mm", "cow"),
		testEnd("kselftest-mm", "cow/Basic COW", event.Pass, ""),
		testEnd("kselftest-mm", ro, event.Fail, ""),
		testEnd("kselftest-mm", "cow", event.Fail, "exit status 1"),
		suiteEnd("kselftest-mm", event.Pass, "")}
	tests := []struct {
		name   string
		target string
		expect *outcome.Expectation
		events []event.Event
		want   outcome.Outcome
		known  map[string]string // test -> issue id
	}{
		{"known case and its program", "i386-highmem", nil, ks1, outcome.Pass,
			map[string]string{"kselftest-mm/" + ro: "ks-cow-ro-pin-i386", "kselftest-mm/cow": "ks-cow-ro-pin-i386"}},
		{"the entry is for another target", "x86_64", nil, ks1, outcome.TestFail, nil},
		{"a case nobody knows beside it", "i386-highmem", nil,
			append(append([]event.Event{}, ks1[:3]...), testEnd("kselftest-mm", "cow/Basic COW after fork", event.Fail, ""), ks1[3], ks1[4]),
			outcome.TestFail, map[string]string{"kselftest-mm/" + ro: "ks-cow-ro-pin-i386"}},
		{"an expired entry excuses nothing", "x86_64", nil,
			[]event.Event{suiteStart("uffd", "move", "fdinfo"), testEnd("uffd", "move", event.Fail, "x"), testEnd("uffd", "fdinfo", event.Pass, ""), suiteEnd("uffd", event.Pass, "")},
			outcome.TestFail, nil},
		{"a test the expectation names is never excused", "i386-highmem",
			&outcome.Expectation{Fail: []string{"kselftest-mm:^cow/R/O.*"}}, ks1, outcome.ExpectedFail,
			nil},
		{"known failures and nothing passed", "i386-highmem", nil,
			[]event.Event{suiteStart("kselftest-mm", "cow"), testEnd("kselftest-mm", ro, event.Fail, ""),
				testEnd("kselftest-mm", "cow", event.Fail, "exit status 1"), suiteEnd("kselftest-mm", event.Pass, "")},
			outcome.AllSkipped, map[string]string{"kselftest-mm/" + ro: "ks-cow-ro-pin-i386", "kselftest-mm/cow": "ks-cow-ro-pin-i386"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cell{Name: "default", Target: tc.target, Suites: []string{tc.events[0].Suite}, Expect: tc.expect}
			for _, e := range tc.events {
				c.Apply(e)
			}
			c.Finish(Boot{Outcome: outcome.Pass, Known: func(tt *Test) string {
				if is := ks.Match(known.Subject{Suite: tt.Suite, Test: tt.Name, Target: c.Target, Cell: c.Name, Crash: tt.Crash}, now); is != nil {
					return is.ID
				}
				return ""
			}})
			if c.Outcome != tc.want {
				t.Errorf("outcome %s (%s), want %s", c.Outcome, c.Reason, tc.want)
			}
			for _, tt := range c.Tests {
				if want := tc.known[tt.Suite+"/"+tt.Name]; tt.Known != want {
					t.Errorf("%s/%s: known %q, want %q", tt.Suite, tt.Name, tt.Known, want)
				}
				if tt.Known != "" && tt.Outcome == outcome.Pass {
					t.Errorf("%s/%s: a pass marked known", tt.Suite, tt.Name)
				}
			}
			if tc.want == outcome.Pass && !strings.Contains(strings.Join(c.Notes, "\n"), "known failure") {
				t.Errorf("notes %q do not count the known failures", c.Notes)
			}
		})
	}
}
