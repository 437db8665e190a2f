package outcome

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	wake := Failure{Suite: "uffd", Test: "wake-ranges", Outcome: TestFail, Message: "waiter on page 1 woke early"}
	other := Failure{Suite: "uffd", Test: "events", Outcome: TestFail, Message: "fork event missing"}
	watchdog := Failure{Suite: "uffd", Test: "wake-ranges", Outcome: Timeout, Message: "no output for 5m", Watchdog: true}
	crash := Failure{Suite: "cow", Test: "fork", Outcome: KernelCrash, Crash: "BUG: Bad page state in process", Message: "kernel splat"}
	tests := []struct {
		name     string
		e        Expectation
		raw      Outcome
		failures []Failure
		passed   []string
		want     Outcome
		why      []string
	}{
		{"shorthand caught by a test", Expectation{}, TestFail, []Failure{other}, nil, ExpectedFail, []string{"caught by uffd/events"}},
		{"shorthand: all passed", Expectation{}, Pass, nil, []string{"uffd/events"}, UnexpectedOK, []string{"every test passed"}},
		{"shorthand: watchdog only", Expectation{}, Timeout, []Failure{watchdog}, nil, Mismatch, []string{"expected to fail: a test", "host watchdog"}},
		{"shorthand: crash outside a test", Expectation{}, KernelCrash, nil, nil, Mismatch, []string{"no test failed"}},
		{"named test failed", Expectation{Fail: []string{"uffd:^wake-ranges$"}}, TestFail, []Failure{other, wake}, nil, ExpectedFail, []string{"caught by uffd/wake-ranges"}},
		{"named test passed, another failed", Expectation{Fail: []string{"uffd:wake-ranges"}}, TestFail, []Failure{other}, []string{"uffd/wake-ranges"}, Mismatch,
			[]string{"expected to fail: uffd:wake-ranges (passed: uffd/wake-ranges)", "failed instead: uffd/events (test-failure: fork event missing)"}},
		{"anchored like -run", Expectation{Fail: []string{"uffd:wake"}}, TestFail, []Failure{wake}, nil, Mismatch, []string{"expected to fail: uffd:wake"}},
		{"every pattern must hit", Expectation{Fail: []string{"uffd:wake-ranges", "uffd:events", "uffd:move"}}, TestFail, []Failure{wake, other}, nil, Mismatch, []string{"expected to fail: uffd:move"}},
		{"suite-only pattern", Expectation{Fail: []string{"cow"}}, KernelCrash, []Failure{crash}, nil, ExpectedFail, []string{"caught by cow/fork (kernel-crash: BUG: Bad page state"}},
		{"crash title must match", Expectation{Fail: []string{"cow"}, Crash: "^WARNING"}, KernelCrash, []Failure{crash}, nil, Mismatch, []string{`with a crash matching "^WARNING"`}},
		{"reason must match", Expectation{Fail: []string{"uffd:wake-ranges"}, Reason: "woke early"}, TestFail, []Failure{wake}, nil, ExpectedFail, nil},
		{"reason mismatch", Expectation{Fail: []string{"uffd:wake-ranges"}, Reason: "EEXIST"}, TestFail, []Failure{wake}, nil, Mismatch, []string{`for a reason matching "EEXIST"`}},
		{"raw outcome not accepted", Expectation{Fail: []string{"uffd:wake-ranges"}, Outcome: []Outcome{KernelCrash}}, TestFail, []Failure{wake}, nil, Mismatch, []string{"cell outcome test-failure is not one of [kernel-crash]"}},
		{"build failure stays", Expectation{}, BuildFail, nil, nil, BuildFail, nil},
		{"infra stays", Expectation{}, Infra, []Failure{wake}, nil, Infra, nil},
		{"boot failure stays", Expectation{}, BootFail, nil, nil, BootFail, nil},
		{"all skipped stays", Expectation{}, AllSkipped, nil, nil, AllSkipped, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.e.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got, why := tc.e.Judge(tc.raw, tc.failures, tc.passed)
			if got != tc.want {
				t.Errorf("Judge = %s (%s), want %s", got, why, tc.want)
			}
			for _, w := range tc.why {
				if !strings.Contains(why, w) {
					t.Errorf("reason %q lacks %q", why, w)
				}
			}
		})
	}
}

func TestExpectationValidate(t *testing.T) {
	tests := []struct {
		e    Expectation
		want string
	}{
		{Expectation{Fail: []string{"uffd:(unclosed"}}, `pattern "uffd:(unclosed"`},
		{Expectation{Fail: []string{":x"}}, "names no suite"},
		{Expectation{Outcome: []Outcome{Infra}}, `outcome "infra-error" cannot be expected`},
		{Expectation{Crash: "["}, `regexp "["`},
	}
	for _, tc := range tests {
		if err := tc.e.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.e, err, tc.want)
		}
	}
}
