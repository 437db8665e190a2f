//go:build e2e

// The developer loop on real kernels: patchcheck over a 3-patch demo
// series, bisect over a 4-patch series with a mutant and a flaky
// neighbour, rerun of a past run without building, boot --gdb with a
// scripted gdb session.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/devloop"
	"github.com/kharness/kharness/harness/outcome"
)

// demoPatches makes a patches directory holding copies of the real sets
// and the demo series of testdata (copies: patch set discovery does not
// follow symlinked directories).
func demoPatches(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	dir := filepath.Join(t.TempDir(), "patches")
	os.MkdirAll(dir, 0o755)
	for _, s := range []string{"cow", "kmap-local", "umcg"} {
		if err := os.CopyFS(filepath.Join(dir, s), os.DirFS(filepath.Join(root, "patches", s))); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"pc-demo", "bisect-demo"} {
		if err := os.CopyFS(filepath.Join(dir, s), os.DirFS(filepath.Join(root, "cmd/kharness/testdata/patches", s))); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestE2EPatchcheck: patch 1 is good, patch 2 adds a warning (named by
// file and message), patch 3 breaks uffd/fdinfo (named).
func TestE2EPatchcheck(t *testing.T) {
	cfg, res := writeConfig(t, "targets: [x86_64]\npatchsets: [cow, kmap-local, umcg, pc-demo]\nsuites: [\"uffd:^fdinfo$\"]\n",
		map[string]string{"patches": demoPatches(t)})
	start := time.Now()
	r := kharness(t, nil, "patchcheck", "-c", cfg, "--series", "pc-demo", "--keep-going")
	took := time.Since(start)
	if r.code == 0 {
		t.Errorf("patchcheck of a series with a bad patch exited 0")
	}
	runDir, err := filepath.EvalSymlinks(filepath.Join(res, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(runDir, "patchcheck.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep devloop.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Patches) != 3 || rep.FirstBad != 2 {
		t.Fatalf("patchcheck.json: %d patches, first bad %d; want 3 and 2:\n%s", len(rep.Patches), rep.FirstBad, b)
	}
	if p := rep.Patches[0]; p.Bad {
		t.Errorf("patch 1 (a comment) judged bad: %s", p.Reason)
	}
	if p := rep.Patches[1]; !p.Bad || len(p.NewWarnings) != 1 ||
		!strings.Contains(p.NewWarnings[0], "mm/mremap.c: warning: 'kharness_demo_unused' defined but not used") {
		t.Errorf("patch 2: bad %v, new warnings %q", p.Bad, p.NewWarnings)
	}
	if p := rep.Patches[2]; !p.Bad || len(p.FailedTests) == 0 || !strings.Contains(p.FailedTests[0], "uffd/fdinfo") || len(p.NewWarnings) != 0 {
		t.Errorf("patch 3: bad %v, failed %q, warnings %q", p.Bad, p.FailedTests, p.NewWarnings)
	}
	for _, w := range []string{"first bad patch: 2", "new warning: mm/mremap.c", "failed: uffd/fdinfo"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("the table lacks %q", w)
		}
	}
	if _, err := os.Stat(filepath.Join(runDir, "junit.xml")); err != nil {
		t.Errorf("no junit.xml: %v", err)
	}
	var build float64
	for _, p := range rep.Patches {
		build += p.BuildSeconds
	}
	t.Logf("patchcheck of 3 patches: %s in all, %.0fs of incremental builds", took.Round(time.Second), build)
}

// TestE2EBisect: the mutant (patch 3) is named, the flaky WARNING of
// patch 2 never, and the confidence and runs per step are shown.
func TestE2EBisect(t *testing.T) {
	cfg, res := writeConfig(t, "targets: [x86_64]\npatchsets: [cow, kmap-local, umcg, bisect-demo]\nsuites: [\"uffd:^(handshake|wake-ranges)$\"]\n",
		map[string]string{"patches": demoPatches(t)})
	start := time.Now()
	r := kharness(t, nil, "bisect", "-c", cfg, "--series", "bisect-demo", "--bad-test", "uffd:^wake-ranges$", "--probe-runs", "2")
	wantCode(t, r, outcome.Pass)
	if !strings.Contains(r.stdout, "first bad: bisect-demo patch 3: userfaultfd: DEMO: wake range end is inclusive") {
		t.Errorf("the culprit is not patch 3:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`confidence: \d+\.\d%`).MatchString(r.stdout) || !strings.Contains(r.stdout, "run(s) per step") {
		t.Errorf("no confidence or runs per step:\n%s", r.stdout)
	}
	b, err := os.ReadFile(filepath.Join(res, "bisect-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st devloop.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if !st.Done || st.Culprit != 3 || st.RunsPerPos < 1 {
		t.Errorf("state: %+v", st)
	}
	for pos, s := range st.Steps {
		t.Logf("position %d: %s after %d runs %v (%.0fs)", pos, s.Verdict, len(s.Runs), s.Runs, s.Seconds)
	}
	t.Logf("bisect took %s", time.Since(start).Round(time.Second))
}

// TestE2ERerunAndGDB: rerun a past run's test without building anything
// (make is a tripwire), then boot the kernel paused under gdb: a scripted
// session attaches, reads linux_banner, detaches.
func TestE2ERerunAndGDB(t *testing.T) {
	cfg, res := writeConfig(t, "targets: [x86_64]\nsuites: [\"smoke:^arch$\"]\n", nil)
	r := kharness(t, nil, "run", "-c", cfg)
	wantCode(t, r, outcome.Pass)
	first, _ := loadRun(t, res)
	if _, err := os.Stat(filepath.Join(res, first.ID, first.Cells[0].Dir, "reproduce.sh")); err != nil {
		t.Errorf("no reproduce.sh in the cell: %v", err)
	}
	trip := t.TempDir()
	marker := filepath.Join(trip, "make-was-called")
	os.WriteFile(filepath.Join(trip, "make"), []byte(fmt.Sprintf("#!/bin/sh\necho \"$@\" >> %s\nexit 99\n", marker)), 0o755)
	env := []string{"PATH=" + trip + ":" + os.Getenv("PATH")}
	r = kharness(t, env, "rerun", first.ID, "-c", cfg, "--test", "smoke:^arch$", "--until-fail", "--count", "2")
	wantCode(t, r, outcome.Pass)
	if b, err := os.ReadFile(marker); err == nil {
		t.Errorf("rerun invoked make: %s", b)
	}
	again, _ := loadRun(t, res)
	if len(again.Cells) != 2 || again.Cells[0].Tests[0].Name != "arch" {
		t.Errorf("rerun cells %d, tests %+v", len(again.Cells), again.Cells[0].Tests)
	}

	// boot --gdb: paused until gdb attaches.
	port := freePort(t)
	cmd := exec.Command(bin, "boot", "-c", cfg, "--target", "x86_64", "--gdb="+port)
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdin = nil
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	gdbinit := ""
	sc := bufio.NewScanner(stderr)
	re := regexp.MustCompile(`attach with: (\S+) -x (\S+)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			gdbinit = m[2]
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if gdbinit == "" {
		t.Fatalf("kharness boot --gdb printed no .gdbinit")
	}
	// Paused at the reset vector the kernel is not yet decompressed: run
	// to start_kernel (a hardware breakpoint: the decompressor overwrites
	// memory a software one would patch), then read the banner (vmlinux
	// has symbols, not debug info: no type, so x/s).
	gdb := exec.Command("gdb", "-batch", "-nx", "-x", gdbinit, "-ex", "hbreak start_kernel", "-ex", "continue",
		"-ex", "x/s &linux_banner", "-ex", "detach")
	gout, err := gdb.CombinedOutput()
	if err != nil || !strings.Contains(string(gout), "Linux version 6.12") {
		t.Errorf("gdb session: %v\n%s", err, gout)
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("kharness boot did not stop on SIGINT")
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}
