//go:build e2e

// End-to-end tests: they build real 6.12 kernels for both targets, boot
// them in real QEMU and check the outcome, exit code and artefacts of
// each path a run can take. They need the packages `kharness doctor`
// lists; a missing one fails the test, it is never skipped.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kharness-e2e-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "kharness")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build kharness: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// writeConfig writes a kharness.yaml into a temp dir whose project
// directories point at the repository (or at overrides).
func writeConfig(t *testing.T, extra string, dirs map[string]string) (cfg, resultsDir string) {
	t.Helper()
	root := repoRoot(t)
	d := map[string]string{"patches": "patches", "kconfigs": "kconfigs", "suites": "suites", "module": ".", "known": "known-issues.yaml"}
	for k, v := range dirs {
		d[k] = v
	}
	tmp := t.TempDir()
	resultsDir = filepath.Join(tmp, "results")
	// CI keeps every e2e run's results for upload.
	if keep := os.Getenv("KHARNESS_E2E_RESULTS"); keep != "" {
		resultsDir = filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
		os.RemoveAll(resultsDir)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "results: %s\ndirs:\n", resultsDir)
	for _, k := range []string{"patches", "kconfigs", "suites", "module", "known"} {
		p := d[k]
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		fmt.Fprintf(&b, "  %s: %s\n", k, p)
	}
	b.WriteString(extra)
	cfg = filepath.Join(tmp, "kharness.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, resultsDir
}

type runResult struct {
	code   int
	stdout string
	stderr string
	run    *results.Run
	dir    string
}

func kharness(t *testing.T, env []string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := runResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run kharness: %v", err)
	}
	t.Logf("kharness %s: exit %d in %s\n--- stdout\n%s--- stderr (tail)\n%s", strings.Join(args, " "), r.code,
		time.Since(start).Round(time.Second), r.stdout, tail(r.stderr, 40))
	return r
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func loadRun(t *testing.T, resultsDir string) (*results.Run, string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(filepath.Join(resultsDir, "latest"))
	if err != nil {
		t.Fatalf("no results/latest: %v", err)
	}
	r, err := results.Load(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func wantCode(t *testing.T, r runResult, o outcome.Outcome) {
	t.Helper()
	if r.code != o.ExitCode() {
		t.Fatalf("exit code %d, want %d (%s)", r.code, o.ExitCode(), o)
	}
}

func findTest(c *results.Cell, suite, name string) *results.Test {
	for _, t := range c.Tests {
		if t.Suite == suite && t.Name == name {
			return t
		}
	}
	return nil
}

// TestE2EDefaultMatrix runs the default matrix (both targets, every patch
// set stacked, every default suite) on real kernels, then reruns it with
// `make` replaced by a tripwire to prove an unchanged rerun builds nothing.
// logTally logs a cell's results per suite (outcome counts, known
// failures apart) and its boot time, for the CI log.
func logTally(t *testing.T, c *results.Cell) {
	t.Helper()
	type tally map[string]int
	per := map[string]tally{}
	var suites []string
	for _, tc := range c.Tests {
		if per[tc.Suite] == nil {
			per[tc.Suite] = tally{}
			suites = append(suites, tc.Suite)
		}
		o := string(tc.Outcome)
		if tc.Known != "" {
			o = "known"
		}
		per[tc.Suite][o]++
	}
	var parts []string
	for _, s := range suites {
		var kv []string
		for o, n := range per[s] {
			kv = append(kv, fmt.Sprintf("%s %d", o, n))
		}
		sort.Strings(kv)
		parts = append(parts, s+" ("+strings.Join(kv, ", ")+")")
	}
	t.Logf("%s: %s in %.1fs boot; %s", c.ID, c.Outcome, c.BootSeconds, strings.Join(parts, "; "))
}

func TestE2EDefaultMatrix(t *testing.T) {
	cfg, res := writeConfig(t, "", nil)
	r := kharness(t, nil, "run", "-c", cfg)
	wantCode(t, r, outcome.Pass)
	run, dir := loadRun(t, res)
	if len(run.Cells) != 2 {
		t.Fatalf("%d cells, want 2", len(run.Cells))
	}
	for _, c := range run.Cells {
		if c.Outcome != outcome.Pass {
			t.Errorf("%s: %s: %s", c.ID, c.Outcome, c.Reason)
		}
		logTally(t, c)
		if c.Accel == "" || c.GuestInfo["release"] == "" {
			t.Errorf("%s: accel %q / guest info %v not recorded", c.ID, c.Accel, c.GuestInfo)
		}
		hm := findTest(c, "smoke", "highmem")
		switch c.Target {
		case "i386-highmem":
			if hm == nil || hm.Outcome != outcome.Pass || hm.Metrics["pages_highmem"] <= 0 {
				t.Errorf("i386 highmem test: %+v", hm)
			}
		case "x86_64":
			if hm == nil || hm.Outcome != outcome.Skip {
				t.Errorf("x86_64 highmem test should be a recorded skip: %+v", hm)
			}
		}
		if c.Target == "i386-highmem" {
			var high, sleeps float64
			for _, tc := range c.Tests {
				if tc.Suite == "kmaplocal" {
					high += tc.Metrics["highmem_pages"]
					sleeps += tc.Metrics["sleeps_in_section"]
				}
			}
			if high == 0 || sleeps == 0 {
				t.Errorf("%s: kmaplocal ran vacuously: highmem_pages=%v sleeps_in_section=%v", c.ID, high, sleeps)
			}
		}
		// UMCG on both targets: the hand-off benchmark ran both ways, the
		// stress really switched workers through the kernel, and the
		// lifecycle test saw workers leave for good.
		if tp := findTest(c, "umcg", "throughput"); tp == nil || tp.Outcome != outcome.Pass ||
			tp.Metrics["umcg_switches_per_s"] <= 0 || tp.Metrics["futex_switches_per_s"] <= 0 {
			t.Errorf("%s: umcg throughput not measured: %+v", c.ID, tp)
		}
		if st := findTest(c, "umcg", "block-yield-stress"); st == nil || st.Metrics["switches"] <= 0 || st.Metrics["blocks"] <= 0 {
			t.Errorf("%s: umcg stress ran vacuously: %+v", c.ID, st)
		}
		if lc := findTest(c, "umcg", "lifecycle-exit-fork"); lc == nil || lc.Outcome != outcome.Pass ||
			lc.Metrics["thread_exits_registered"] <= 0 || lc.Metrics["departed"] <= 0 {
			t.Errorf("%s: umcg lifecycle: %+v", c.ID, lc)
		}
		// cow and uffd did what they claim: pins were taken and released,
		// fork copied pinned pages early, the storm hit the EEXIST path.
		var pins, early float64
		for _, tc := range c.Tests {
			if tc.Suite == "cow" {
				pins += tc.Metrics["pins_acquired"]
				early += tc.Metrics["early_copies"]
			}
		}
		if pins == 0 || early == 0 {
			t.Errorf("%s: cow ran vacuously: pins_acquired=%v early_copies=%v", c.ID, pins, early)
		}
		if st := findTest(c, "uffd", "missing-storm"); st == nil || st.Outcome != outcome.Pass ||
			st.Metrics["faults"] <= 0 || st.Metrics["eexist"] <= 0 {
			t.Errorf("%s: uffd storm ran vacuously: %+v", c.ID, st)
		}
		// The kernel's own tests: the mm selftests reported their cases
		// (not only an exit code), uffd-unit-tests its own lines, and the
		// KUnit suites ran in this kernel, case by case.
		cases := map[string]int{}
		for _, tc := range c.Tests {
			if prog, _, ok := strings.Cut(tc.Name, "/"); ok && (tc.Suite == "kselftest-mm" || tc.Suite == "kunit") {
				cases[tc.Suite+"/"+prog]++
			}
		}
		for _, prog := range []string{"kselftest-mm/cow", "kselftest-mm/gup_longterm", "kselftest-mm/uffd-unit-tests", "kunit/usercopy", "kunit/iov_iter", "kunit/list-kunit-test"} {
			suite, name, _ := strings.Cut(prog, "/")
			if tc := findTest(c, suite, name); tc == nil || (tc.Outcome != outcome.Pass && tc.Known == "") {
				t.Errorf("%s: %s: %+v", c.ID, prog, tc)
			}
			if cases[prog] < 3 {
				t.Errorf("%s: %s reported %d cases", c.ID, prog, cases[prog])
			}
		}
		// Every declared test reported, and nothing was made up by the host.
		for _, sr := range c.SuiteRuns {
			for _, d := range sr.Declared {
				if tc := findTest(c, sr.Name, d); tc == nil || tc.HostBlamed {
					t.Errorf("%s: %s/%s declared but not reported by the guest: %+v", c.ID, sr.Name, d, tc)
				}
			}
		}
		for _, f := range []string{"console.log", "events.jsonl", "qemu.cmdline", "config"} {
			if fi, err := os.Stat(filepath.Join(dir, c.Dir, f)); err != nil || fi.Size() == 0 {
				t.Errorf("%s: artefact %s missing or empty", c.ID, f)
			}
		}
	}
	for _, f := range []string{"results.json", "junit.xml", "events.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	// Rerun with make made fatal: nothing changed, so nothing may build.
	trip := t.TempDir()
	marker := filepath.Join(trip, "make-was-called")
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" >> %s\nexit 99\n", marker)
	if err := os.WriteFile(filepath.Join(trip, "make"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// Only smoke: the kernels and the initramfs do not depend on which
	// suites run, and the full suites already ran above.
	r2 := kharness(t, []string{"PATH=" + trip + ":" + os.Getenv("PATH")}, "run", "-c", cfg, "--suite", "smoke")
	wantCode(t, r2, outcome.Pass)
	if b, err := os.ReadFile(marker); err == nil {
		t.Errorf("unchanged rerun invoked make: %s", b)
	}
	run2, _ := loadRun(t, res)
	for _, c := range run2.Cells {
		if !c.KernelCached || !c.InitrdCached {
			t.Errorf("%s: rerun not cached (kernel %v, initramfs %v)", c.ID, c.KernelCached, c.InitrdCached)
		}
	}
}

func TestE2EPatchDoesNotApply(t *testing.T) {
	cfg, res := writeConfig(t, "targets: [x86_64]\nsuites: [smoke]\n", map[string]string{"patches": "cmd/kharness/testdata/patches"})
	r := kharness(t, nil, "run", "-c", cfg, "--patchset", "stale")
	wantCode(t, r, outcome.PatchFail)
	run, _ := loadRun(t, res)
	c := run.Cells[0]
	for _, w := range []string{"0001-stale-context.patch", "mm/highmem.c", "hunk #1", "@@ -600,7 +600,7 @@"} {
		if !strings.Contains(c.Reason, w) {
			t.Errorf("reason does not name %q:\n%s", w, c.Reason)
		}
	}
	if c.Stage != "patch" {
		t.Errorf("stage %q", c.Stage)
	}
}

// TestE2EKconfigDropped asks for an option x86_64 does not have on top
// of the repository's own fragments.
func TestE2EKconfigDropped(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kconfigs")
	if out, err := exec.Command("cp", "-r", filepath.Join(repoRoot(t), "kconfigs"), kc).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	frag := filepath.Join(kc, "target", "x86_64.config")
	f, err := os.OpenFile(frag, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("# HIGHPTE exists only on X86_32: olddefconfig drops it\nCONFIG_HIGHPTE=y\n")
	f.Close()
	data, _ := os.ReadFile(frag)
	line := len(strings.Split(strings.TrimRight(string(data), "\n"), "\n"))
	cfg, res := writeConfig(t, "targets: [x86_64]\nsuites: [smoke]\n", map[string]string{"kconfigs": kc})
	r := kharness(t, nil, "run", "-c", cfg)
	wantCode(t, r, outcome.KconfigDrop)
	run, _ := loadRun(t, res)
	c := run.Cells[0]
	if want := fmt.Sprintf("target/x86_64.config:%d: CONFIG_HIGHPTE=y requested, final .config has CONFIG_HIGHPTE is not set", line); !strings.Contains(c.Reason, want) {
		t.Errorf("reason:\n%s", c.Reason)
	}
}

// TestE2ECrashes boots real kernels into each failure class the guest can
// produce and checks outcome, exit code, splat and blame.
func TestE2ECrashes(t *testing.T) {
	tests := []struct {
		name    string
		targets string
		suite   string
		extra   string
		want    outcome.Outcome
		check   func(t *testing.T, c *results.Cell)
	}{
		{"suite failure", "x86_64", "selftest:fail", "", outcome.TestFail, func(t *testing.T, c *results.Cell) {
			if tc := findTest(c, "selftest", "fail"); tc == nil || tc.Outcome != outcome.TestFail || !strings.Contains(tc.Message, "deliberate failure") {
				t.Errorf("fail test: %+v", tc)
			}
		}},
		{"expected failure", "x86_64", "selftest:fail", "cells:\n  - name: mutant\n    expect: fail\n", outcome.ExpectedFail, nil},
		{"warning", "i386-highmem", "selftest:warn|pass", "", outcome.KernelCrash, func(t *testing.T, c *results.Cell) {
			tc := findTest(c, "selftest", "warn")
			if tc == nil || tc.Outcome != outcome.KernelCrash || !strings.Contains(strings.Join(tc.Kmsg, "\n"), "WARNING:") {
				t.Errorf("warn test: %+v", tc)
			}
			if p := findTest(c, "selftest", "pass"); p == nil || p.Outcome != outcome.Pass {
				t.Errorf("the guest should go on after a WARNING: %+v", p)
			}
		}},
		{"panic", "i386-highmem,x86_64", "selftest:panic", "", outcome.KernelCrash, func(t *testing.T, c *results.Cell) {
			if c.Crash == nil || c.Crash.Kind != "panic" || !strings.Contains(c.Crash.Title, "sysrq triggered crash") {
				t.Errorf("crash: %+v", c.Crash)
			}
			if c.BlameSuite != "selftest" || c.BlameTest != "panic" {
				t.Errorf("blame %s/%s", c.BlameSuite, c.BlameTest)
			}
			if !strings.Contains(c.Reproducer, "qemu-system-") {
				t.Errorf("no reproducer: %q", c.Reproducer)
			}
		}},
		{"hang", "x86_64", "selftest:hang", "timeouts:\n  no_output: 4s\n  tcg_scale: 1\n", outcome.Timeout, func(t *testing.T, c *results.Cell) {
			if !strings.Contains(c.Reason, "no events from the guest") || c.BlameTest != "hang" || !c.Watchdog {
				t.Errorf("reason %q blame %q watchdog %v", c.Reason, c.BlameTest, c.Watchdog)
			}
		}},
		// A test that never returns while the guest lives (its heartbeat
		// goes on): the agent's per-test deadline ends it, naming it.
		{"stuck test", "x86_64", "selftest:stuck|pass", "duration: 1s\ntimeouts:\n  test: 5s\n  tcg_scale: 1\n", outcome.Timeout, func(t *testing.T, c *results.Cell) {
			tc := findTest(c, "selftest", "stuck")
			if tc == nil || tc.Outcome != outcome.Timeout || !strings.Contains(tc.Message, "outran its deadline") || tc.HostBlamed {
				t.Errorf("stuck test: %+v", tc)
			}
			if p := findTest(c, "selftest", "pass"); p == nil || p.Outcome != outcome.TestFail || !strings.Contains(p.Message, "never reported") {
				t.Errorf("the test after the stuck one: %+v", p)
			}
		}},
		// The suite dies in a test: that test fails with the signal, the
		// one after it never reported; not a pass.
		{"suite dies", "x86_64", "selftest:die|pass", "", outcome.TestFail, func(t *testing.T, c *results.Cell) {
			if d := findTest(c, "selftest", "die"); d == nil || !strings.Contains(d.Message, "segmentation fault") {
				t.Errorf("die: %+v", d)
			}
			if p := findTest(c, "selftest", "pass"); p == nil || !strings.Contains(p.Message, "never reported") {
				t.Errorf("pass after die: %+v", p)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The default patch sets: the kernels are the ones the default
			// matrix built, so these runs only boot.
			cfg, res := writeConfig(t, tc.extra, nil)
			r := kharness(t, nil, "run", "-c", cfg, "--target", tc.targets, "--suite", tc.suite)
			wantCode(t, r, tc.want)
			run, _ := loadRun(t, res)
			if run.Outcome != tc.want {
				t.Errorf("run outcome %s, want %s", run.Outcome, tc.want)
			}
			for _, c := range run.Cells {
				if c.Outcome != tc.want {
					t.Errorf("%s: %s (%s), want %s", c.ID, c.Outcome, c.Reason, tc.want)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
			}
			if tc.want != outcome.Pass && tc.want != outcome.ExpectedFail && !strings.Contains(r.stdout, "reproduce the boot:") {
				t.Errorf("no reproducer in the summary")
			}
		})
	}
}

// TestE2EInterrupt sends SIGINT while a guest test runs: kharness must
// stop QEMU, keep what it received and exit 130.
func TestE2EInterrupt(t *testing.T) {
	cfg, res := writeConfig(t, "", nil)
	cmd := exec.Command(bin, "run", "-c", cfg, "--target", "x86_64", "--suite", "selftest:sleep", "--duration", "5m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	var evPath string
	for time.Now().Before(deadline) {
		if dir, err := filepath.EvalSymlinks(filepath.Join(res, "latest")); err == nil {
			evPath = filepath.Join(dir, "events.jsonl")
			if b, _ := os.ReadFile(evPath); bytes.Contains(b, []byte(`"test":"sleep"`)) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if evPath == "" {
		cmd.Process.Kill()
		t.Fatalf("the sleep test never started:\n%s", out.String())
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	t.Logf("output:\n%s", tail(out.String(), 30))
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != outcome.Interrupted.ExitCode() {
		t.Fatalf("exit %v, want %d", err, outcome.Interrupted.ExitCode())
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s to stop", d)
	}
	run, dir := loadRun(t, res)
	if run.Outcome != outcome.Interrupted || run.Cells[0].Outcome != outcome.Interrupted {
		t.Errorf("outcomes: run %s cell %s", run.Outcome, run.Cells[0].Outcome)
	}
	b, _ := os.ReadFile(evPath)
	if !bytes.Contains(b, []byte(`"type":"hello"`)) || !bytes.Contains(b, []byte(`"test":"sleep"`)) {
		t.Errorf("events received before Ctrl-C were lost:\n%s", b)
	}
	pidb, err := os.ReadFile(filepath.Join(dir, run.Cells[0].Dir, "qemu.pid"))
	if err != nil {
		t.Fatalf("qemu.pid: %v", err)
	}
	var pid int
	fmt.Sscan(string(pidb), &pid)
	if pid <= 0 {
		t.Fatalf("bad qemu.pid %q", pidb)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(st, []byte("qemu")) {
			t.Errorf("QEMU (pid %d) still running after kharness exited", pid)
		}
	}
	var recs []results.Record
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r results.Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Errorf("events.jsonl line not JSON: %q", l)
		}
		recs = append(recs, r)
	}
	if len(recs) < 3 {
		t.Errorf("only %d records", len(recs))
	}
}

// ciMutants are the nightly.yaml cells CI runs: every kmap_local mutant
// and its negative control, four cow and uffd mutants and three umcg ones
// (a kernel build of ~30 s and a boot each; for cow the early copy, the
// reuse check, the TLB flush and the GUP-fast seqcount race (x86_64 only:
// ciX86Mutants), for uffd the
// wake range, the mfill retry, the move and the wake-up recheck; for umcg
// the wake-up ordering, the list push and the pin release). The nightly runs them all and the
// stock-kernel tearing cell; the umcg suite itself runs in the default
// matrix (TestE2EDefaultMatrix).
var ciMutants = []string{
	"kmap-*",
	"cow-no-early-copy", "cow-wp-reuse-mapcount", "cow-tearing-no-flush",
	"uffd-wake-range-off-by-one", "uffd-mfill-retry-src", "uffd-move-keep-src", "uffd-no-recheck-after-queue",
	"umcg-wake-before-enqueue", "umcg-push-no-cmpxchg", "umcg-pin-leak-on-block",
}

// ciX86Mutants run on x86_64 only in CI: the GUP-fast seqcount race is
// caught there at once in every run (3 of 3 on 2026-12-07), on i386 it
// was missed once in three at 10 s (the nightly keeps both targets).
var ciX86Mutants = []string{"cow-gup-fast-no-seq"}

// TestE2EMutants runs mutant cells of nightly.yaml at CI duration (the
// "patched" cell is the default matrix, tested above). Each mutant must be
// caught by the tests its cell names, for the named reason (xfail is only
// given then; the raw outcome and the failed tests are checked here too),
// and every negative-control cell must pass having run tests.
func TestE2EMutants(t *testing.T) {
	root := repoRoot(t)
	_, res := writeConfig(t, "", nil)
	r := kharness(t, nil, "run", "-c", filepath.Join(root, "nightly.yaml"), "--results", res, "--duration", "10s",
		"--cell", strings.Join(ciMutants, ","))
	run, _ := loadRun(t, res)
	cells := run.Cells
	_, res86 := writeConfig(t, "", nil)
	r86 := kharness(t, nil, "run", "-c", filepath.Join(root, "nightly.yaml"), "--results", res86, "--duration", "10s",
		"--cell", strings.Join(ciX86Mutants, ","), "--target", "x86_64")
	run86, _ := loadRun(t, res86)
	cells = append(cells, run86.Cells...)
	mutants := map[string]int{}
	for _, c := range cells {
		var failed []string
		for _, tc := range c.Tests {
			if tc.Outcome == outcome.TestFail || tc.Outcome == outcome.KernelCrash || tc.Outcome == outcome.Timeout {
				failed = append(failed, fmt.Sprintf("%s/%s(%s)", tc.Suite, tc.Name, tc.Outcome))
			}
		}
		t.Logf("%s: raw %s -> %s in %.0fs; failed: %v", c.ID, c.Raw, c.Outcome, c.BootSeconds, failed)
		switch {
		case c.Expect != nil:
			family, _, _ := strings.Cut(c.Name, "-")
			mutants[family]++
			if c.Outcome != outcome.ExpectedFail {
				t.Errorf("mutant %s not caught as expected: %s (%s)", c.ID, c.Outcome, c.Reason)
				continue
			}
			if c.Raw != outcome.TestFail && c.Raw != outcome.KernelCrash && c.Raw != outcome.Timeout {
				t.Errorf("mutant %s: raw outcome %s", c.ID, c.Raw)
			}
			for _, pat := range c.Expect.Fail {
				g := guest.ParseSuiteSpec(pat)
				re, err := guest.CompileTests(g.Tests)
				if err != nil {
					t.Fatal(err)
				}
				hit := false
				for _, tc := range c.Tests {
					if tc.Suite == g.Name && re.MatchString(tc.Name) && !tc.HostBlamed &&
						(tc.Outcome == outcome.TestFail || tc.Outcome == outcome.KernelCrash || tc.Outcome == outcome.Timeout) {
						hit = true
					}
				}
				if !hit {
					t.Errorf("mutant %s: xfail, but no test matching %s failed on its own", c.ID, pat)
				}
			}
		default:
			if c.Outcome != outcome.Pass {
				t.Errorf("negative control %s: %s: %s", c.ID, c.Outcome, c.Reason)
			}
			if len(c.Tests) == 0 {
				t.Errorf("negative control %s ran no test", c.ID)
			}
		}
	}
	for _, family := range []string{"kmap", "cow", "uffd", "umcg"} {
		if mutants[family] < 3 {
			t.Errorf("only %d %s mutant cells", mutants[family], family)
		}
	}
	wantCode(t, r, outcome.Pass)
	wantCode(t, r86, outcome.Pass)
}

// TestE2ECheckpatch runs the kernel's own checkpatch.pl (from the Debian
// source tarball) over every patch in patches/: kernel code is written in
// kernel style or not at all.
func TestE2ECheckpatch(t *testing.T) {
	tmp := t.TempDir()
	tarball := "/usr/src/linux-source-6.12.tar.xz"
	out, err := exec.Command("tar", "-xJf", tarball, "-C", tmp, "--strip-components=1", "--wildcards",
		"*/scripts/checkpatch.pl", "*/scripts/spelling.txt", "*/scripts/const_structs.checkpatch").CombinedOutput()
	if err != nil {
		t.Fatalf("extract checkpatch from %s: %v %s", tarball, err, out)
	}
	patches, _ := filepath.Glob(filepath.Join(repoRoot(t), "patches", "*", "*.patch"))
	more, _ := filepath.Glob(filepath.Join(repoRoot(t), "patches", "*", "*", "*.patch"))
	patches = append(patches, more...)
	if len(patches) == 0 {
		t.Fatal("no patches found")
	}
	for _, p := range patches {
		cmd := exec.Command("perl", "scripts/checkpatch.pl", "--strict", "--no-tree", "--terse", p)
		cmd.Dir = tmp
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s is not checkpatch-clean:\n%s", p, out)
		}
		if b, _ := os.ReadFile(p); !bytes.Contains(b, []byte("\nSigned-off-by: ")) {
			t.Errorf("%s has no Signed-off-by", p)
		}
	}
}
