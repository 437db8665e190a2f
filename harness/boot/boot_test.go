package boot

import (
	"slices"
	"strings"
	"testing"

	"github.com/kharness/kharness/harness/target"
)

func TestArgs(t *testing.T) {
	for _, name := range target.Names() {
		tg, _ := target.Lookup(name)
		for _, accel := range []Accel{TCG, KVM} {
			s := Spec{Target: tg, Kernel: "/k/bzImage", Initrd: "/i.cpio", Accel: accel, Cmdline: []string{"kharness.mode=run"}}
			a := Args(s, "stdio", "socket,path=/s")
			join := strings.Join(a, " ")
			for _, w := range []string{"-no-reboot", "-accel " + string(accel), "-kernel /k/bzImage", "-initrd /i.cpio", "-chardev socket,path=/s,id=ev"} {
				if !strings.Contains(join, w) {
					t.Errorf("%s/%s: args lack %q: %s", name, accel, w, join)
				}
			}
			app := a[slices.Index(a, "-append")+1]
			for _, w := range []string{"panic=-1", "console=ttyS0", "kharness.mode=run"} {
				if !strings.Contains(app, w) {
					t.Errorf("%s: kernel args lack %q: %s", name, w, app)
				}
			}
			cpu := a[slices.Index(a, "-cpu")+1]
			if (accel == KVM) != (cpu == tg.KVMCPU) {
				t.Errorf("%s/%s: cpu %s", name, accel, cpu)
			}
		}
	}
}

func TestHighmemGuestHasHighmem(t *testing.T) {
	tg, _ := target.Lookup("i386-highmem")
	if tg.MemoryMB < 2048 {
		t.Errorf("i386-highmem has %d MiB: less than 2 GiB leaves little or no highmem", tg.MemoryMB)
	}
}

func TestReproducerQuotes(t *testing.T) {
	tg, _ := target.Lookup("x86_64")
	s := Spec{Target: tg, Kernel: "/a b/bzImage", Initrd: "/i", Accel: TCG, Cmdline: []string{"x='y'"}}
	r := Reproducer(s)
	if !strings.HasPrefix(r, "qemu-system-x86_64 ") || !strings.Contains(r, "'/a b/bzImage'") || !strings.Contains(r, `x='\''y'\''`) {
		t.Errorf("reproducer not shell-safe: %s", r)
	}
	if !strings.Contains(r, "file,path=events.jsonl") {
		t.Errorf("reproducer should write events to a file: %s", r)
	}
}

func TestProbeSector(t *testing.T) {
	b := probeSector()
	if len(b) != 512 || b[510] != 0x55 || b[511] != 0xAA {
		t.Fatalf("not a boot sector")
	}
}
