// Command cx8probe is the init of TestE2EHostQEMUFlags: it runs the
// instruction sequence of Go's 386 atomic.Xadd64 (ADD, ADC, LOCK
// CMPXCHG8B) with the deltas the runtime uses when it frees stacks, reads
// EFLAGS right after, and prints how often a flag outside the defined
// ones was set. QEMU 7.2's TCG now and then leaves EFLAGS equal to the ADC
// operand there (0xffffffff for a negative delta), which sends the next
// interrupt return to vm86 mode.
package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// definedFlags are CF PF AF ZF SF TF IF DF OF and the always-one bit 1.
const definedFlags = 0x0ed7

func main() {
	const n = 10_000_000
	var x [2]uint64
	deltas := []int64{-8192, -32768, -1, 1, 8192, 1 << 33}
	bad := 0
	var first uint32
	for i := 0; i < n; i++ {
		d := deltas[i%len(deltas)]
		if f := xadd64Flags(&x[0], uint32(d), uint32(uint64(d)>>32)); f&^definedFlags != 0 {
			if bad == 0 {
				first = f
			}
			bad++
		}
	}
	// An initramfs without /dev/console starts init with no stdout.
	out := os.Stdout
	if unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "") == nil {
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
			out = f
		}
	}
	fmt.Fprintf(out, "cx8probe: %d of %d bad EFLAGS after LOCK CMPXCHG8B (first %#x)\n", bad, n, first)
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
