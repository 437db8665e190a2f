package ktap

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input panics the parser and that the tree it
// gives is consistent (see checkInvariants), with default and with tiny
// limits, and that Parse reads lines as Feed takes them.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.ktap"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"ok 1\n",
		"KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n",
		"  ok 1 a\nok 2 b\n    ok 1 c\n",
		"# Subtest: a\n# Subtest: b\n  # Subtest: c\nok 1\n",
		"KTAP version 2\n#:ktap_test: x\nskip 1 y\n1..1\n1..1\nKTAP version 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		small := Options{MaxDiagnostics: 3, MaxLineBytes: 64}
		for _, opts := range []Options{{}, small} {
			g := parseChecked(t, data, opts)
			a, err := json.Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := json.Marshal(parseChecked(t, data, opts)); !bytes.Equal(a, b) {
				t.Fatal("two parses of the same input differ")
			}
		}

		// Feeding split lines gives what Parse gives, lines being short
		// enough that where each cuts them does not matter.
		lines := strings.Split(string(data), "\n")
		if len(lines) > 0 && lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		for _, l := range lines {
			if len(l) >= DefaultMaxLineBytes {
				return
			}
		}
		p := NewParser(Options{})
		for _, l := range lines {
			p.Feed(l)
		}
		fed, _ := json.Marshal(p.Finish())
		r, err := Parse(bytes.NewReader(data), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if parsed, _ := json.Marshal(r); !bytes.Equal(fed, parsed) {
			t.Fatalf("Feed and Parse differ:\n%s\n%s", fed, parsed)
		}
	})
}
