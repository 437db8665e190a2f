package outcome

import (
	"errors"
	"fmt"
	"testing"
)

func TestExitCodesDistinctPerFailureClass(t *testing.T) {
	seen := map[int]Outcome{}
	for _, o := range All() {
		if !o.Failed() {
			continue
		}
		if prev, dup := seen[o.ExitCode()]; dup {
			t.Errorf("%s and %s share exit code %d", o, prev, o.ExitCode())
		}
		seen[o.ExitCode()] = o
	}
}

func TestWorst(t *testing.T) {
	tests := []struct {
		in   []Outcome
		want Outcome
	}{
		{nil, Pass},
		{[]Outcome{Pass, Skip}, Skip},
		{[]Outcome{Pass, TestFail, ExpectedFail}, TestFail},
		{[]Outcome{TestFail, KernelCrash, Timeout}, KernelCrash},
		{[]Outcome{BuildFail, PatchFail}, BuildFail},
		{[]Outcome{KernelCrash, Infra}, Infra},
		{[]Outcome{Infra, Interrupted}, Interrupted},
	}
	for _, tc := range tests {
		if got := Worst(tc.in...); got != tc.want {
			t.Errorf("Worst(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestOf(t *testing.T) {
	base := Errorf(BuildFail, "make: %w", errors.New("boom"))
	wrapped := fmt.Errorf("cell x: %w", base)
	if Of(wrapped) != BuildFail {
		t.Errorf("Of(wrapped) = %s", Of(wrapped))
	}
	if Of(errors.New("plain")) != Infra {
		t.Errorf("a plain error should be infra")
	}
	if Of(nil) != Pass {
		t.Errorf("nil should pass")
	}
}
