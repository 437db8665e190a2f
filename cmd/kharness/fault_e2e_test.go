//go:build e2e

// The fault table, against the real kharness binary: signals and SIGKILL
// in every long stage, two runs sharing a cache, a corrupt cache entry, a
// full disk. `make` and QEMU are stand-ins on PATH (a script that writes
// a bzImage, the fakeqemu that replays a guest), so each row takes
// seconds; the initramfs is real (u-root), shared with the other e2e tests.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

// fakeMake stands for make: tinyconfig writes an empty .config,
// olddefconfig keeps it, bzImage runs a "compiler" (a copy of sleep
// named cc1 in the test's directory, so a survivor is easy to find) for
// $FAKEMAKE_SLEEP seconds and writes a small image.
const fakeMake = `#!/bin/sh
echo "$@" >> "$FAKEMAKE_LOG"
O=; target=
for a in "$@"; do
	case "$a" in
	O=*) O=${a#O=} ;;
	tinyconfig|olddefconfig|bzImage) target=$a ;;
	esac
done
case $target in
tinyconfig) : > "$O/.config" ;;
olddefconfig) ;;
bzImage)
	if [ -n "$FAKEMAKE_ENOSPC" ]; then
		echo "  CC      mm/memory.o"
		echo "mm/memory.c:1:1: fatal error: closing dependency file mm/.memory.o.d: No space left on device" >&2
		exit 2
	fi
	echo "  CC      mm/memory.o"
	"$FAKEMAKE_DIR/cc1" "${FAKEMAKE_SLEEP:-0}" &
	wait $!
	mkdir -p "$O/arch/x86/boot"
	head -c 65536 /dev/urandom > "$O/arch/x86/boot/bzImage"
	head -c 65536 /dev/urandom > "$O/vmlinux"
	;;
esac
`

var standInQEMU = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "kharness-e2e-fakeqemu-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "qemu-system-x86_64")
	if out, err := exec.Command("go", "build", "-o", bin, "../../harness/boot/testdata/fakeqemu").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the stand-in QEMU: %v\n%s", err, out)
	}
	return bin, nil
})

// faultEnv is one row's world: a fake kernel tree, a cache, fake make and
// QEMU on PATH, all under dir (which names every process it starts).
type faultEnv struct {
	dir, cache, results, cfg string
	env                      []string
}

// guestScript is a guest that runs smoke's arch test and powers off, or
// hangs in it.
func guestScript(hang bool) string {
	s := "console [    0.000000] Linux version 6.12.0 (fake) #1 SMP\n" +
		`event {"type":"hello","info":{"release":"6.12.0"}}` + "\n" +
		`event {"type":"suite-start","suite":"smoke","tests":["arch"]}` + "\n" +
		`event {"type":"test-start","suite":"smoke","test":"arch"}` + "\n"
	if hang {
		return s + "hang\n"
	}
	return s + `event {"type":"test-end","suite":"smoke","test":"arch","result":"pass"}` + "\n" +
		`event {"type":"suite-end","suite":"smoke","result":"pass"}` + "\n" + `event {"type":"done"}` + "\nexit 0\n"
}

