package doctor

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestReportNamesPackages(t *testing.T) {
	cs := []Check{
		{"git", "git", "source", func() bool { return true }},
		{"qemu-system-i386", "qemu-system-x86", "boot", func() bool { return false }},
		{"qemu-system-x86_64", "qemu-system-x86", "boot", func() bool { return false }},
		{"go toolchain", "golang-go (or Go from go.dev)", "initramfs", func() bool { return false }},
	}
	var out bytes.Buffer
	missing := Report(&out, cs)
	if len(missing) != 3 {
		t.Fatalf("missing = %v", missing)
	}
	if got := Packages(missing); !reflect.DeepEqual(got, []string{"qemu-system-x86"}) {
		t.Errorf("packages = %v", got)
	}
	for _, w := range []string{"MISSING qemu-system-i386", "ok      git", "apt-get install -y qemu-system-x86"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, out.String())
		}
	}
}

func TestChecksCoverEveryStage(t *testing.T) {
	stages := map[string]bool{}
	for _, c := range Checks("linux-source-6.12") {
		stages[c.Stage] = true
	}
	for _, s := range []string{"source", "kconfig", "build", "boot", "initramfs"} {
		found := false
		for k := range stages {
			if strings.Contains(k, s) {
				found = true
			}
		}
		if !found {
			t.Errorf("no check for stage %s", s)
		}
	}
}
