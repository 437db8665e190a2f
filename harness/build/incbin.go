package build

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kharness/kharness/harness/outcome"
)

// ccWrapper is the compiler make runs when ccache is on. ccache cannot
// see the file an assembler .incbin pulls in, and in depend mode it does
// not even notice the directive: piggy.S (the compressed kernel inside
// bzImage), rmpiggy.S, initramfs_data.S, configs.c carry the same text for
// different payloads, and a hit hands back another build's object. Seen
// here: two mutant kernels of one CI run booted the bzImage payload of an
// earlier bisect step (its vmlinux had the mutant, its bzImage did not).
// A source naming .incbin is compiled without ccache; the rest with it.
const ccWrapper = `#!/bin/sh
# Written by kharness (harness/build/incbin.go): ccache cannot see what an
# .incbin pulls in, so a source that has one is compiled without it.
src=
for a do
	case $a in
	*.c|*.S|*.s) src=$a ;;
	esac
done
if [ -n "$src" ] && grep -qF .incbin "$src" 2>/dev/null; then
	exec gcc "$@"
fi
exec ccache gcc "$@"
`

// writeCCWrapper puts the wrapper in dir (the ccache directory) and
// returns its path; it is rewritten only when its text changed, so a
// running build never sees it half written.
func writeCCWrapper(dir string) (string, error) {
	path := filepath.Join(dir, "kharness-cc")
	if b, err := os.ReadFile(path); err == nil && string(b) == ccWrapper {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(ccWrapper), 0o755); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// checkPayload verifies that the compressed kernel inside an x86
// bzImage is the one this build made: the .rodata..compressed section of
// arch/x86/boot/compressed/piggy.o must hold vmlinux.bin.<compression>
// byte for byte. A build dir without piggy.o (another arch) is not
// checked.
func checkPayload(buildDir string) error {
	dir := filepath.Join(buildDir, "arch", "x86", "boot", "compressed")
	f, err := elf.Open(filepath.Join(dir, "piggy.o"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("piggy.o: %w", err)
	}
	defer f.Close()
	sec := f.Section(".rodata..compressed")
	if sec == nil {
		return errors.New("piggy.o has no .rodata..compressed section")
	}
	got, err := sec.Data()
	if err != nil {
		return fmt.Errorf("piggy.o: %w", err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "vmlinux.bin.*"))
	var payload string
	for _, m := range matches {
		if !strings.HasSuffix(m, ".cmd") {
			payload = m
		}
	}
	if payload == "" {
		return fmt.Errorf("no compressed vmlinux.bin.* in %s", dir)
	}
	want, err := os.ReadFile(payload)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("the bzImage carries another build's kernel: piggy.o's payload (%d bytes) is not %s (%d bytes)",
			len(got), filepath.Base(payload), len(want))
	}
	return nil
}

// payloadError is a failed payload check: the host's cache lied, not the
// code, so it is an infra error.
func payloadError(err error) error {
	return outcome.Errorf(outcome.Infra, "kernel build: %w", err)
}
