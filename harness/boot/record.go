package boot

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/target"
)

// Record is a boot as written to a cell's boot.json: enough to boot the
// very same kernel and initramfs the same way again (kharness rerun,
// kharness boot --run), the target by name.
type Record struct {
	Target   string         `json:"target"`
	Kernel   string         `json:"kernel"`
	Vmlinux  string         `json:"vmlinux,omitempty"`
	Initrd   string         `json:"initrd"`
	Accel    Accel          `json:"accel"`
	Guest    guest.BootArgs `json:"guest"`
	Cmdline  []string       `json:"cmdline,omitempty"`
	KUnit    *KUnit         `json:"kunit,omitempty"`
	Boot     time.Duration  `json:"boot"`
	NoOutput time.Duration  `json:"no_output"`
	Overall  time.Duration  `json:"overall"`
}

// RecordOf is s as a Record.
func RecordOf(s Spec, vmlinux string) Record {
	return Record{Target: s.Target.Name, Kernel: s.Kernel, Vmlinux: vmlinux, Initrd: s.Initrd, Accel: s.Accel,
		Guest: s.Guest, Cmdline: s.Cmdline, KUnit: s.KUnit, Boot: s.Boot, NoOutput: s.NoOutput, Overall: s.Overall}
}

// Save writes the record as JSON.
func (r Record) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// LoadRecord reads a boot.json.
func LoadRecord(path string) (Record, error) {
	var r Record
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Spec turns the record back into a boot of dir.
func (r Record) Spec(dir string) (Spec, error) {
	t, err := target.Lookup(r.Target)
	if err != nil {
		return Spec{}, err
	}
	for _, f := range []string{r.Kernel, r.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return Spec{}, fmt.Errorf("the boot's %s is gone (pruned from the cache?): %w", f, err)
		}
	}
	return Spec{Target: t, Kernel: r.Kernel, Initrd: r.Initrd, Accel: r.Accel, Guest: r.Guest, Cmdline: r.Cmdline, KUnit: r.KUnit,
		Dir: dir, Boot: r.Boot, NoOutput: r.NoOutput, Overall: r.Overall}, nil
}
