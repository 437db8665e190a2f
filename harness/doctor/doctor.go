// Package doctor checks that the host has every tool the pipeline calls
// and names the Debian package for each missing one, so a fresh machine
// is one `kharness doctor --install` away from a run.
package doctor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kharness/kharness/harness/internal/proc"
	"github.com/kharness/kharness/harness/target"
)

// Check is one requirement.
type Check struct {
	What    string
	Package string // Debian package providing it
	Stage   string // which stage needs it
	probe   func() bool
	// Release is the apt release to take Package from when the host's
	// default one is too old ("" for the default).
	Release string
}

func cmd(name string) func() bool {
	return func() bool { _, err := exec.LookPath(name); return err == nil }
}

func file(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

// gccM32 says whether gcc links a static 32-bit program: the i386
// selftests need gcc-multilib (libgcc for -m32) and libc6-dev-i386. Asking
// gcc for its -m32 libgcc is not enough: without multilib it names the
// 64-bit one.
func gccM32() bool {
	dir, err := os.MkdirTemp("", "kharness-m32-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("gcc", "-m32", "-static", "-x", "c", "-", "-o", filepath.Join(dir, "a.out"))
	cmd.Stdin = strings.NewReader("int main(void) { return 0; }\n")
	return cmd.Run() == nil
}

// Checks lists the requirements for a source package (e.g.
// linux-source-6.12); empty skips the source check.
func Checks(sourcePkg string) []Check {
	cs := []Check{
		{"git", "git", "source/patch", cmd("git"), ""},
		{"tar", "tar", "source", cmd("tar"), ""},
		{"xz", "xz-utils", "source", cmd("xz"), ""},
		{"make", "make", "kconfig/build", cmd("make"), ""},
		{"gcc", "build-essential", "kconfig/build", cmd("gcc"), ""},
		{"flex", "flex", "kconfig", cmd("flex"), ""},
		{"bison", "bison", "kconfig", cmd("bison"), ""},
		{"bc", "bc", "build", cmd("bc"), ""},
		{"perl", "perl", "build", cmd("perl"), ""},
		{"libelf headers (gelf.h)", "libelf-dev", "build", file("/usr/include/gelf.h"), ""},
		{"OpenSSL headers", "libssl-dev", "build", file("/usr/include/openssl/ssl.h"), ""},
		{"cpio", "cpio", "build", cmd("cpio"), ""},
		{"ccache", "ccache", "build", cmd("ccache"), ""},
		{"go toolchain", "golang-go (or Go from go.dev)", "initramfs", cmd("go"), ""},
		{"gdb", "gdb", "boot --gdb", cmd("gdb"), ""},
		// The kernel's selftests, built static for each target.
		{"rsync", "rsync", "kselftests (headers_install)", cmd("rsync"), ""},
		{"32-bit libc (static)", "libc6-dev-i386", "kselftests (i386)", file("/usr/lib32/libc.a"), ""},
		{"gcc -m32 support", "gcc-multilib", "kselftests (i386)", gccM32, ""},
		{"liburing (static)", "liburing-dev", "kselftests (x86_64 cow)", file("/usr/lib/x86_64-linux-gnu/liburing.a"), ""},
		// The nightly report's tests load it in a real headless browser.
		{"chromium", "chromium", "report tests", cmd("chromium"), ""},
	}
	// Each target's QEMU, at the version its record asks for (i386 guests
	// need QEMU >= 10: see target.Target.QEMUMin), from Debian 12's
	// backports where the default release is too old.
	for _, t := range target.QEMUs() {
		if v := t.QEMUMin; v.Major > 0 {
			cs = append(cs, Check{fmt.Sprintf("%s >= %d.%d", t.QEMU, v.Major, v.Minor), t.QEMUPackage, "boot: " + v.Why,
				qemuAtLeast(t.QEMU, v.Major, v.Minor), backports(osCodename())})
		} else {
			cs = append(cs, Check{t.QEMU, t.QEMUPackage, "boot", cmd(t.QEMU), ""})
		}
	}
	if sourcePkg != "" {
		cs = append(cs, Check{"/usr/src/" + sourcePkg + ".tar.xz", sourcePkg, "source", file("/usr/src/" + sourcePkg + ".tar.xz"), ""})
	}
	return cs
}

// qemuAtLeast reports whether name runs and says it is version
// major.minor or later.
func qemuAtLeast(name string, major, minor int) func() bool {
	return func() bool {
		out, err := exec.Command(name, "--version").Output()
		if err != nil {
			return false
		}
		ma, mi, err := ParseQEMUVersion(string(out))
		return err == nil && (ma > major || ma == major && mi >= minor)
	}
}

var qemuVersionRE = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)`)

// ParseQEMUVersion reads major and minor from `qemu-system-* --version`.
func ParseQEMUVersion(out string) (major, minor int, err error) {
	m := qemuVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no \"QEMU emulator version\" in %q", strings.TrimSpace(out))
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	return major, minor, nil
}

// osCodename is VERSION_CODENAME from /etc/os-release ("" if unknown).
func osCodename() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// backports is where Debian 12 gets a QEMU that is new enough; later
// releases have one in their default release.
func backports(codename string) string {
	if codename == "bookworm" {
		return "bookworm-backports"
	}
	return ""
}

// Missing runs the checks and returns the failed ones.
func Missing(cs []Check) []Check {
	var out []Check
	for _, c := range cs {
		if !c.probe() {
			out = append(out, c)
		}
	}
	return out
}

// Packages returns the apt packages for missing checks by release ("" is
// the default release); Go is left out when it is not a plain package
// name. A package wanted from a named release is installed from there
// only.
func Packages(missing []Check) map[string][]string {
	rel := map[string]string{}
	for _, c := range missing {
		if strings.Contains(c.Package, " ") {
			continue
		}
		if r, seen := rel[c.Package]; !seen || r == "" {
			rel[c.Package] = c.Release
		}
	}
	out := map[string][]string{}
	for p, r := range rel {
		out[r] = append(out[r], p)
	}
	for _, ps := range out {
		sort.Strings(ps)
	}
	return out
}

// releases are the keys of pkgs in order (the default release first).
func releases(pkgs map[string][]string) []string {
	var rels []string
	for r := range pkgs {
		rels = append(rels, r)
	}
	sort.Strings(rels)
	return rels
}

// installCommand is the shell line Report suggests.
func installCommand(pkgs map[string][]string) string {
	parts := []string{"apt-get update"}
	for _, r := range releases(pkgs) {
		if r == "" {
			parts = append(parts, "apt-get install -y "+strings.Join(pkgs[r], " "))
			continue
		}
		parts = append(parts, fmt.Sprintf("apt-get install -y -t %s %s (after adding %q to the apt sources)", r, strings.Join(pkgs[r], " "), sourcesLine(r)))
	}
	return strings.Join(parts, " && ")
}

func sourcesLine(release string) string {
	return "deb http://deb.debian.org/debian " + release + " main"
}

// Report prints every check and the apt command for what is missing.
// It returns the missing checks.
func Report(w io.Writer, cs []Check) []Check {
	missing := Missing(cs)
	miss := map[string]bool{}
	for _, m := range missing {
		miss[m.What] = true
	}
	for _, c := range cs {
		status := "ok     "
		if miss[c.What] {
			status = "MISSING"
		}
		fmt.Fprintf(w, "%s %-28s (%s; package %s)\n", status, c.What, c.Stage, c.Package)
	}
	if len(missing) > 0 {
		fmt.Fprintf(w, "\ninstall with: %s\n", installCommand(Packages(missing)))
	}
	return missing
}

// Install installs the packages with apt-get, each from its release; a
// backports release is added to the apt sources first (SourcesDir) if no
// source names it yet.
func Install(ctx context.Context, w io.Writer, pkgs map[string][]string, sourcesDir string) error {
	if len(pkgs) == 0 {
		return nil
	}
	for r := range pkgs {
		if r == "" {
			continue
		}
		if err := addSource(sourcesDir, r); err != nil {
			return err
		}
	}
	if _, err := proc.Run(ctx, proc.Cmd{Name: "apt-get", Args: []string{"update", "-q"}, Log: w}); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	for _, r := range releases(pkgs) {
		args := []string{"install", "-y", "-q", "--no-install-recommends"}
		if r != "" {
			args = append(args, "-t", r)
		}
		args = append(args, pkgs[r]...)
		if _, err := proc.Run(ctx, proc.Cmd{Name: "apt-get", Args: args, Log: w, Env: []string{"DEBIAN_FRONTEND=noninteractive"}}); err != nil {
			return fmt.Errorf("apt-get install %s: %w", strings.Join(args[4:], " "), err)
		}
	}
	return nil
}

// SourcesDir is where apt reads its extra source lists.
const SourcesDir = "/etc/apt/sources.list.d"

// addSource writes kharness-<release>.list unless a file in dir (or
// dir/../sources.list) already names the release.
func addSource(dir, release string) error {
	files, _ := os.ReadDir(dir)
	paths := []string{dir + "/../sources.list"}
	for _, f := range files {
		paths = append(paths, dir+"/"+f.Name())
	}
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), release) {
			return nil
		}
	}
	p := dir + "/kharness-" + release + ".list"
	if err := os.WriteFile(p, []byte(sourcesLine(release)+"\n"), 0o644); err != nil {
		return fmt.Errorf("add apt source for %s: %w", release, err)
	}
	return nil
}
