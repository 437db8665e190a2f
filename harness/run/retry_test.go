package run

import (
	"reflect"
	"testing"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

func TestRetryPolicy(t *testing.T) {
	failed := &results.Cell{Outcome: outcome.TestFail}
	for _, tc := range []struct {
		cell *results.Cell
		test *results.Test
		want bool
	}{
		{failed, &results.Test{Outcome: outcome.TestFail}, true},
		{failed, &results.Test{Outcome: outcome.KernelCrash}, true},
		{failed, &results.Test{Outcome: outcome.Timeout}, true},
		{failed, &results.Test{Outcome: outcome.Pass}, false},
		{failed, &results.Test{Outcome: outcome.NotRun}, false},                                         // the crash before it is retried
		{failed, &results.Test{Outcome: outcome.TestFail, Retry: &results.Retry{}}, false},              // once
		{&results.Cell{Outcome: outcome.ExpectedFail}, &results.Test{Outcome: outcome.TestFail}, false}, // the mutant was caught
		{&results.Cell{Outcome: outcome.Infra}, &results.Test{Outcome: outcome.Timeout}, false},         // the host's fault
		{&results.Cell{Outcome: outcome.Interrupted}, &results.Test{Outcome: outcome.TestFail}, false},
	} {
		if got := RetryFailed(tc.cell, tc.test); got != tc.want {
			t.Errorf("RetryFailed(%s, %s retry %v) = %v", tc.cell.Outcome, tc.test.Outcome, tc.test.Retry != nil, got)
		}
	}
}

func TestRetrySuites(t *testing.T) {
	got := RetrySuites([]*results.Test{{Suite: "uffd", Name: "wake-ranges"}, {Suite: "cow", Name: "fork-tearing-pinned"}, {Suite: "uffd", Name: "fdinfo"}})
	want := []string{"uffd:^(fdinfo|wake-ranges)$", "cow:^(fork-tearing-pinned)$"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RetrySuites = %v, want %v", got, want)
	}
	// Each selects exactly its tests, as the guest anchors them.
	re, err := guest.CompileTests(guest.ParseSuiteSpec(got[0]).Tests)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"fdinfo": true, "wake-ranges": true, "wake-ranges-x": false, "handshake": false} {
		if re.MatchString(name) != want {
			t.Errorf("%s: match %v", name, !want)
		}
	}
}
