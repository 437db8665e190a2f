package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/catalog"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/patch"
)

// notCaughtAtCI are the mutants that have no nightly cell, each with the
// reason; the README must say so too. Adding a mutant without naming the
// tests that catch it fails TestNightlyMutants unless it is listed here.
var notCaughtAtCI = map[string]string{}

// realCatalog is what `kharness run` validates nightly.yaml against,
// plus every suite's declared tests (its -list, built for this host).
func realCatalog(t *testing.T, cfg *config.Config) config.Catalog {
	t.Helper()
	ps, err := patch.Discover(cfg.Abs(cfg.Dirs.Patches))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := catalog.Suites(cfg.Abs(cfg.Dirs.Suites))
	if err != nil {
		t.Fatal(err)
	}
	var top []string
	for _, n := range ps {
		if !strings.Contains(n, "/") {
			top = append(top, n)
		}
	}
	cat := config.Catalog{PatchSets: ps, DefaultPatchSets: top,
		Suites: catalog.Names(ss, false), DefaultSuites: catalog.Names(ss, true), Tests: map[string][]string{}}
	for _, s := range ss {
		if !s.IsGo() {
			cat.Tests[s.Name] = s.Declared() // programs or KUnit suites
			continue
		}
		cat.Tests[s.Name] = declaredTests(t, cfg.Abs(cfg.Dirs.Module), s.Name)
	}
	return cat
}

// declaredTests runs `go run ./suites/<name> -list` in the module.
func declaredTests(t *testing.T, module, name string) []string {
	t.Helper()
	cmd := exec.Command("go", "run", "./suites/"+name, "-list")
	cmd.Dir = module
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run ./suites/%s -list: %v\n%s", name, err, stderr.String())
	}
	tests := strings.Fields(string(out))
	if len(tests) == 0 {
		t.Fatalf("suite %s declares no tests", name)
	}
	return tests
}

// commitMessage is the text of a mutant's patches before their "---"
// separators: what the mutant's author says the suites should see.
func commitMessage(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no patch (%v)", dir, err)
	}
	var msg strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, _, found := strings.Cut(string(data), "\n---\n")
		if !found {
			t.Fatalf("%s: no \"---\" line ends the commit message", f)
		}
		msg.WriteString(head)
		msg.WriteString("\n")
	}
	return msg.String()
}

// mentions reports whether text names test as a word of its own (test
// names are made of [a-z0-9-]).
func mentions(text, test string) bool {
	re := regexp.MustCompile(`(^|[^a-z0-9-])` + regexp.QuoteMeta(test) + `($|[^a-z0-9-])`)
	return re.MatchString(text)
}

// selected lists the declared tests a suite selection runs ("suite" or
// "suite:regexp").
func selected(t *testing.T, spec string, tests []string) map[string]bool {
	t.Helper()
	s := guest.ParseSuiteSpec(spec)
	out := map[string]bool{}
	if s.Tests == "" {
		for _, n := range tests {
			out[n] = true
		}
		return out
	}
	re, err := guest.CompileTests(s.Tests)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tests {
		if re.MatchString(n) {
			out[n] = true
		}
	}
	return out
}

