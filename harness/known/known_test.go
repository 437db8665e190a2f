package known

import (
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(DateLayout, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestLoadGood(t *testing.T) {
	s, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Issues) != 2 || s.Issues[0].Line != 3 || !s.Issues[0].Intermittent || s.Issues[1].Tests[0] != "umcg" {
		t.Fatalf("parsed %+v", s.Issues)
	}
	now := day("2026-12-03")
	for _, tc := range []struct {
		sub  Subject
		want string
	}{
		{Subject{Suite: "uffd", Test: "move", Target: "i386-highmem", Cell: "uffd-move-keep-src", Crash: "BUG: Bad page state"}, "uffd-move-oops"},
		{Subject{Suite: "uffd", Test: "copy-source", Target: "i386-highmem", Cell: "uffd-x", Crash: "BUG: Bad page map"}, "uffd-move-oops"},
		{Subject{Suite: "uffd", Test: "move", Target: "x86_64", Cell: "uffd-x", Crash: "BUG: Bad page"}, ""},        // target
		{Subject{Suite: "uffd", Test: "move", Target: "i386-highmem", Cell: "patched", Crash: "BUG: Bad page"}, ""}, // cell
		{Subject{Suite: "uffd", Test: "moves", Target: "i386-highmem", Cell: "uffd-x", Crash: "BUG: Bad page"}, ""}, // anchored
		{Subject{Suite: "uffd", Test: "move", Target: "i386-highmem", Cell: "uffd-x", Crash: "WARNING: x"}, ""},     // crash
		{Subject{Suite: "umcg", Test: "preempt"}, ""}, // expired on 2026-12-01
	} {
		got := ""
		if is := s.Match(tc.sub, now); is != nil {
			got = is.ID
		}
		if got != tc.want {
			t.Errorf("Match(%+v) = %q, want %q", tc.sub, got, tc.want)
		}
	}
	if is := s.Match(Subject{Suite: "umcg", Test: "preempt"}, day("2026-11-30")); is == nil || is.ID != "umcg-any" {
		t.Errorf("umcg-any should apply the day before it expires, got %v", is)
	}
	if ex := s.Expired(now); len(ex) != 1 || ex[0].ID != "umcg-any" {
		t.Errorf("Expired = %v", ex)
	}
}

func TestLoadBad(t *testing.T) {
	_, err := Load("testdata/bad.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"testdata/bad.yaml:3:12: tests: test regexp \"(\"",
		"testdata/bad.yaml:5:14: expires: want a date YYYY-MM-DD, not \"2027-13-01\"",
		"testdata/bad.yaml:6:5: unknown key \"color\"",
		"testdata/bad.yaml:8:12: crash: error parsing regexp",
		"testdata/bad.yaml:9:19: intermittent: want true or false",
		"testdata/bad.yaml:7:5: issue \"a\" needs a reason",
		"testdata/bad.yaml:7:5: issue \"a\" needs an expiry date",
		"testdata/bad.yaml:10:5: an issue needs an id",
		"testdata/bad.yaml:10:12: tests: \":x\" names no suite",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestEmpty(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "issues: []\n"} {
		s, err := Parse("k.yaml", []byte(src))
		if err != nil || len(s.Issues) != 0 {
			t.Errorf("Parse(%q) = %v, %v", src, s, err)
		}
	}
	if _, err := Parse("k.yaml", []byte("- a\n")); err == nil || !strings.Contains(err.Error(), "k.yaml:1:1:") {
		t.Errorf("a list at the top: %v", err)
	}
	s, err := Load("testdata/missing.yaml")
	if err != nil || len(s.Issues) != 0 {
		t.Errorf("missing file: %v %v", s, err)
	}
}

// TestRepoFile: the repository's own known-issues.yaml loads.
func TestRepoFile(t *testing.T) {
	if _, err := Load("../../known-issues.yaml"); err != nil {
		t.Fatal(err)
	}
}
