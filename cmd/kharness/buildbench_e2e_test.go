//go:build e2e

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/build"
)

// benchEdit is the one-file change of the incremental measurement: a
// comment in lib/test_kmap_local.c, made through the kmap-local patch
// (for kharness) and in the file itself (for plain make).
const (
	benchPatch   = "kmap-local/0001-lib-add-a-kmap_local_page-test-driver-driven-through.patch"
	benchFile    = "lib/test_kmap_local.c"
	benchOld     = "/* See the table above for the details. */"
	benchNew     = "/* See the table above for the details (make bench). */"
	benchTarget  = "x86_64"
	benchArch    = "x86_64"
	benchStackID = "default." + benchTarget
)

// BenchmarkBuild measures the harness's kernel build against plain make
// on the same tree and .config, in one run: cold (a fresh cache: empty
// ccache, no build directory) and incremental (one comment changed in
// one file of one patch). Plain make gets a copy of the tree kharness
// checked out, the kernel's own .config and the same -j. It reports the
// seconds of each and the ratios (goals: cold <= 1.05, incremental <= 1.2).
// It takes a fresh cache of its own (~5 GB under $TMPDIR) and about
// 20 minutes here; run it alone (make bench).
func BenchmarkBuild(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measurement per run: -benchtime 1x")
	}
	root, _ := filepath.Abs("../..")
	tmp := b.TempDir()
	patches := filepath.Join(tmp, "patches")
	if out, err := exec.Command("cp", "-a", filepath.Join(root, "patches"), patches).CombinedOutput(); err != nil {
		b.Fatalf("copy patches: %v %s", err, out)
	}
	cache := filepath.Join(tmp, "cache")
	cfg := filepath.Join(tmp, "kharness.yaml")
	y := fmt.Sprintf("targets: [%s]\nresults: %s\ncache: %s\ndirs:\n  patches: %s\n  kconfigs: %s\n  suites: %s\n  module: %s\n",
		benchTarget, filepath.Join(tmp, "results"), cache, patches, filepath.Join(root, "kconfigs"), filepath.Join(root, "suites"), root)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		b.Fatal(err)
	}
	harness := func(what string) (stages map[string]float64, image, config string) {
		out, err := exec.Command(bin, "build", "-c", cfg).Output()
		if err != nil {
			b.Fatalf("kharness build (%s): %v", what, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Split(l, "\t")
			if len(f) < 4 || f[0] != benchStackID {
				continue
			}
			stages = map[string]float64{}
			for _, kv := range strings.Split(f[3], ",") {
				k, v, _ := strings.Cut(kv, "=")
				stages[k], _ = strconv.ParseFloat(v, 64)
			}
			return stages, f[1], f[2]
		}
		b.Fatalf("kharness build (%s): no line for %s in %q", what, benchStackID, out)
		return
	}
	// Cold: the source import is not the build's; it is reported apart.
	cold, _, config := harness("cold")
	if cold["build"] == 0 {
		b.Fatalf("cold build took no time: %v (cached?)", cold)
	}
	// Plain make: a copy of the work tree kharness left at the stack.
	trees, _ := filepath.Glob(filepath.Join(cache, "trees", "*"))
	var tree string
	for _, t := range trees {
		if fi, err := os.Stat(t); err == nil && fi.IsDir() && !strings.HasSuffix(t, ".lock") {
			tree = t
		}
	}
	if tree == "" {
		b.Fatal("no work tree in the bench's cache")
	}
	plain := filepath.Join(tmp, "plain")
	// Only the tracked sources: no build dirs, no .git.
	sh := fmt.Sprintf("mkdir -p %[2]s && git -C %[1]s ls-files -z | (cd %[1]s && xargs -0 cp --parents -t %[2]s)", tree, plain)
	if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
		b.Fatalf("copy the tree: %v %s", err, out)
	}
	obj := filepath.Join(tmp, "plain-out")
	os.MkdirAll(obj, 0o755)
	cfgData, err := os.ReadFile(config)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(obj, ".config"), cfgData, 0o644)
	jobs := strconv.Itoa(build.Jobs())
	makePlain := func(args ...string) float64 {
		start := time.Now()
		cmd := exec.Command("make", append([]string{"-C", plain, "O=" + obj, "ARCH=" + benchArch, "-j" + jobs}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("plain make %v: %v\n%s", args, err, tail(string(out), 30))
		}
		return time.Since(start).Seconds()
	}
	plainCfg := makePlain("olddefconfig")
	plainCold := makePlain("bzImage")
	// Incremental: the same one-line change both ways.
	pp := filepath.Join(patches, benchPatch)
	pb, err := os.ReadFile(pp)
	if err != nil || !strings.Contains(string(pb), "+"+benchOld) {
		b.Fatalf("%s lacks %q: %v", pp, benchOld, err)
	}
	os.WriteFile(pp, []byte(strings.Replace(string(pb), "+"+benchOld, "+"+benchNew, 1)), 0o644)
	inc, _, _ := harness("incremental")
	src := filepath.Join(plain, benchFile)
	sb, _ := os.ReadFile(src)
	if !strings.Contains(string(sb), benchOld) {
		b.Fatalf("%s lacks %q", src, benchOld)
	}
	os.WriteFile(src, []byte(strings.Replace(string(sb), benchOld, benchNew, 1)), 0o644)
	plainInc := makePlain("bzImage")

	harnessCold := cold["patch"] + cold["kconfig"] + cold["build"]
	harnessInc := inc["patch"] + inc["kconfig"] + inc["build"]
	b.ReportMetric(cold["source"], "s/source-import")
	b.ReportMetric(harnessCold, "s/harness-cold")
	b.ReportMetric(plainCfg+plainCold, "s/plain-cold")
	b.ReportMetric(harnessCold/(plainCfg+plainCold), "cold-ratio")
	b.ReportMetric(harnessInc, "s/harness-incremental")
	b.ReportMetric(plainInc, "s/plain-incremental")
	b.ReportMetric(harnessInc/plainInc, "incremental-ratio")
	b.Logf("cold: harness %.1fs (patch %.1f, kconfig %.1f, build %.1f) vs plain %.1fs (olddefconfig %.1f, make %.1f): %.2fx; "+
		"incremental: harness %.1fs (patch %.1f, kconfig %.1f, build %.1f) vs plain make %.1fs: %.2fx",
		harnessCold, cold["patch"], cold["kconfig"], cold["build"], plainCfg+plainCold, plainCfg, plainCold, harnessCold/(plainCfg+plainCold),
		harnessInc, inc["patch"], inc["kconfig"], inc["build"], plainInc, harnessInc/plainInc)
}
