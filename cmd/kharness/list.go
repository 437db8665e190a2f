package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/patch"
	"github.com/kharness/kharness/harness/run"
	"github.com/kharness/kharness/harness/target"
)

// listCmd is `kharness list`: what a run can choose from — targets, patch
// sets with their series, suites with their tests, and the mutants with
// the tests that catch them (from the nightly matrix's expectations).
func listCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	fs.StringVar(&c.cfgPath, "c", "kharness.yaml", "config file")
	nightly := fs.String("nightly", "", "the matrix whose mutant cells say what catches each mutant (default nightly.yaml beside the config)")
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	cfg, err := c.load()
	if err != nil {
		return fail(stderr, err)
	}
	p, err := run.New(context.Background(), cfg, io.Discard)
	if err != nil {
		return fail(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGETS\tARCH\tGO\tQEMU\tFRAGMENTS\tDEFAULT")
	for _, name := range target.Names() {
		t, _ := target.Lookup(name)
		q := t.QEMU
		if t.QEMUMin.Major > 0 {
			q += fmt.Sprintf(" >= %d.%d", t.QEMUMin.Major, t.QEMUMin.Minor)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", t.Name, t.Arch, t.GOARCH, q, strings.Join(t.Fragments, " "), t.Default)
	}
	tw.Flush()

	fmt.Fprintln(stdout, "\nPATCH SETS")
	for _, name := range p.Catalog.PatchSets {
		if strings.HasPrefix(name, "mutants/") {
			continue
		}
		printSet(stdout, cfg, name)
	}

	fmt.Fprintln(stdout, "\nSUITES")
	var suites []string
	for name := range p.Suites {
		suites = append(suites, name)
	}
	sort.Strings(suites)
	for _, name := range suites {
		s := p.Suites[name]
		def := ""
		if !s.InAll() {
			def = " (not in \"all\")"
		}
		fmt.Fprintf(stdout, "  %s%s: %s\n", name, def, s.Description)
		fmt.Fprintf(stdout, "    %d tests: %s\n", len(p.Catalog.Tests[name]), strings.Join(p.Catalog.Tests[name], " "))
	}

	fmt.Fprintln(stdout, "\nMUTANTS (and what catches them)")
	path := *nightly
	if path == "" {
		path = filepath.Join(cfg.Root, "nightly.yaml")
	}
	catches := map[string][]string{}
	if nc, err := config.Load(path, config.Overrides{}); err == nil {
		for _, cell := range nc.Cells {
			x := cell.Expect.Get()
			if x == nil {
				continue
			}
			for _, ps := range cell.PatchSets.Names {
				if strings.HasPrefix(ps, "mutants/") {
					targets := strings.Join(cell.Targets, ",")
					if targets == "" {
						targets = "all targets"
					}
					catches[ps] = append(catches[ps], fmt.Sprintf("%s on %s (cell %s)", strings.Join(x.Fail, " and "), targets, cell.Name))
				}
			}
		}
	} else if !os.IsNotExist(err) {
		fmt.Fprintf(stderr, "kharness list: %v\n", err)
	}
	for _, name := range p.Catalog.PatchSets {
		if !strings.HasPrefix(name, "mutants/") {
			continue
		}
		by := catches[name]
		if len(by) == 0 {
			by = []string{"no nightly cell names a test that catches it"}
		}
		fmt.Fprintf(stdout, "  %s: %s\n", strings.TrimPrefix(name, "mutants/"), strings.Join(by, "; "))
	}
	return 0
}

func printSet(w io.Writer, cfg *config.Config, name string) {
	s, err := patch.Load(cfg.Abs(cfg.Dirs.Patches), name)
	if err != nil {
		fmt.Fprintf(w, "  %s: %v\n", name, err)
		return
	}
	fmt.Fprintf(w, "  %s (%d patches)\n", name, len(s.Patches))
	for i, pt := range s.Patches {
		fmt.Fprintf(w, "    %d. %s\n", i+1, pt.Subject)
	}
}
