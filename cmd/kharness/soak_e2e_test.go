//go:build soak

// The soak test runs the default matrix over and over on real kernels and
// tallies every test that failed (`make soak`, not CI: about ten minutes
// per round here under TCG). A false alarm that shows once in ten runs
// shows here.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

func TestSoak(t *testing.T) {
	n := 10
	if s := os.Getenv("KHARNESS_SOAK_RUNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("KHARNESS_SOAK_RUNS=%q: want a positive number", s)
		}
	}
	extra := os.Getenv("KHARNESS_SOAK_ARGS") // e.g. "--target i386-highmem"
	cfg, res := writeConfig(t, "", nil)
	type key struct{ cell, test string }
	fails := map[key][]string{}
	cellOutcomes := map[string]map[outcome.Outcome]int{}
	var durations []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		args := append([]string{"run", "-c", cfg}, strings.Fields(extra)...)
		if lock := os.Getenv("KHARNESS_SOAK_LOCK"); lock != "" {
			// Machines shared with other kernel work: hold the lock per
			// round, not for the whole soak.
			out, err := exec.Command("flock", append([]string{lock, bin}, args...)...).CombinedOutput()
			t.Logf("round %d: %v\n%s", i+1, err, tail(string(out), 12))
		} else {
			kharness(t, nil, args...)
		}
		durations = append(durations, time.Since(start))
		dir, err := filepath.EvalSymlinks(filepath.Join(res, "latest"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := results.Load(filepath.Join(dir, "results.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range r.Cells {
			if cellOutcomes[c.ID] == nil {
				cellOutcomes[c.ID] = map[outcome.Outcome]int{}
			}
			cellOutcomes[c.ID][c.Outcome]++
			if c.Outcome != outcome.Pass && len(c.Tests) == 0 {
				fails[key{c.ID, "(cell)"}] = append(fails[key{c.ID, "(cell)"}], fmt.Sprintf("run %d: %s: %s", i+1, c.Outcome, c.Reason))
			}
			for _, tc := range c.Tests {
				if tc.Outcome != outcome.Pass && tc.Outcome != outcome.Skip && tc.Known == "" {
					k := key{c.ID, tc.Suite + "/" + tc.Name}
					msg, _, _ := strings.Cut(tc.Message, "\n")
					fails[k] = append(fails[k], fmt.Sprintf("run %d (%s): %s: %s", i+1, r.ID, tc.Outcome, msg))
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d runs of the default matrix%s; wall times %v\n", n, map[bool]string{true: " (" + extra + ")", false: ""}[extra != ""], durations)
	var cells []string
	for c := range cellOutcomes {
		cells = append(cells, c)
	}
	sort.Strings(cells)
	for _, c := range cells {
		fmt.Fprintf(&b, "  %s: %v\n", c, cellOutcomes[c])
	}
	var keys []key
	for k := range fails {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].cell+keys[i].test < keys[j].cell+keys[j].test })
	for _, k := range keys {
		fmt.Fprintf(&b, "  FAILED %d/%d  %s %s\n", len(fails[k]), n, k.cell, k.test)
		for _, f := range fails[k] {
			fmt.Fprintf(&b, "      %s\n", f)
		}
	}
	t.Log(b.String())
	if out := os.Getenv("KHARNESS_SOAK_TALLY"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
	if len(keys) > 0 {
		t.Errorf("%d test(s) failed at least once in %d runs", len(keys), n)
	}
}
