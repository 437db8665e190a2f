package doctor

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func yes() bool { return true }
func no() bool  { return false }

func TestReportNamesPackages(t *testing.T) {
	cs := []Check{
		{"git", "git", "source", yes, ""},
		{"qemu-system-i386 >= 10.0", "qemu-system-x86", "boot", no, "bookworm-backports"},
		{"qemu-system-x86_64", "qemu-system-x86", "boot", no, ""},
		{"cpio", "cpio", "build", no, ""},
		{"go toolchain", "golang-go (or Go from go.dev)", "initramfs", no, ""},
	}
	var out bytes.Buffer
	missing := Report(&out, cs)
	if len(missing) != 4 {
		t.Fatalf("missing = %v", missing)
	}
	want := map[string][]string{"": {"cpio"}, "bookworm-backports": {"qemu-system-x86"}}
	if got := Packages(missing); !reflect.DeepEqual(got, want) {
		t.Errorf("packages = %v, want %v (a package wanted from backports comes from there only)", got, want)
	}
	for _, w := range []string{"MISSING qemu-system-i386 >= 10.0", "ok      git",
		"apt-get install -y cpio", "apt-get install -y -t bookworm-backports qemu-system-x86",
		"deb http://deb.debian.org/debian bookworm-backports main"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, out.String())
		}
	}
}

func TestParseQEMUVersion(t *testing.T) {
	for _, tc := range []struct {
		out          string
		major, minor int
		err          bool
	}{
		{"QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard", 7, 2, false},
		{"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n", 10, 0, false},
		{"QEMU emulator version 8.2.2\n", 8, 2, false},
		{"qemu-system-i386: command not found\n", 0, 0, true},
	} {
		ma, mi, err := ParseQEMUVersion(tc.out)
		if (err != nil) != tc.err || ma != tc.major || mi != tc.minor {
			t.Errorf("ParseQEMUVersion(%q) = %d.%d, %v; want %d.%d, error %v", tc.out, ma, mi, err, tc.major, tc.minor, tc.err)
		}
	}
}

func TestBackports(t *testing.T) {
	for codename, want := range map[string]string{"bookworm": "bookworm-backports", "trixie": "", "": ""} {
		if got := backports(codename); got != want {
			t.Errorf("backports(%q) = %q, want %q", codename, got, want)
		}
	}
}

// TestAddSource: the backports line is written once, and not at all when
// a sources file names the release already.
func TestAddSource(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sources.list.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sources.list"), []byte("deb http://deb.debian.org/debian bookworm main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := addSource(dir, "bookworm-backports"); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 || files[0].Name() != "kharness-bookworm-backports.list" {
		t.Fatalf("sources.list.d = %v", files)
	}
	b, _ := os.ReadFile(filepath.Join(dir, files[0].Name()))
	if string(b) != "deb http://deb.debian.org/debian bookworm-backports main\n" {
		t.Errorf("source line %q", b)
	}
	other := filepath.Join(root, "other.d")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "debian.sources"), []byte("Suites: bookworm bookworm-backports\n"), 0o644)
	if err := addSource(other, "bookworm-backports"); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(other); len(files) != 1 {
		t.Errorf("a source naming the release exists, yet addSource wrote another: %v", files)
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
