package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kharness/kharness/harness/target"
)

// Accel is the QEMU accelerator a boot used.
type Accel string

// Accelerators.
const (
	KVM Accel = "kvm"
	TCG Accel = "tcg"
)

// ProbeKVM boots the target's probe image (target.Target.KVMProbe) under
// KVM with the target's KVM CPU model and reports why KVM is unusable, or
// nil when it works. Existence
// of /dev/kvm proves nothing: on some hosts a stock guest hangs under it.
func ProbeKVM(ctx context.Context, t target.Target) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("/dev/kvm: %w", err)
	}
	f.Close()
	dir, err := os.MkdirTemp("", "kharness-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "probe.img")
	if len(t.KVMProbe) == 0 {
		return fmt.Errorf("target %s has no KVM probe image", t.Name)
	}
	if err := os.WriteFile(img, t.KVMProbe, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.QEMU, "-nodefaults", "-accel", "kvm", "-cpu", t.KVMCPU, "-m", "16",
		"-display", "none", "-no-reboot", "-serial", "stdio",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-drive", "format=raw,file="+img+",if=floppy", "-boot", "a")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("a probe guest hangs under KVM (no exit within 15s)")
	case errors.As(err, &ee) && ee.ExitCode() == 99 && bytes.Contains(out.Bytes(), []byte("K")):
		return nil
	case err != nil:
		return fmt.Errorf("probe guest failed under KVM: %v: %s", err, lastLine(out.String()))
	}
	return fmt.Errorf("probe guest exited 0 without reaching its exit port")
}

func lastLine(s string) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if i := bytes.LastIndexByte([]byte(s), '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Choose picks the accelerator for want ("auto", "kvm" or "tcg") and says
// why. "kvm" that does not work is an error; "auto" falls back to TCG.
func Choose(ctx context.Context, want string, t target.Target) (Accel, string, error) {
	switch want {
	case "tcg":
		return TCG, "requested", nil
	case "kvm":
		if err := ProbeKVM(ctx, t); err != nil {
			return "", "", fmt.Errorf("--accel kvm: %w", err)
		}
		return KVM, "requested, probe passed", nil
	}
	if err := ProbeKVM(ctx, t); err != nil {
		return TCG, "KVM unusable: " + err.Error(), nil
	}
	return KVM, "probe passed", nil
}
