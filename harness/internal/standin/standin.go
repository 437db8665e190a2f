// Package standin builds the stand-in QEMU of harness/boot/testdata/fakeqemu
// for unit tests of the boot and verdict logic: it replays a scripted guest
// event stream and console through the real boot.Run. End-to-end tests boot
// real kernels instead.
package standin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// QEMU is the stand-in, built once per test binary into a directory of its
// own that Cleanup removes (test runs leave nothing in /tmp).
type QEMU struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Path builds the stand-in the first time and returns its path; it is
// named qemu-system-x86_64, as boot.Run expects.
func (q *QEMU) Path() (string, error) {
	q.once.Do(func() {
		_, self, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(self), "..", "..", "boot", "testdata", "fakeqemu")
		q.dir, q.err = os.MkdirTemp("", "kharness-standin-")
		if q.err != nil {
			return
		}
		q.bin = filepath.Join(q.dir, "qemu-system-x86_64")
		if out, err := exec.Command("go", "build", "-o", q.bin, src).CombinedOutput(); err != nil {
			q.err = fmt.Errorf("build the stand-in QEMU: %v\n%s", err, out)
		}
	})
	return q.bin, q.err
}

// Cleanup removes what Path built.
func (q *QEMU) Cleanup() {
	if q.dir != "" {
		os.RemoveAll(q.dir)
	}
}
