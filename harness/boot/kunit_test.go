package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/outcome"
)

// consoleScript turns a captured console log into stand-in QEMU lines.
func consoleScript(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "kunit", name))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		sb.WriteString("console " + l + "\n")
	}
	return sb.String()
}

// TestKUnit boots consoles holding KUnit's KTAP: every KUnit suite is a
// test of the kharness suite, a failed case is named in its message, a
// declared suite that never printed is never reported (the cell's verdict
// finds it), and a kernel that dies in a suite blames that suite.
func TestKUnit(t *testing.T) {
	after := hello + "\n" + done + "\nexit 0\n"
	tests := []struct {
		name    string
		script  string
		want    outcome.Outcome
		results map[string]event.Result
		message map[string]string // substrings of a test's message
		blame   string
		cases   int // reported in all, when not every one is listed
	}{
		{name: "real x86_64 console: all pass", script: consoleScript(t, "real-x86_64.log") + after, want: outcome.Pass,
			results: map[string]event.Result{"usercopy": event.Pass, "iov_iter": event.Pass, "list-kunit-test": event.Pass,
				"hlist": event.Pass, "klist": event.Pass, "iov_iter/iov_kunit_copy_to_folioq": event.Pass,
				"usercopy/usercopy_test_valid": event.Pass},
			cases: 86},
		{name: "a failed case fails its suite", script: consoleScript(t, "fail-case.log") + after, want: outcome.Pass,
			results: map[string]event.Result{"usercopy": event.Fail, "list-kunit-test": event.Pass,
				"usercopy/usercopy_test_valid": event.Pass, "usercopy/usercopy_test_invalid": event.Fail,
				"list-kunit-test/list_test_list_init": event.Pass},
			message: map[string]string{"usercopy": "usercopy_test_invalid: fail\n    # usercopy_test_invalid: EXPECTATION FAILED at lib/usercopy_kunit.c:292"}},
		{name: "the kernel dies in a suite", script: consoleScript(t, "panic.log") + "exit 0\n", want: outcome.KernelCrash,
			results: map[string]event.Result{"iov_iter": event.Fail, "iov_iter/iov_kunit_copy_to_kvec": event.Pass,
				"iov_iter/iov_kunit_copy_from_kvec": event.Fail},
			message: map[string]string{"iov_iter": "no result line: the kernel died in it",
				"iov_iter/iov_kunit_copy_from_kvec": "no result line: the kernel died in it"},
			blame: "iov_iter/iov_kunit_copy_from_kvec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, evs, _ := scripted(t, tc.script, func(s *Spec) {
				s.KUnit = &KUnit{Suite: "kunit", Declared: []string{"usercopy", "iov_iter", "list-kunit-test"}}
			})
			if r.Outcome != tc.want {
				t.Errorf("outcome %s (%s), want %s", r.Outcome, r.Reason, tc.want)
			}
			if r.BlameTest != tc.blame {
				t.Errorf("blamed %s/%s, want %q", r.BlameSuite, r.BlameTest, tc.blame)
			}
			got := map[string]event.Event{}
			var start, end int
			for _, e := range evs {
				if e.Suite != "kunit" {
					continue
				}
				switch e.Type {
				case event.SuiteStart:
					start++
					if strings.Join(e.Tests, ",") != "usercopy,iov_iter,list-kunit-test" {
						t.Errorf("declared %v", e.Tests)
					}
				case event.SuiteEnd:
					end++
				case event.TestEnd:
					got[e.Test] = e
				}
			}
			if start != 1 || end != 1 {
				t.Errorf("%d suite-start, %d suite-end events, want 1 and 1", start, end)
			}
			for name, res := range tc.results {
				if got[name].Result != res {
					t.Errorf("%s: %q, want %s", name, got[name].Result, res)
				}
			}
			if tc.cases > 0 {
				if len(got) != tc.cases {
					t.Errorf("reported %d tests, want %d", len(got), tc.cases)
				}
			} else if len(got) != len(tc.results) {
				t.Errorf("reported %d tests, want %d: %v", len(got), len(tc.results), got)
			}
			for name, sub := range tc.message {
				if !strings.Contains(got[name].Message, sub) {
					t.Errorf("%s: message %q lacks %q", name, got[name].Message, sub)
				}
			}
		})
	}
}
