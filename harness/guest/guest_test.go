package guest

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	tests := []BootArgs{
		{Mode: ModeRun, Duration: 10 * time.Second, Intensity: 1, EventPort: "ttyS1", Heartbeat: 2 * time.Second, Scale: 1,
			Suites: []Suite{{Name: "smoke", Deadline: 10 * time.Minute}}},
		{Mode: ModeRun, Duration: 5 * time.Minute, Intensity: 3, CPUs: 2, Preempt: "full", ConfigSHA: "0123abcd",
			EventPort: "ttyS1", Heartbeat: time.Second, TestDeadline: 12 * time.Minute, Scale: 5,
			PatchSets: []string{"cow", "mutants/uffd-wake-range-off-by-one"},
			Suites: []Suite{
				{Name: "kmaplocal", Tests: "^driver-(nest|sleep-preempt|uffd-fault)$", Deadline: time.Hour},
				{Name: "x", Tests: "a{1,2} b@c:d", Deadline: time.Second},
			}},
	}
	for _, want := range tests {
		words := want.Encode()
		for _, w := range words {
			if strings.ContainsAny(w, " \t\"'") {
				t.Errorf("word %q would split the kernel command line", w)
			}
		}
		got, err := Parse("console=ttyS0 " + strings.Join(words, " ") + " panic=-1")
		if err != nil {
			t.Fatalf("Parse(%q): %v", words, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v\nwords %q", got, want, words)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ cmdline, want string }{
		{"kharness.duration=soon", "kharness.duration=soon: not a positive duration"},
		{"kharness.cpus=0", "kharness.cpus=0: not a positive integer"},
		{"kharness.mode=debug", "kharness.mode=debug: want run or shell"},
		{"kharness.suites=smoke@later", `bad deadline "later"`},
		{"kharness.suite_timeout=5m", "unknown parameter kharness.suite_timeout"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.cmdline)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.cmdline, err, tc.want)
		}
	}
}

func TestDefaultsAndApplied(t *testing.T) {
	b, err := Parse("root=/dev/sda kharness.patchsets=cow,kmap-local")
	if err != nil {
		t.Fatal(err)
	}
	if b.Mode != ModeRun || b.Duration != DefaultDuration || b.EventPort != DefaultEventPort || b.Intensity != 1 {
		t.Errorf("defaults: %+v", b)
	}
	if !b.Applied("cow") || !b.Applied("kmap-local") || b.Applied("umcg") {
		t.Errorf("Applied: %v", b.PatchSets)
	}
}
