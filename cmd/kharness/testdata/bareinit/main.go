// Command bareinit is the trivial static init of the boot-overhead
// benchmark: it prints one line and reboots (QEMU -no-reboot exits).
package main

import (
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	os.Stdout.WriteString("bareinit: up\n")
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
