package config

import (
	"reflect"

	"github.com/kharness/kharness/harness/outcome"
	"strings"
	"testing"
	"time"
)

var cat = Catalog{
	PatchSets:        []string{"cow", "kmap-local", "mutants/kmap-bad"},
	DefaultPatchSets: []string{"cow", "kmap-local"},
	Suites:           []string{"selftest", "smoke"},
	DefaultSuites:    []string{"smoke"},
	Tests: map[string][]string{
		"smoke":    {"arch", "cpus", "highmem"},
		"selftest": {"pass", "fail", "panic", "warn"},
	},
}

var shorthand = &outcome.Expectation{}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings that must all appear
	}{
		{"unknown key", "source: x\ntargts: [x86_64]\n", []string{"kharness.yaml:2:1: unknown key \"targts\""}},
		{"unknown nested key", "timeouts:\n  bot: 1s\n", []string{"kharness.yaml:2:3: unknown key \"bot\" in timeouts"}},
		{"wrong type", "targets: 5\n", []string{"kharness.yaml:1:10: targets:"}},
		{"bad duration", "duration: soon\n", []string{"kharness.yaml:1:11: duration:"}},
		{"two errors at once", "foo: 1\nbar: 2\n", []string{":1:1: unknown key \"foo\"", ":2:1: unknown key \"bar\""}},
		{"cell unknown key", "cells:\n  - name: a\n    patchset: [cow]\n", []string{"kharness.yaml:3:5: unknown key \"patchset\" in cells[0]"}},
		{"duplicate key", "source: a\nsource: b\n", []string{"kharness.yaml:2:1:"}},
		{"syntax", "targets: [x86_64\n", []string{"kharness.yaml: line"}},
		{"bad expect word", "cells:\n  - name: a\n    expect: maybe\n", []string{`kharness.yaml:3:13: cells[0].expect: expect must be pass, fail or a mapping`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/p/kharness.yaml", []byte(tc.yaml), Overrides{})
			if err == nil {
				t.Fatalf("no error for %q", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateCollectsAll(t *testing.T) {
	y := "targets: [x86_64, sparc]\npatchsets: [cow, nope]\nsuites: [smoke, selftest:panic, ghost]\naccel: fast\ncells:\n  - name: a\n  - name: a\n"
	c, err := Parse("/p/k.yaml", []byte(y), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(cat)
	if err == nil {
		t.Fatal("no validation error")
	}
	for _, w := range []string{
		`/p/k.yaml:1:19: unknown target "sparc"`,
		`/p/k.yaml:2:18: unknown patch set "nope"`,
		`/p/k.yaml:3:33: unknown suite "ghost"`,
		`/p/k.yaml:4:8: accel must be`,
		`cell name "a" already used by cells[0]`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), `unknown suite "selftest`) {
		t.Errorf("suite:test form wrongly rejected: %v", err)
	}
}

// TestTestRegexps: a test regexp is checked when the config is read, and
// an error about one given on the command line names the flag.
func TestTestRegexps(t *testing.T) {
	tests := []struct {
		name, yaml string
		o          Overrides
		want       []string
	}{
		{"bad syntax in the file", "suites: [\"smoke:(arch\"]\n", Overrides{}, []string{"/p/k.yaml:1:10:", `test regexp "(arch"`, "missing closing )"}},
		{"selects nothing", "suites: [smoke:archh]\n", Overrides{}, []string{"/p/k.yaml:1:10:", `"archh" selects none of suite smoke's tests (arch, cpus, highmem)`}},
		{"anchored like the guest", "suites: [smoke:cpu]\n", Overrides{}, []string{`"cpu" selects none`}},
		{"from a flag", "suites: [smoke]\n", Overrides{Suites: []string{"selftest:nope"}}, []string{`--suite: test regexp "nope" selects none of suite selftest's tests`}},
		{"expect names a suite the cell does not run", "cells:\n  - name: m\n    suites: [smoke]\n    expect: {fail: [\"selftest:fail\"]}\n", Overrides{},
			[]string{"/p/k.yaml:4:21: expects suite selftest to fail, but the cell does not run it (it runs smoke)"}},
		{"expect names a test that does not exist", "cells:\n  - name: m\n    suites: [selftest]\n    expect:\n      fail: [\"selftest:^failz$\"]\n", Overrides{},
			[]string{"/p/k.yaml:5:14:", `"^failz$" selects none of suite selftest's tests`}},
		{"expect with a bad outcome", "cells:\n  - name: m\n    suites: [selftest]\n    expect: {outcome: [boot-failed]}\n", Overrides{},
			[]string{"/p/k.yaml:4:13:", `outcome "boot-failed" cannot be expected`}},
		{"expect with an unknown key", "cells:\n  - name: m\n    expect: {fails: [x]}\n", Overrides{}, []string{`/p/k.yaml:3:14: unknown key "fails" in cells[0].expect (allowed: crash, fail, outcome, reason)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/p/k.yaml", []byte(tc.yaml), tc.o)
			if err == nil {
				err = c.Validate(cat)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	c, err := Parse("/p/k.yaml", []byte("cells:\n  - name: m\n    suites: [\"selftest:fail|warn\"]\n    expect: {fail: [\"selftest:^fail$\"], outcome: [test-failure], reason: deliberate}\n"), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(cat); err != nil {
		t.Fatal(err)
	}
	want := &outcome.Expectation{Fail: []string{"selftest:^fail$"}, Outcome: []outcome.Outcome{outcome.TestFail}, Reason: "deliberate"}
	if got := c.Matrix(cat)[0].Expect; !reflect.DeepEqual(got, want) {
		t.Errorf("expectation %+v, want %+v", got, want)
	}
}

func TestMatrix(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		o    Overrides
		want []MatrixCell
	}{
		{"default stacks every set per target", "", Overrides{}, []MatrixCell{
			{ID: "default.i386-highmem", Name: "default", Target: "i386-highmem", PatchSets: cat.DefaultPatchSets, Suites: []string{"smoke"}},
			{ID: "default.x86_64", Name: "default", Target: "x86_64", PatchSets: cat.DefaultPatchSets, Suites: []string{"smoke"}},
		}},
		{"explicit cells", "targets: [x86_64]\ncells:\n  - name: base\n    patchsets: []\n  - name: mut\n    patchsets: [mutants/kmap-bad]\n    targets: [i386-highmem]\n    expect: fail\n", Overrides{}, []MatrixCell{
			{ID: "base.x86_64", Name: "base", Target: "x86_64", PatchSets: []string{}, Suites: []string{"smoke"}},
			{ID: "mut.i386-highmem", Name: "mut", Target: "i386-highmem", PatchSets: []string{"mutants/kmap-bad"}, Suites: []string{"smoke"}, Expect: shorthand},
		}},
		{"flags override", "", Overrides{Targets: []string{"x86_64"}, PatchSets: []string{"cow"}, Suites: []string{"selftest:panic"}}, []MatrixCell{
			{ID: "default.x86_64", Name: "default", Target: "x86_64", PatchSets: []string{"cow"}, Suites: []string{"selftest:panic"}},
		}},
		{"cell filter keeps matching cells", "targets: [x86_64]\ncells:\n  - name: base\n  - name: kmap-a\n  - name: kmap-b\n  - name: cow-a\n", Overrides{Cells: []string{"kmap-*", "base"}}, []MatrixCell{
			{ID: "base.x86_64", Name: "base", Target: "x86_64", PatchSets: cat.DefaultPatchSets, Suites: []string{"smoke"}},
			{ID: "kmap-a.x86_64", Name: "kmap-a", Target: "x86_64", PatchSets: cat.DefaultPatchSets, Suites: []string{"smoke"}},
			{ID: "kmap-b.x86_64", Name: "kmap-b", Target: "x86_64", PatchSets: cat.DefaultPatchSets, Suites: []string{"smoke"}},
		}},
		{"cell filter names the implicit cell default", "targets: [x86_64]\n", Overrides{Cells: []string{"default"}}, []MatrixCell{
			{ID: "default.x86_64", Name: "default", Target: "x86_64", PatchSets: cat.DefaultPatchSets, Suites: []string{"smoke"}},
		}},
		{"all inside a list expands to the default stack", "targets: [x86_64]\ncells:\n  - name: mut\n    patchsets: [all, mutants/kmap-bad]\n    expect: fail\n", Overrides{}, []MatrixCell{
			{ID: "mut.x86_64", Name: "mut", Target: "x86_64", PatchSets: append(append([]string{}, cat.DefaultPatchSets...), "mutants/kmap-bad"), Suites: []string{"smoke"}, Expect: shorthand},
		}},
		{"empty patchset flag means none", "", Overrides{Targets: []string{"x86_64"}, PatchSets: []string{}}, []MatrixCell{
			{ID: "default.x86_64", Name: "default", Target: "x86_64", PatchSets: []string{}, Suites: []string{"smoke"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/p/k.yaml", []byte(tc.yaml), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(cat); err != nil {
				t.Fatal(err)
			}
			got := c.Matrix(cat)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("matrix:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("/p/k.yaml", nil, Overrides{Duration: time.Minute, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != DefaultSource || c.Duration != time.Minute || c.Accel != "tcg" || c.Timeouts.TCGScale != 5 {
		t.Errorf("defaults/overrides not applied: %+v", c.File)
	}
	if c.Abs("patches") != "/p/patches" {
		t.Errorf("Abs = %s", c.Abs("patches"))
	}
}

func TestCellFilterMatchingNothing(t *testing.T) {
	cat := Catalog{Suites: []string{"smoke"}, DefaultSuites: []string{"smoke"}}
	c, err := Parse("/p/k.yaml", []byte("cells:\n  - name: base\n  - name: kmap-a\n"), Overrides{Cells: []string{"kmap-*", "cow-*"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(cat)
	if err == nil {
		t.Fatal("a --cell pattern that matches nothing was accepted")
	}
	for _, want := range []string{"--cell cow-*", "/p/k.yaml", "base, kmap-a"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestPlanDeadlines: deadlines scale with the accelerator and the
// duration, but a nightly under TCG no longer gives a suite 12.5 h and the
// boot 55 h.
func TestPlanDeadlines(t *testing.T) {
	c, err := Parse("/p/k.yaml", nil, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	ci := c.Timeouts.Plan(true, 10*time.Second, []SuitePlan{{Setup: 5 * time.Minute, Tests: 61}, {Setup: 2 * time.Minute, Tests: 7}})
	if ci.Boot != 150*time.Second || ci.NoOutput != 5*time.Minute || ci.Test != 20*time.Second+10*time.Minute {
		t.Errorf("CI under TCG: %+v", ci)
	}
	// cow: 25 min set-up + 61 × (10 s + 2.5 min).
	if want := 25*time.Minute + 61*(10*time.Second+150*time.Second); ci.Suites[0] != want {
		t.Errorf("cow suite deadline %s, want %s", ci.Suites[0], want)
	}
	nightly := c.Timeouts.Plan(true, 5*time.Minute, []SuitePlan{{Setup: 5 * time.Minute, Tests: 61}, {Setup: 5 * time.Minute, Tests: 16}})
	if nightly.Suites[0] != 4*time.Hour || nightly.Overall != 150*time.Second+4*time.Hour+nightly.Suites[1]+time.Minute {
		t.Errorf("nightly caps not applied: %+v", nightly)
	}
	if nightly.Test != 10*time.Minute+10*time.Minute {
		t.Errorf("nightly test deadline %s", nightly.Test)
	}
	many := c.Timeouts.Plan(true, 5*time.Minute, []SuitePlan{{Tests: 61}, {Tests: 61}, {Tests: 61}})
	if many.Overall != 8*time.Hour {
		t.Errorf("overall cap not applied: %s", many.Overall)
	}
	kvm := c.Timeouts.Plan(false, 10*time.Second, []SuitePlan{{Tests: 2}})
	if kvm.Boot != 30*time.Second || kvm.Suites[0] != 5*time.Minute+2*(10*time.Second+30*time.Second) {
		t.Errorf("KVM: %+v", kvm)
	}
}
