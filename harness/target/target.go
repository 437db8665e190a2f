// Package target describes the machines kharness builds and boots for.
// Each target is one declarative record, as in KUnit's qemu_configs: the
// kernel build (arch, base config, its fragment, make target, image), the
// guest user space (GOARCH), QEMU (binary and the oldest version that runs
// it right, machine, CPU, memory, serial ports) and the KVM probe. doctor,
// kconfig, build, boot and the agent's parameters all read it; adding a
// target is one record here and its fragment under kconfigs/target/.
package target

import (
	"fmt"
	"sort"
	"strings"
)

// Target is one kernel + QEMU combination.
type Target struct {
	Name string
	// Default targets are the ones a config without `targets:` runs.
	Default bool
	// Kernel build.
	Arch       string // make ARCH=
	BaseConfig string // make target giving the starting .config: tinyconfig or defconfig
	// Fragments are the target's kconfig fragments, relative to the
	// kconfigs directory, in order.
	Fragments  []string
	MakeTarget string // what make builds: bzImage
	Image      string // path of the bootable image inside the build dir
	// Guest user space.
	GOARCH string
	// QEMU.
	QEMU        string // binary
	QEMUPackage string // the Debian package that installs it
	// QEMUMin is the oldest QEMU that runs this target's guests right,
	// with why (doctor checks it).
	QEMUMin   Version
	Machine   string   // -machine
	CPU       string   // -cpu under TCG
	KVMCPU    string   // -cpu under KVM
	MemoryMB  int      // -m; i386 needs > 896 MiB or highmem is never used
	CPUs      int      // -smp
	Cmdline   []string // kernel args every boot gets
	ExtraArgs []string // more QEMU args
	// ConsolePort is the kernel console, EventPort the agent's events:
	// the first and second serial ports.
	ConsolePort, EventPort string
	// KVMProbe is a boot image that proves KVM runs a guest of this
	// target (see boot.ProbeKVM): it writes 'K' to the first serial port
	// and leaves through isa-debug-exit with status 99.
	KVMProbe []byte
}

// Version is a QEMU version requirement.
type Version struct {
	Major, Minor int
	Why          string
}

// pcBootSector is a 512-byte x86 boot sector that writes 'K' to COM1 and
// leaves through isa-debug-exit with status (0x31<<1)|1 = 99. If a KVM
// guest cannot even run this (the host's /dev/kvm belongs to a paravirtual
// module, -cpu host is refused, ...), it cannot run a kernel either.
func pcBootSector() []byte {
	code := []byte{
		0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xB0, 'K', // mov al, 'K'
		0xEE,       // out dx, al
		0xB0, 0x31, // mov al, 0x31
		0xE6, 0xF4, // out 0xf4, al
		0xF4,       // hlt
		0xEB, 0xFE, // jmp $
	}
	img := make([]byte, 512)
	copy(img, code)
	img[510], img[511] = 0x55, 0xAA
	return img
}

// commonCmdline: panic=-1 makes a panic reboot at once and QEMU's
// -no-reboot turns that into an exit, so a crash never looks like a hang.
func commonCmdline(console string) []string {
	return []string{
		"console=" + console + ",115200", "panic=-1", "oops=panic", "8250.nr_uarts=2",
		"printk.devkmsg=on", "hung_task_panic=0", "nokaslr",
	}
}

// qemu10 is what i386 guests need: QEMU 7.2 (Debian 12's) mistranslates
// LOCK CMPXCHG8B after ADD/ADC under TCG, now and then leaving EFLAGS =
// the ADC operand (13 and 14 in two runs of 10,000,000 Go-style Xadd64
// calls; 10.0.2: 0). Go's 386 runtime does that on every stack free; the
// next interrupt returns to vm86 mode (SIGILL) and DF=1 makes REP MOVS
// copy backwards.
var qemu10 = Version{10, 0, "QEMU 7.2's TCG corrupts i386 EFLAGS after LOCK CMPXCHG8B (TestE2EHostQEMUFlags)"}

// Builtin returns the built-in targets by name.
func Builtin() map[string]Target {
	pc := func(t Target) Target {
		t.Arch, t.MakeTarget, t.Image = map[string]string{"386": "i386", "amd64": "x86_64"}[t.GOARCH], "bzImage", "arch/x86/boot/bzImage"
		t.QEMUPackage, t.Machine, t.KVMCPU, t.CPUs = "qemu-system-x86", "pc", "host", 2
		t.ConsolePort, t.EventPort = "ttyS0", "ttyS1"
		t.Cmdline = commonCmdline(t.ConsolePort)
		if t.Fragments == nil {
			t.Fragments = []string{"target/" + t.Name + ".config"}
		}
		t.KVMProbe = pcBootSector()
		if t.BaseConfig == "" {
			t.BaseConfig = "tinyconfig"
		}
		return t
	}
	return map[string]Target{
		"i386-highmem": pc(Target{
			Name: "i386-highmem", Default: true, GOARCH: "386",
			QEMU: "qemu-system-i386", QEMUMin: qemu10,
			// TCG's "max" CPU says AuthenticAMD, and 32-bit kernels WARN at
			// boot that such an "AMD" combination is not suitable for SMP.
			CPU:      "max,vendor=GenuineIntel",
			MemoryMB: 2048,
		}),
		"x86_64": pc(Target{
			Name: "x86_64", Default: true, GOARCH: "amd64",
			QEMU: "qemu-system-x86_64", CPU: "max", MemoryMB: 1024,
		}),
		// The x86_64 kernel with the kernel's own bug detectors on: KASAN,
		// lockdep, DEBUG_PAGEALLOC and friends (kconfigs/target/debug.config).
		// Several times slower; not in the default matrix.
		"x86_64-debug": pc(Target{
			Name: "x86_64-debug", GOARCH: "amd64", Fragments: []string{"target/x86_64.config", "target/debug.config"},
			QEMU: "qemu-system-x86_64", CPU: "max", MemoryMB: 2048,
		}),
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

// Defaults lists the targets a config without `targets:` runs, sorted.
func Defaults() []string {
	var n []string
	for k, t := range Builtin() {
		if t.Default {
			n = append(n, k)
		}
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

// QEMUs lists each QEMU binary the targets use with the strictest
// version any of them needs.
func QEMUs() []Target {
	seen := map[string]Target{}
	for _, name := range Names() {
		t := Builtin()[name]
		prev, ok := seen[t.QEMU]
		if !ok || t.QEMUMin.Major > prev.QEMUMin.Major || (t.QEMUMin.Major == prev.QEMUMin.Major && t.QEMUMin.Minor > prev.QEMUMin.Minor) {
			seen[t.QEMU] = t
		}
	}
	var out []Target
	for _, t := range seen {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].QEMU < out[j].QEMU })
	return out
}
