package ktap

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseResultLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *result // nil: not a result line
	}{
		{"ok 1 name", &result{ok: true, number: 1, desc: "name"}},
		{"not ok 12 a b c", &result{number: 12, desc: "a b c"}},
		{"ok 3", &result{ok: true, number: 3}},
		{"ok 3 # SKIP no swap", &result{ok: true, number: 3, directive: "SKIP", reason: "no swap"}},
		{"ok 3# skip", &result{ok: true, number: 3, directive: "SKIP"}},
		{"ok 1 - dash # TODO later", &result{ok: true, number: 1, desc: "dash", directive: "TODO", reason: "later"}},
		{"ok 1 -dash", &result{ok: true, number: 1, desc: "-dash"}},
		{"not ok 2 x # error setup", &result{number: 2, desc: "x", directive: "ERROR", reason: "setup"}},
		{"not ok 2 x # Timeout 30 seconds", &result{number: 2, desc: "x", directive: "TIMEOUT", reason: "30 seconds"}},
		{"ok 2 x #XFAIL", &result{ok: true, number: 2, desc: "x", directive: "XFAIL"}},
		{"ok 2 x # XPASS why", &result{ok: true, number: 2, desc: "x", directive: "XPASS", reason: "why"}},
		{"ok 2 x # SKIPPED: no", &result{ok: true, number: 2, desc: "x", directive: "SKIP", reason: "no"}},
		{"ok 2 x # SKIPPY", &result{ok: true, number: 2, desc: "x", directive: "SKIP"}},
		{"ok 2 x # TODOS", &result{ok: true, number: 2, desc: "x", reason: "TODOS"}},
		{"ok 5 check # rcode=0", &result{ok: true, number: 5, desc: "check", reason: "rcode=0"}},
		{"ok 4 t #  msg", &result{ok: true, number: 4, desc: "t", reason: "msg"}},
		{`ok 1 a \# b \\ c # skip`, &result{ok: true, number: 1, desc: `a # b \ c`, directive: "SKIP"}},
		{"skip 2 name", &result{ok: true, skipWord: true, number: 2, desc: "name"}},
		{"ok", nil},
		{"ok x", nil},
		{"ok 1st", nil},
		{"okay 1", nil},
		{"not ok", nil},
		{"ok 99999999999999999999", nil},
	} {
		var r result
		ok := parseResult(tc.in, &r)
		if ok != (tc.want != nil) {
			t.Errorf("%q: result line = %v", tc.in, ok)
			continue
		}
		if ok && r != *tc.want {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.in, r, *tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in     string
		kind   kind
		indent int
	}{
		{"KTAP version 1", versionLine, 0},
		{"    KTAP version 2", versionLine, 4},
		{"TAP version 13", versionLine, 0},
		{"KTAP version 1 extra", unknownLine, 0},
		{"  1..3", planLine, 2},
		{"1..0 # SKIP why", planLine, 0},
		{"1..3 junk", unknownLine, 0},
		{"1..", unknownLine, 0},
		{"    # Subtest: suite", subtestLine, 4},
		{"# Subtest", subtestLine, 0},
		{"# Subtests are fun", diagLine, 0},
		{"#:ktap_speed: slow", metadataLine, 0},
		{"#: not metadata", unknownLine, 0},
		{"# diag", diagLine, 0},
		{"#", diagLine, 0},
		{"#PF: error_code(0x0000)", unknownLine, 0},
		{"Bail out! why", bailOutLine, 0},
		{"  ", blankLine, 2},
		{"\tok 1 tab", resultLine, 1},
		{"random: crng init done", unknownLine, 0},
	} {
		l := classify(tc.in)
		if l.kind != tc.kind || l.indent != tc.indent {
			t.Errorf("%q: kind %d indent %d, want %d %d", tc.in, l.kind, l.indent, tc.kind, tc.indent)
		}
	}
}

