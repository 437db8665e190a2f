//go:build e2e

package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/target"
)

// kernels builds (or finds in the cache) the kernels of patchsets (""
// for the stock kernel) and returns target → bzImage.
func kernels(b testing.TB, patchsets string) map[string]string {
	cfg, _ := writeConfigB(b)
	out, err := exec.Command(bin, "build", "-c", cfg, "--patchset", patchsets).Output()
	if err != nil {
		b.Fatalf("kharness build: %v", err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			m[strings.TrimPrefix(f[0], "default.")] = f[1]
		}
	}
	return m
}

func writeConfigB(b testing.TB) (string, string) {
	root, _ := filepath.Abs("../..")
	tmp := b.TempDir()
	cfg := filepath.Join(tmp, "kharness.yaml")
	y := "results: " + filepath.Join(tmp, "results") + "\ndirs:\n  patches: " + filepath.Join(root, "patches") +
		"\n  kconfigs: " + filepath.Join(root, "kconfigs") + "\n  suites: " + filepath.Join(root, "suites") + "\n  module: " + root + "\n"
	os.WriteFile(cfg, []byte(y), 0o644)
	return cfg, filepath.Join(tmp, "results")
}

// bareInitramfs builds a cpio whose /init is the static Go program in
// testdata/<prog>; bareinit reboots at once: the floor any agent-based
// boot is compared with.
func bareInitramfs(b testing.TB, goarch, prog string) string {
	dir := b.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	cmd := exec.Command("go", "build", "-o", filepath.Join(root, "init"), "./testdata/"+prog)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s as init: %v %s", prog, err, out)
	}
	out := filepath.Join(dir, "bare.cpio")
	sh := exec.Command("sh", "-c", "cd "+root+" && (echo .; echo init; echo dev) | cpio -o -H newc > "+out)
	if o, err := sh.CombinedOutput(); err != nil {
		b.Fatalf("cpio: %v %s", err, o)
	}
	return out
}

// BenchmarkBoot compares, per target under TCG, a bare boot (kernel +
// trivial static init, QEMU start to exit) with kharness's boot (QEMU
// start to the first test result of selftest:pass).
func BenchmarkBoot(b *testing.B) {
	ks := kernels(b, "")
	for _, name := range target.Names() {
		tg, _ := target.Lookup(name)
		img := ks[name]
		if img == "" {
			b.Fatalf("no kernel for %s", name)
		}
		b.Run(name+"/bare", func(b *testing.B) {
			initrd := bareInitramfs(b, tg.GOARCH, "bareinit")
			for i := 0; i < b.N; i++ {
				s := boot.Spec{Target: tg, Kernel: img, Initrd: initrd, Accel: boot.TCG}
				start := time.Now()
				cmd := exec.Command(tg.QEMU, boot.Args(s, "null", "null")...)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("bare boot: %v %s", err, out)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/boot")
			}
		})
		b.Run(name+"/agent", func(b *testing.B) {
			var initrd string
			matches, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache/kharness/initramfs/*-"+tg.GOARCH+".cpio"))
			if k := os.Getenv("KHARNESS_CACHE"); k != "" {
				matches, _ = filepath.Glob(filepath.Join(k, "initramfs/*-"+tg.GOARCH+".cpio"))
			}
			if len(matches) == 0 {
				b.Fatalf("no cached initramfs for %s: run the e2e tests first", tg.GOARCH)
			}
			initrd = matches[len(matches)-1]
			for i := 0; i < b.N; i++ {
				s := boot.Spec{Target: tg, Kernel: img, Initrd: initrd, Accel: boot.TCG, Dir: b.TempDir(),
					Guest: guest.BootArgs{Mode: guest.ModeRun, CPUs: 2, EventPort: tg.EventPort,
						Suites: []guest.Suite{{Name: "selftest", Tests: "pass", Deadline: time.Minute}}},
					Boot: time.Minute, NoOutput: time.Minute, Overall: 2 * time.Minute}
				r, err := boot.Run(context.Background(), s, func(event.Event) {})
				if err != nil || r.FirstEvent == 0 {
					b.Fatalf("agent boot: %v %+v", err, r)
				}
				b.ReportMetric(r.FirstEvent.Seconds(), "s/first-event")
				b.ReportMetric(r.Duration.Seconds(), "s/boot")
			}
		})
	}
}