func newFaultEnv(t *testing.T, hang bool, sleep int) *faultEnv {
	t.Helper()
	dir := t.TempDir()
	f := &faultEnv{dir: dir, cache: filepath.Join(dir, "cache"), results: filepath.Join(dir, "results")}
	// A tiny "kernel tree": only its Makefile's version is read.
	src := filepath.Join(dir, "linux")
	os.MkdirAll(filepath.Join(src, "mm"), 0o755)
	os.WriteFile(filepath.Join(src, "Makefile"), []byte("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\nEXTRAVERSION =\n"), 0o644)
	os.WriteFile(filepath.Join(src, "mm", "memory.c"), []byte("int x;\n"), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v6.12"}} {
		if out, err := exec.Command("git", append([]string{"-C", src}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "make"), []byte(fakeMake), 0o755)
	sleepBin, _ := exec.LookPath("sleep")
	if out, err := exec.Command("cp", sleepBin, filepath.Join(dir, "cc1")).CombinedOutput(); err != nil {
		t.Fatalf("cp sleep: %v %s", err, out)
	}
	q, err := standInQEMU()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", q, filepath.Join(bin, "qemu-system-x86_64")).CombinedOutput(); err != nil {
		t.Fatalf("cp qemu: %v %s", err, out)
	}
	script := filepath.Join(dir, "guest.script")
	os.WriteFile(script, []byte(guestScript(hang)), 0o644)
	// The initramfs is real and the same for every row: share it.
	shared := filepath.Join(os.Getenv("HOME"), ".cache", "kharness", "initramfs")
	if c := os.Getenv("KHARNESS_CACHE"); c != "" {
		shared = filepath.Join(c, "initramfs")
	}
	os.MkdirAll(shared, 0o755)
	os.MkdirAll(f.cache, 0o755)
	os.Symlink(shared, filepath.Join(f.cache, "initramfs"))
	root := repoRoot(t)
	f.cfg = filepath.Join(dir, "kharness.yaml")
	cfg := fmt.Sprintf(`source: %s
targets: [x86_64]
patchsets: []
suites: ["smoke:^arch$"]
accel: tcg
results: %s
cache: %s
timeouts: {no_output: 5s, tcg_scale: 1, boot: 20s}
dirs: {patches: %s/patches, kconfigs: %s/kconfigs, suites: %s/suites, module: %s}
`, src, f.results, f.cache, root, root, root, root)
	os.WriteFile(f.cfg, []byte(cfg), 0o644)
	f.env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKEMAKE_LOG="+filepath.Join(dir, "make.log"),
		"FAKEMAKE_DIR="+dir, fmt.Sprintf("FAKEMAKE_SLEEP=%d", sleep), "FAKEQEMU_SCRIPT="+script)
	return f
}

func (f *faultEnv) command(extraEnv ...string) *exec.Cmd {
	cmd := exec.Command(bin, "run", "-c", f.cfg)
	cmd.Env = append(append([]string{}, f.env...), extraEnv...)
	return cmd
}

// run runs kharness to the end and returns its exit code and output.
func (f *faultEnv) run(t *testing.T, extraEnv ...string) (int, string) {
	t.Helper()
	cmd := f.command(extraEnv...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// makeCalls counts the fake make's invocations for target.
func (f *faultEnv) makeCalls(target string) int {
	b, _ := os.ReadFile(filepath.Join(f.dir, "make.log"))
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(l, " "+target) {
			n++
		}
	}
	return n
}

// survivors lists the live processes this row started (their command
// line names its directory), besides kharness itself if it is still up.
func (f *faultEnv) survivors(except int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == except || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(f.dir)) {
			continue
		}
		if st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); bytes.Contains(st, []byte(") Z ")) {
			continue
		}
		out = append(out, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte(" "))))
	}
	return out
}

// waitFor polls until ok or the limit.
func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", limit, what)
}