// TestNightlyMutants checks nightly.yaml against the tree: it validates
// with the real catalog (declared tests included); every mutant under
// patches/mutants/ is stacked by a cell that names the tests that must
// fail (or is listed in notCaughtAtCI, and the README says so); every
// test a cell expects to fail is one the cell runs and one its mutant's
// commit message names.
func TestNightlyMutants(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(root, "nightly.yaml"), config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	cat := realCatalog(t, cfg)
	if err := cfg.Validate(cat); err != nil {
		t.Fatalf("nightly.yaml does not validate against the tree:\n%v", err)
	}

	ents, err := os.ReadDir(filepath.Join(root, "patches", "mutants"))
	if err != nil {
		t.Fatal(err)
	}
	var mutants []string
	for _, e := range ents {
		if e.IsDir() {
			mutants = append(mutants, e.Name())
		}
	}
	if len(mutants) == 0 {
		t.Fatal("no mutants under patches/mutants")
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}

	caught := map[string][]string{} // mutant -> cells naming its catching tests
	for _, cell := range cfg.Cells {
		x := cell.Expect.Get()
		var stacked []string
		for _, p := range cell.PatchSets.Names {
			if m, ok := strings.CutPrefix(p, "mutants/"); ok {
				stacked = append(stacked, m)
			}
		}
		if x == nil {
			continue // the patched cell, negative controls
		}
		if len(x.Fail) == 0 {
			t.Errorf("cell %s: `expect: fail` names no test; list the tests that must fail (expect.fail)", cell.Name)
			continue
		}
		if len(stacked) > 1 {
			t.Errorf("cell %s expects failures with %d mutants stacked (%v): a failure could not be told apart", cell.Name, len(stacked), stacked)
			continue
		}
		runs := map[string]map[string]bool{} // suite -> tests the cell runs
		specs := cell.Suites.Names
		if !cell.Suites.Set() || cell.Suites.All {
			specs = cat.DefaultSuites
		}
		for _, spec := range specs {
			name := guest.ParseSuiteSpec(spec).Name
			if runs[name] == nil {
				runs[name] = map[string]bool{}
			}
			for n := range selected(t, spec, cat.Tests[name]) {
				runs[name][n] = true
			}
		}
		var msg string
		if len(stacked) == 1 {
			msg = commitMessage(t, filepath.Join(root, "patches", "mutants", stacked[0]))
		}
		for _, p := range x.Fail {
			suite := guest.ParseSuiteSpec(p).Name
			named := selected(t, p, cat.Tests[suite])
			if guest.ParseSuiteSpec(p).Tests == "" {
				t.Errorf("cell %s: pattern %q names a suite, not its tests", cell.Name, p)
				continue
			}
			var names []string
			for n := range named {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if !runs[suite][n] {
					t.Errorf("cell %s expects %s/%s to fail, but does not run it (suites %v)", cell.Name, suite, n, specs)
				}
				if msg != "" && !mentions(msg, n) {
					t.Errorf("cell %s expects %s/%s to fail, but the commit message of mutants/%s does not name it", cell.Name, suite, n, stacked[0])
				}
			}
		}
		if len(stacked) == 1 {
			caught[stacked[0]] = append(caught[stacked[0]], cell.Name)
		}
	}

	for _, m := range mutants {
		why, excused := notCaughtAtCI[m]
		switch {
		case excused && len(caught[m]) > 0:
			t.Errorf("mutant %s is listed as not caught at CI (%s) but cells %v name its catching tests: drop it from notCaughtAtCI", m, why, caught[m])
		case excused:
			if !bytes.Contains(readme, []byte(m)) || !bytes.Contains(readme, []byte("not caught at CI")) {
				t.Errorf("mutant %s is excused (%s), but the README does not document it as not caught at CI durations", m, why)
			}
		case len(caught[m]) == 0:
			t.Errorf("mutant %s: no nightly.yaml cell stacks it with expect.fail naming the tests that must catch it", m)
		}
	}
	for m := range notCaughtAtCI {
		if _, err := os.Stat(filepath.Join(root, "patches", "mutants", m)); err != nil {
			t.Errorf("notCaughtAtCI lists %s, which is no mutant: %v", m, err)
		}
	}
}

func TestMentions(t *testing.T) {
	msg := "What the uffd suite should see: fdinfo reports ...; wake-ranges reads. pin-ro-*-shared and pin-rw-gup-page-parent-first."
	for test, want := range map[string]bool{
		"fdinfo": true, "wake-ranges": true, "pin-rw-gup-page-parent-first": true,
		"wake": false, "ranges": false, "pin-rw-gup-page-parent": false, "pin-ro-gup-page-shared": false,
	} {
		if got := mentions(msg, test); got != want {
			t.Errorf("mentions(%q) = %v, want %v", test, got, want)
		}
	}
}
