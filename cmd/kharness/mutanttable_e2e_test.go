//go:build mutanttable

// The mutant table (`make mutant-table`, by hand: about two hours here):
// every mutant cell of nightly.yaml booted once more with the kernel's
// own mm selftests (suite kselftest-mm) instead of its kharness tests, to
// say per mutant which of the two test sets catches it. The kharness
// column is the nightly's own verdict (TestE2EMutants, make nightly).
// KHARNESS_MUTANT_CELLS=pattern,... limits it to some cells.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kharness/kharness/harness/outcome"
)

func TestMutantTable(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "nightly.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var night map[string]any
	if err := yaml.Unmarshal(b, &night); err != nil {
		t.Fatal(err)
	}
	var cells []any
	for _, c := range night["cells"].([]any) {
		cell := c.(map[string]any)
		if cell["expect"] == nil {
			continue // the patched cell and the negative controls
		}
		delete(cell, "expect")
		cell["suites"] = []string{"kselftest-mm"}
		cells = append(cells, cell)
	}
	extra, err := yaml.Marshal(map[string]any{"source": night["source"], "targets": night["targets"],
		"patchsets": night["patchsets"], "suites": []string{"kselftest-mm"}, "duration": "10s", "cells": cells})
	if err != nil {
		t.Fatal(err)
	}
	cfg, res := writeConfig(t, string(extra), nil)
	args := []string{"run", "-c", cfg}
	// KHARNESS_MUTANT_CELLS (cell patterns, as --cell) makes a partial table.
	if only := os.Getenv("KHARNESS_MUTANT_CELLS"); only != "" {
		args = append(args, "--cell", only)
	}
	if lock := os.Getenv("KHARNESS_LOCK"); lock != "" {
		out, err := exec.Command("flock", append([]string{lock, bin}, args...)...).CombinedOutput()
		t.Logf("run: %v\n%s", err, tail(string(out), 40))
	} else {
		kharness(t, nil, args...)
	}
	run, _ := loadRun(t, res)
	if len(run.Cells) == 0 {
		t.Fatal("the run has no cells")
	}
	var rows []string
	for _, c := range run.Cells {
		var failed []string
		for _, tc := range c.Tests {
			switch tc.Outcome {
			case outcome.TestFail, outcome.KernelCrash, outcome.Timeout:
				if tc.Known == "" && !tc.HostBlamed {
					failed = append(failed, tc.Name+" ("+string(tc.Outcome)+")")
				}
			}
		}
		sort.Strings(failed)
		verdict := "not caught"
		switch {
		case c.Outcome == outcome.Infra || c.Outcome == outcome.Interrupted || c.Raw == outcome.BuildFail:
			verdict = "no verdict: " + string(c.Outcome)
			t.Errorf("%s: no verdict (%s: %s)", c.ID, c.Outcome, c.Reason)
		case c.Raw == outcome.KernelCrash && c.Crash != nil:
			verdict = "caught: kernel crash in " + c.BlameTest + ": " + c.Crash.Title
		case len(failed) > 0:
			verdict = "caught: " + strings.Join(failed, ", ")
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", c.Name, c.Target, verdict))
	}
	table := "| mutant cell | target | kselftest-mm at 10 s |\n|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
	t.Log("\n" + table)
	if out := os.Getenv("KHARNESS_MUTANT_TABLE"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}
