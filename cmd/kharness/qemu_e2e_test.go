//go:build e2e

package main

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/target"
)

// TestE2EHostQEMUFlags boots the i386 kernel under TCG with an init that
// runs Go's 386 Xadd64 sequence (ADD, ADC, LOCK CMPXCHG8B) ten million
// times and checks EFLAGS after each. QEMU 7.2 fails it (13 and 14 bad
// flag words in two runs here: EFLAGS = 0xffffffff, the ADC operand;
// 10.0.2: 0), and a guest
// on such a QEMU gets SIGILLs (vm86 mode after the next interrupt) and
// backwards string copies in every Go program: kharness doctor wants
// QEMU >= 10.0. Runs after TestE2EDefaultMatrix (same kernel, cached).
func TestE2EHostQEMUFlags(t *testing.T) {
	tg, _ := target.Lookup("i386-highmem")
	img := kernels(t, "all")["i386-highmem"]
	if img == "" {
		t.Fatal("no i386-highmem kernel")
	}
	initrd := bareInitramfs(t, tg.GOARCH, "cx8probe")
	s := boot.Spec{Target: tg, Kernel: img, Initrd: initrd, Accel: boot.TCG}
	out, err := exec.Command(tg.QEMU, boot.Args(s, "stdio", "null")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", tg.QEMU, err, tail(string(out), 2000))
	}
	m := regexp.MustCompile(`cx8probe: (\d+) of (\d+) bad EFLAGS after LOCK CMPXCHG8B \(first (0x[0-9a-f]+)\)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no cx8probe result on the console:\n%s", tail(string(out), 2000))
	}
	ver, _ := exec.Command(tg.QEMU, "--version").Output()
	if bad, _ := strconv.Atoi(m[1]); bad != 0 {
		t.Errorf("%s of %s LOCK CMPXCHG8B left bad EFLAGS (first %s) under %s: this QEMU corrupts i386 guests", m[1], m[2], m[3], firstLine(string(ver)))
	}
	t.Logf("%s: %s of %s bad", firstLine(string(ver)), m[1], m[2])
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
