package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// piggyS is the piggy.S mkpiggy wrote for an x86_64 6.12 build here (the
// sizes of the payload cut down to the test's).
const piggyS = `.section ".rodata..compressed","a",@progbits
.globl z_input_len
z_input_len = 16
.globl input_data, input_data_end
input_data:
.incbin "arch/x86/boot/compressed/vmlinux.bin.xz"
input_data_end:
`

// TestCheckPayload assembles a real piggy.o with gcc and checks it
// against the payload it was made from, and against another one of the
// same size (what a stale ccache hit looks like: same piggy.S text).
func TestCheckPayload(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	tests := []struct {
		name    string
		after   string // the payload once piggy.o is made; "" = unchanged
		noPiggy bool
		wantErr string
	}{
		{name: "payload built in", wantErr: ""},
		{name: "another build's payload of the same size", after: "BBBBBBBBBBBBBBBB", wantErr: "carries another build's kernel"},
		{name: "another arch: no piggy.o", noPiggy: true, wantErr: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			build := t.TempDir()
			dir := filepath.Join(build, "arch/x86/boot/compressed")
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "vmlinux.bin.xz"), []byte("AAAAAAAAAAAAAAAA"), 0o644)
			if !tc.noPiggy {
				os.WriteFile(filepath.Join(dir, "piggy.S"), []byte(piggyS), 0o644)
				cmd := exec.Command("gcc", "-c", "-o", "arch/x86/boot/compressed/piggy.o", "arch/x86/boot/compressed/piggy.S")
				cmd.Dir = build
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("gcc: %v\n%s", err, out)
				}
			}
			if tc.after != "" {
				os.WriteFile(filepath.Join(dir, "vmlinux.bin.xz"), []byte(tc.after), 0o644)
			}
			err := checkPayload(build)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("checkPayload = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestCCWrapper runs the wrapper with a ccache that records its calls:
// a source with .incbin must not reach it, any other must.
func TestCCWrapper(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	calls := filepath.Join(dir, "calls")
	os.WriteFile(filepath.Join(bin, "ccache"), []byte("#!/bin/sh\necho \"$@\" >> "+calls+"\nexec \"$@\"\n"), 0o755)
	cc, err := writeCCWrapper(filepath.Join(dir, "ccache-dir"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "payload"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "piggy.S"), []byte(".incbin \"payload\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "plain.c"), []byte("int plain;\n"), 0o644)
	tests := []struct {
		src       string
		viaCCache bool
	}{
		{"piggy.S", false},
		{"plain.c", true},
	}
	for _, tc := range tests {
		os.Remove(calls)
		cmd := exec.Command(cc, "-c", "-o", tc.src+".o", tc.src)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.src, err, out)
		}
		_, err := os.Stat(calls)
		if got := err == nil; got != tc.viaCCache {
			t.Errorf("%s: through ccache %v, want %v", tc.src, got, tc.viaCCache)
		}
	}
	// Rewritten only when it changed: the same path, no error, same text.
	if again, err := writeCCWrapper(filepath.Join(dir, "ccache-dir")); err != nil || again != cc {
		t.Errorf("second write: %s, %v", again, err)
	}
}