// stderrHas watches a command's combined output for a line.
type lineWatch struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lineWatch) has(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Contains(w.buf.String(), s)
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func latestRun(t *testing.T, resultsDir string) *results.Run {
	t.Helper()
	r, err := results.Load(filepath.Join(resultsDir, "latest", "results.json"))
	if err != nil {
		t.Fatalf("results.json: %v", err)
	}
	return r
}

// TestE2EFaultSignals: SIGINT, SIGTERM, SIGHUP and a second Ctrl-C, in the
// build, the initramfs build and the boot: exit 130, results.json says
// interrupted, and nothing the run started is alive 5 s later.
func TestE2EFaultSignals(t *testing.T) {
	phases := []struct {
		name  string
		setup func(t *testing.T, f *faultEnv)
		ready string // output line that says the phase is under way
	}{
		{"build", nil, "build: make"},
		{"initramfs", func(t *testing.T, f *faultEnv) {
			// A cold initramfs of its own: u-root's go build is what must stop.
			os.Remove(filepath.Join(f.cache, "initramfs"))
			os.MkdirAll(filepath.Join(f.cache, "initramfs"), 0o755)
		}, "build: done"},
		{"boot", nil, "boot: "},
	}
	sigs := []struct {
		name string
		sig  []syscall.Signal
	}{
		{"SIGINT", []syscall.Signal{syscall.SIGINT}},
		{"SIGTERM", []syscall.Signal{syscall.SIGTERM}},
		{"SIGHUP", []syscall.Signal{syscall.SIGHUP}},
		{"second Ctrl-C", []syscall.Signal{syscall.SIGINT, syscall.SIGINT}},
	}
	for _, ph := range phases {
		for _, sg := range sigs {
			t.Run(ph.name+"/"+sg.name, func(t *testing.T) {
				f := newFaultEnv(t, true, 600)
				if ph.setup != nil {
					ph.setup(t, f)
				}
				if ph.name != "build" {
					// The kernel must be there already: build it once, quickly.
					if code, out := f.run(t, "FAKEMAKE_SLEEP=0", "FAKEQEMU_SCRIPT="+writeScript(t, f, guestScript(false))); code != 0 {
						t.Fatalf("warm-up run: exit %d\n%s", code, out)
					}
				}
				var out lineWatch
				cmd := f.command()
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer cmd.Process.Kill()
				ready := ph.ready
				if ph.name == "initramfs" {
					ready = "build: cached kernel" // then the image build starts
				}
				waitFor(t, 3*time.Minute, ready, func() bool { return out.has(ready) })
				if ph.name == "initramfs" {
					waitFor(t, time.Minute, "u-root's go build", func() bool { return anyProcess(f, "go build") || anyProcess(f, "compile") })
				}
				if ph.name == "boot" {
					waitFor(t, time.Minute, "the stand-in QEMU", func() bool { return anyProcess(f, "qemu-system-x86_64") })
				}
				for i, s := range sg.sig {
					if i > 0 {
						time.Sleep(50 * time.Millisecond)
					}
					cmd.Process.Signal(s)
				}
				err := cmd.Wait()
				ee, _ := err.(*exec.ExitError)
				if ee == nil || ee.ExitCode() != 130 {
					t.Errorf("exit %v, want 130\n%s", err, out.String())
				}
				time.Sleep(5 * time.Second)
				if s := f.survivors(-1); len(s) > 0 {
					t.Errorf("still running 5 s after kharness exited:\n%s", strings.Join(s, "\n"))
				}
				r := latestRun(t, f.results)
				if r.Outcome != outcome.Interrupted || r.ExitCode != 130 {
					t.Errorf("results.json: outcome %s exit %d, want interrupted 130", r.Outcome, r.ExitCode)
				}
				if b, err := os.ReadFile(filepath.Join(f.results, "latest", "events.jsonl")); err != nil || len(b) == 0 {
					t.Errorf("events.jsonl lost: %v", err)
				}
			})
		}
	}
}

func writeScript(t *testing.T, f *faultEnv, s string) string {
	p := filepath.Join(f.dir, fmt.Sprintf("guest-%d.script", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func anyProcess(f *faultEnv, what string) bool {
	for _, s := range f.survivors(-1) {
		if strings.Contains(s, what) {
			return true
		}
	}
	// go build's children do not name the test's directory; the image's
	// temp dir does (the initramfs cache is under it).
	if what == "go build" || what == "compile" {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if bytes.Contains(b, []byte(f.cache)) {
				return true
			}
		}
	}
	return false
}

// TestE2EFaultSIGKILL: kharness killed with SIGKILL during the build and
// during the boot. make, its compiler and QEMU die within 5 s; the next run
// finds the dead run and marks it interrupted, and uses no half entry.
func TestE2EFaultSIGKILL(t *testing.T) {
	for _, phase := range []string{"build", "boot"} {
		t.Run(phase, func(t *testing.T) {
			f := newFaultEnv(t, true, 600)
			if phase == "boot" {
				if code, out := f.run(t, "FAKEMAKE_SLEEP=0", "FAKEQEMU_SCRIPT="+writeScript(t, f, guestScript(false))); code != 0 {
					t.Fatalf("warm-up run: exit %d\n%s", code, out)
				}
			}
			var out lineWatch
			cmd := f.command()
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := map[string]string{"build": "cc1", "boot": "qemu-system-x86_64"}[phase]
			waitFor(t, 3*time.Minute, ready, func() bool { return anyProcess(f, ready) })
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			killed := latestRun(t, f.results)
			if killed.Outcome != outcome.Incomplete || killed.ExitCode == 0 {
				t.Errorf("a killed run's results.json says %s exit %d, want incomplete and non-zero", killed.Outcome, killed.ExitCode)
			}
			waitFor(t, 5*time.Second, "no make, cc1 or QEMU left", func() bool { return len(f.survivors(-1)) == 0 })
			// The next run: detects the dead one, rebuilds (no half entry).
			builds := f.makeCalls("bzImage")
			code, o := f.run(t, "FAKEMAKE_SLEEP=0", "FAKEQEMU_SCRIPT="+writeScript(t, f, guestScript(false)))
			if code != 0 {
				t.Fatalf("next run: exit %d\n%s", code, o)
			}
			if !strings.Contains(o, "never finished (its kharness was killed): marked interrupted") {
				t.Errorf("the next run did not report the dead run:\n%s", o)
			}
			old, err := results.Load(filepath.Join(f.results, killed.ID, "results.json"))
			if err != nil || old.Outcome != outcome.Interrupted {
				t.Errorf("dead run now says %v (%v), want interrupted", old, err)
			}
			if phase == "build" && f.makeCalls("bzImage") != builds+1 {
				t.Errorf("the half-built kernel was not rebuilt (%d builds before, %d after)", builds, f.makeCalls("bzImage"))
			}
		})
	}
}

// TestE2EFaultSharedCache: two runs that want the same kernel at the same
// time both pass, and make builds it once.
func TestE2EFaultSharedCache(t *testing.T) {
	f := newFaultEnv(t, false, 3)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	outs := make([]string, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := f.command(fmt.Sprintf("KHARNESS_E2E_RUN=%d", i))
			// Distinct results roots: two runs in one second get distinct ids anyway.
			b, err := cmd.CombinedOutput()
			outs[i] = string(b)
			if ee, ok := err.(*exec.ExitError); ok {
				codes[i] = ee.ExitCode()
			}
		}()
		time.Sleep(300 * time.Millisecond)
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Errorf("run %d: exit %d\n%s", i, c, outs[i])
		}
	}
	if n := f.makeCalls("bzImage"); n != 1 {
		t.Errorf("make bzImage ran %d times, want once", n)
	}
}

// TestE2EFaultCorruptCache: a truncated bzImage or initramfs in the cache
// is found on the next run and rebuilt, with a note; never booted.
func TestE2EFaultCorruptCache(t *testing.T) {
	f := newFaultEnv(t, false, 0)
	if code, out := f.run(t); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	imgs, _ := filepath.Glob(filepath.Join(f.cache, "kernels", "*", "bzImage"))
	if len(imgs) != 1 {
		t.Fatalf("kernel entries: %v", imgs)
	}
	os.Truncate(imgs[0], 100)
	code, out := f.run(t)
	if code != 0 {
		t.Fatalf("run after truncation: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "failed verification") || f.makeCalls("bzImage") != 2 {
		t.Errorf("a truncated kernel was not detected and rebuilt (builds: %d):\n%s", f.makeCalls("bzImage"), out)
	}
	r := latestRun(t, f.results)
	if len(r.Cells) != 1 || len(r.Cells[0].Notes) == 0 || !strings.Contains(strings.Join(r.Cells[0].Notes, "\n"), "rebuilt") {
		t.Errorf("the repair is not noted in results.json: %+v", r.Cells[0].Notes)
	}
}

// TestE2EFaultDiskFull: make failing for lack of space is the host's
// fault (infra-error, exit 9), and so is a results directory that fills.
func TestE2EFaultDiskFull(t *testing.T) {
	f := newFaultEnv(t, false, 0)
	code, out := f.run(t, "FAKEMAKE_ENOSPC=1")
	if code != outcome.Infra.ExitCode() || !strings.Contains(out, "No space left on device") {
		t.Errorf("make out of space: exit %d, want %d\n%s", code, outcome.Infra.ExitCode(), out)
	}
	r := latestRun(t, f.results)
	if r.Cells[0].Outcome != outcome.Infra {
		t.Errorf("cell outcome %s, want infra-error", r.Cells[0].Outcome)
	}
	// A results directory on a file system that fills up mid-run.
	if os.Getuid() != 0 {
		t.Fatal("the full-results row mounts a small tmpfs and needs root")
	}
	small := filepath.Join(f.dir, "small")
	os.MkdirAll(small, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", small).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", small).Run()
	// Fill it to a few KiB of room: results.json fits, the events do not.
	fill, _ := os.Create(filepath.Join(small, "fill"))
	fill.Write(make([]byte, 36<<10))
	fill.Close()
	cmd := exec.Command(bin, "run", "-c", f.cfg, "--results", small)
	cmd.Env = f.env
	b, err := cmd.CombinedOutput()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != outcome.Infra.ExitCode() {
		t.Errorf("results on a full disk: %v, want exit %d\n%s", err, outcome.Infra.ExitCode(), b)
	}
}