func TestCleanAndStrip(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[    1.234567] ok 1 x", "ok 1 x"},
		{"[    1.234567]     KTAP version 1", "    KTAP version 1"},
		{"[    1.234567][    T1]     ok 1 x", "    ok 1 x"},
		{"[   12.000001][  C0] x", "x"},
		{"[    T42] x", "x"},
		{"<6>[    1.000000] x", "x"},
		{"<4>x", "x"},
		{"6,123,456789,-;    ok 1 x", "    ok 1 x"},
		{"4,7,8,c,caller=T1;x", "x"},
		{"ok 1 x\r", "ok 1 x"},
		{"\x00\x00ok 1 x\r\x00", "ok 1 x"},
		{"10%\r100%", "100%"},
		{"\x1b[1;31mnot ok 1 red\x1b[0m", "not ok 1 red"},
		{"a\x07b\tc", "ab\tc"},
		{"[RUN] not a prefix", "[RUN] not a prefix"},
		{"[1.5x] not a prefix", "[1.5x] not a prefix"},
		{"1,2;not kmsg", "1,2;not kmsg"},
		{"  indented", "  indented"},
		{"<6>", ""},
	} {
		if got := stripConsole(clean(tc.in)); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDiagnosticsCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("TAP version 13\n1..1\n")
	for i := range 10 {
		fmt.Fprintf(&b, "# line %d\n", i)
	}
	b.WriteString("ok 1 chatty\n")
	r, err := Parse(strings.NewReader(b.String()), Options{MaxDiagnostics: 4})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Tests[0]
	want := []string{"# line 0", "# line 1", "# line 8", "# line 9"}
	if !reflect.DeepEqual(got.Diagnostics, want) || got.Dropped != 6 {
		t.Errorf("kept %q, dropped %d; want %q, 6", got.Diagnostics, got.Dropped, want)
	}

	r, _ = Parse(strings.NewReader(b.String()), Options{MaxDiagnostics: -1})
	if n := len(r.Tests[0].Diagnostics); n != 10 || r.Tests[0].Dropped != 0 {
		t.Errorf("unlimited: kept %d, dropped %d", n, r.Tests[0].Dropped)
	}
	r, _ = Parse(strings.NewReader(b.String()), Options{MaxDiagnostics: 1})
	if d := r.Tests[0].Diagnostics; len(d) != 1 || d[0] != "# line 0" || r.Tests[0].Dropped != 9 {
		t.Errorf("cap 1: kept %q, dropped %d", d, r.Tests[0].Dropped)
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	in := "TAP version 13\n1..2\n# " + long + "\nok 1 " + long + "\nok 2 ü" + long + "\n"
	r, err := Parse(strings.NewReader(in), Options{MaxLineBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tests) != 2 {
		t.Fatalf("%d tests, want 2", len(r.Tests))
	}
	if d := r.Tests[0].Diagnostics; len(d) != 1 || len(d[0]) != 100 {
		t.Errorf("diagnostic not cut at 100 bytes: %d", len(d[0]))
	}
	if n := len(r.Tests[0].Name); n != 95 {
		t.Errorf("name of %d bytes, want 95", n)
	}

	// Feed cuts too, on a rune boundary.
	p := NewParser(Options{MaxLineBytes: 8})
	p.Feed("ok 1 aaü")
	if got := p.Finish().Tests[0].Name; got != "aa" {
		t.Errorf("Feed cut name to %q, want %q", got, "aa")
	}
}

// TestLive checks that OnTest fires at the result line, not at Finish,
// and that a KTAP v1 group without a header reports its subtests once
// its own result line names it.
func TestLive(t *testing.T) {
	var got []string
	p := NewParser(Options{OnTest: func(path string, tt *Test) { got = append(got, path) }})
	step := func(line string, want ...string) {
		t.Helper()
		p.Feed(line)
		if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("after %q: reported %q, want %q", line, got, want)
		}
	}
	step("KTAP version 1")
	step("1..2")
	step("    KTAP version 1")
	step("    # Subtest: suite")
	step("    1..1")
	step("    ok 1 case", "suite/case")
	step("ok 1 suite", "suite/case", "suite")
	step("  KTAP version 1", "suite/case", "suite")
	step("  1..1", "suite/case", "suite")
	step("  ok 1 inner", "suite/case", "suite")
	step("ok 2 outer", "suite/case", "suite", "outer/inner", "outer")
	p.Finish()
	if len(got) != 4 {
		t.Errorf("Finish reported more: %q", got)
	}
}

func TestFinish(t *testing.T) {
	p := NewParser(Options{})
	p.Feed("TAP version 13")
	p.Feed("ok 1 a")
	r := p.Finish()
	p.Feed("ok 2 b")
	if r2 := p.Finish(); r2 != r || len(r.Tests) != 1 {
		t.Errorf("Finish not idempotent or Feed after Finish counted: %d tests", len(r.Tests))
	}
}

type failingReader struct{ r io.Reader }

var errDisk = errors.New("disk on fire")

func (f *failingReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if err == io.EOF {
		return n, errDisk
	}
	return n, err
}

func TestParseReadError(t *testing.T) {
	r, err := Parse(&failingReader{strings.NewReader("TAP version 13\n1..2\nok 1 a\n")}, Options{})
	if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("error %v, want one wrapping %v at line 4", err, errDisk)
	}
	if r == nil || len(r.Tests) != 2 || r.Tests[1].Result != Crashed {
		t.Errorf("partial result not returned: %+v", r)
	}
}

func TestDepthBound(t *testing.T) {
	var b strings.Builder
	for i := range 2 * maxDepth {
		fmt.Fprintf(&b, "%sKTAP version 1\n", strings.Repeat(" ", 2*i))
	}
	p := NewParser(Options{})
	for _, l := range strings.Split(b.String(), "\n") {
		p.Feed(l)
		if len(p.stack) > maxDepth {
			t.Fatalf("%d open groups, bound %d", len(p.stack), maxDepth)
		}
	}
	r := p.Finish()
	if c := r.Counts(); c.Crashed != 1 || c.Total() != 1 {
		t.Errorf("counts %v, want one crashed leaf", c)
	}
}

func TestStatusAndCounts(t *testing.T) {
	failed := map[Status]bool{Fail: true, XPass: true, Timeout: true, Error: true, Crashed: true}
	for _, s := range []Status{Pass, Fail, Skip, Todo, XFail, XPass, Timeout, Error, Crashed} {
		if s.Failed() != failed[s] {
			t.Errorf("%s.Failed() = %v", s, s.Failed())
		}
	}
	c := Counts{Pass: 2, XPass: 1, Crashed: 1, Skip: 3}
	if c.Total() != 7 || c.Failed() != 2 || c.String() != "total:7 pass:2 skip:3 xpass:1 crashed:1" {
		t.Errorf("Counts %v: total %d failed %d", c, c.Total(), c.Failed())
	}
}
