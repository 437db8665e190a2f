// Package target describes the machines kharness builds and boots for. Each
// target is one declarative record, as in KUnit's qemu_configs: everything
// that differs between i386 HIGHMEM and x86_64 lives here and nowhere else.
package target

import (
	"fmt"
	"sort"
	"strings"
)

// Target is one kernel + QEMU combination.
type Target struct {
	Name string
	// Kernel build.
	Arch       string // make ARCH=
	BaseConfig string // make target giving the starting .config: tinyconfig or defconfig
	Image      string // path of the bootable image inside the build dir
	// Guest user space.
	GOARCH string
	// QEMU.
	QEMU      string   // binary
	Machine   string   // -machine
	CPU       string   // -cpu under TCG
	KVMCPU    string   // -cpu under KVM
	MemoryMB  int      // -m; i386 needs > 896 MiB or highmem is never used
	CPUs      int      // -smp
	Cmdline   []string // kernel args every boot gets
	ExtraArgs []string // more QEMU args
	// EventPort is the guest's device for the agent's events: the second
	// serial port (the console is the first).
	EventPort string
}

// common kernel arguments: panic=-1 makes a panic reboot at once and QEMU's
// -no-reboot turns that into an exit, so a crash never looks like a hang.
var commonCmdline = []string{
	"console=ttyS0,115200", "panic=-1", "oops=panic", "8250.nr_uarts=2",
	"printk.devkmsg=on", "hung_task_panic=0", "nokaslr",
}

// Builtin returns the built-in targets by name.
func Builtin() map[string]Target {
	return map[string]Target{
		"i386-highmem": {
			Name: "i386-highmem", Arch: "i386", BaseConfig: "tinyconfig",
			Image: "arch/x86/boot/bzImage", GOARCH: "386",
			QEMU: "qemu-system-i386", Machine: "pc", KVMCPU: "host",
			// TCG's "max" CPU says AuthenticAMD, and 32-bit kernels WARN at boot
			// that such an "AMD" combination is not suitable for SMP.
			CPU:      "max,vendor=GenuineIntel",
			MemoryMB: 2048, CPUs: 2, Cmdline: commonCmdline, EventPort: "ttyS1",
		},
		"x86_64": {
			Name: "x86_64", Arch: "x86_64", BaseConfig: "tinyconfig",
			Image: "arch/x86/boot/bzImage", GOARCH: "amd64",
			QEMU: "qemu-system-x86_64", Machine: "pc", CPU: "max", KVMCPU: "host",
			MemoryMB: 1024, CPUs: 2, Cmdline: commonCmdline, EventPort: "ttyS1",
		},
	}
}

// Names lists the built-in target names, sorted.
func Names() []string {
	var n []string
	for k := range Builtin() {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Lookup finds a built-in target.
func Lookup(name string) (Target, error) {
	t, ok := Builtin()[name]
	if !ok {
		return Target{}, fmt.Errorf("unknown target %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return t, nil
}
