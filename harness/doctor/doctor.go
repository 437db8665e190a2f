// Package doctor checks that the host has every tool the pipeline calls
// and names the Debian package for each missing one, so a fresh machine
// is one `kharness doctor --install` away from a run.
package doctor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/kharness/kharness/harness/internal/proc"
)

// Check is one requirement.
type Check struct {
	What    string
	Package string // Debian package providing it
	Stage   string // which stage needs it
	probe   func() bool
}

func cmd(name string) func() bool {
	return func() bool { _, err := exec.LookPath(name); return err == nil }
}

func file(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

// Checks lists the requirements for a source package (e.g.
// linux-source-6.12); empty skips the source check.
func Checks(sourcePkg string) []Check {
	cs := []Check{
		{"git", "git", "source/patch", cmd("git")},
		{"tar", "tar", "source", cmd("tar")},
		{"xz", "xz-utils", "source", cmd("xz")},
		{"make", "make", "kconfig/build", cmd("make")},
		{"gcc", "build-essential", "kconfig/build", cmd("gcc")},
		{"flex", "flex", "kconfig", cmd("flex")},
		{"bison", "bison", "kconfig", cmd("bison")},
		{"bc", "bc", "build", cmd("bc")},
		{"perl", "perl", "build", cmd("perl")},
		{"libelf headers (gelf.h)", "libelf-dev", "build", file("/usr/include/gelf.h")},
		{"OpenSSL headers", "libssl-dev", "build", file("/usr/include/openssl/ssl.h")},
		{"cpio", "cpio", "build", cmd("cpio")},
		{"ccache", "ccache", "build", cmd("ccache")},
		{"qemu-system-i386", "qemu-system-x86", "boot", cmd("qemu-system-i386")},
		{"qemu-system-x86_64", "qemu-system-x86", "boot", cmd("qemu-system-x86_64")},
		{"go toolchain", "golang-go (or Go from go.dev)", "initramfs", cmd("go")},
	}
	if sourcePkg != "" {
		cs = append(cs, Check{"/usr/src/" + sourcePkg + ".tar.xz", sourcePkg, "source", file("/usr/src/" + sourcePkg + ".tar.xz")})
	}
	return cs
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

// Packages returns the apt packages for missing checks (Go excluded when
// it is not a plain package name).
func Packages(missing []Check) []string {
	set := map[string]bool{}
	for _, c := range missing {
		if !strings.Contains(c.Package, " ") {
			set[c.Package] = true
		}
	}
	var out []string
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
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
		fmt.Fprintf(w, "\ninstall with: apt-get update && apt-get install -y %s\n", strings.Join(Packages(missing), " "))
	}
	return missing
}

// Install installs the packages with apt-get.
func Install(ctx context.Context, w io.Writer, pkgs []string) error {
	if len(pkgs) == 0 {
		return nil
	}
	if _, err := proc.Run(ctx, proc.Cmd{Name: "apt-get", Args: []string{"update", "-q"}, Log: w}); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
	if _, err := proc.Run(ctx, proc.Cmd{Name: "apt-get", Args: args, Log: w, Env: []string{"DEBIAN_FRONTEND=noninteractive"}}); err != nil {
		return fmt.Errorf("apt-get install: %w", err)
	}
	return nil
}
