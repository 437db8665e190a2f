package kconfig

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/outcome"
)

func TestParseFragmentErrors(t *testing.T) {
	_, err := ParseFragment("testdata/bad.config")
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		`testdata/bad.config:3: CONFIG_BAD: bad value "maybe"`,
		`testdata/bad.config:4: not a kconfig line`,
		`testdata/bad.config:5: CONFIG_OK already set at line 2`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}

func TestParseFragmentValues(t *testing.T) {
	f, err := ParseFragmentData("f", []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Option{{"CONFIG_A", "y", "f", 1}, {"CONFIG_B", "n", "f", 2}, {"CONFIG_C", `"x y"`, "f", 3}, {"CONFIG_D", "-1", "f", 4}}
	if len(f.Options) != len(want) {
		t.Fatalf("got %v", f.Options)
	}
	for i := range want {
		if f.Options[i] != want[i] {
			t.Errorf("option %d = %v, want %v", i, f.Options[i], want[i])
		}
	}
}

func TestMergeReportsOverrides(t *testing.T) {
	a, _ := ParseFragmentData("common", []byte("CONFIG_A=y\nCONFIG_B=y\n"))
	b, _ := ParseFragmentData("target", []byte("CONFIG_A=n\nCONFIG_B=y\n"))
	a.Level, b.Level = "common", "target"
	opts, over, err := Merge([]Fragment{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 2 || opts[0].Value != "n" || opts[0].File != "target" {
		t.Errorf("merge = %v", opts)
	}
	if len(over) != 1 || !strings.Contains(over[0], "CONFIG_A=n (target:1) overrides CONFIG_A=y (common:1)") {
		t.Errorf("overrides = %v", over)
	}
}

// TestMergeSameLevelConflict: two suites' fragments that disagree are an
// error naming both places, not settled by alphabetical order.
func TestMergeSameLevelConflict(t *testing.T) {
	a, _ := ParseFragmentData("kconfigs/suite/cow.config", []byte("CONFIG_X=y\nCONFIG_TRANSPARENT_HUGEPAGE=y\n"))
	b, _ := ParseFragmentData("kconfigs/suite/uffd.config", []byte("CONFIG_X=y\n# CONFIG_TRANSPARENT_HUGEPAGE is not set\n"))
	a.Level, b.Level = "suite", "suite"
	_, _, err := Merge([]Fragment{a, b})
	want := "kconfigs/suite/uffd.config:2: CONFIG_TRANSPARENT_HUGEPAGE=n disagrees with kconfigs/suite/cow.config:2: CONFIG_TRANSPARENT_HUGEPAGE=y (both suite fragments"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Merge error %v, want %q", err, want)
	}
}

// TestVerifyRealConfig checks requests against a .config that a real
// tinyconfig+fragments+olddefconfig run produced for i386-highmem.
func TestVerifyRealConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/i386-highmem.config")
	if err != nil {
		t.Fatal(err)
	}
	final := Parse(data)
	tests := []struct {
		name    string
		frag    string
		dropped map[string]string // option → value it got
	}{
		{"all survived", "CONFIG_HIGHMEM4G=y\nCONFIG_PREEMPT=y\nCONFIG_LKDTM=y\n# CONFIG_64BIT is not set\n", nil},
		{"unmet dependencies", "CONFIG_HIGHMEM4G=y\nCONFIG_KASAN=y\nCONFIG_HIGHPTE=y\n", map[string]string{"CONFIG_KASAN": "n", "CONFIG_HIGHPTE": "n"}},
		{"wrong value", "CONFIG_64BIT=y\n# CONFIG_PREEMPT is not set\n", map[string]string{"CONFIG_64BIT": "n", "CONFIG_PREEMPT": "y"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFragmentData("kconfigs/x.config", []byte(tc.frag))
			if err != nil {
				t.Fatal(err)
			}
			d := Verify(final, f.Options)
			got := map[string]string{}
			for _, x := range d {
				got[x.Name] = x.Got
			}
			if len(got) != len(tc.dropped) {
				t.Fatalf("dropped = %v, want %v", got, tc.dropped)
			}
			for k, v := range tc.dropped {
				if got[k] != v {
					t.Errorf("%s got %q, want %q", k, got[k], v)
				}
			}
			if len(d) > 0 {
				err := error(&outcome.Error{Outcome: outcome.KconfigDrop, Err: &DroppedError{Dropped: d}})
				if outcome.Of(err) != outcome.KconfigDrop {
					t.Errorf("outcome = %v", outcome.Of(err))
				}
				var de *DroppedError
				if !errors.As(err, &de) || !strings.Contains(err.Error(), "kconfigs/x.config:") {
					t.Errorf("message lacks file:line: %v", err)
				}
			}
		})
	}
}
