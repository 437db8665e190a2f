package main

import (
	"debug/elf"
	"debug/gosym"
	"fmt"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pcSamples stops thread tid of a hung child n times, 20 ms apart
// (PTRACE_SEIZE, then PTRACE_INTERRUPT each time), reads its user-space
// program counter and lets it go: for a thread that spins in user space,
// the functions it spins in, which nothing in /proc tells. The child runs
// this same executable, so its symbol table resolves the addresses.
func pcSamples(tid, n int) string {
	runtime.LockOSThread() // ptrace requests must come from the tracer thread
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(tid); err != nil {
		return fmt.Sprintf("(ptrace: %v)", err)
	}
	defer func() {
		if unix.PtraceDetach(tid) != nil {
			// Left running by an error between samples: stop it first.
			var ws unix.WaitStatus
			unix.PtraceInterrupt(tid)
			unix.Wait4(tid, &ws, unix.WALL, nil)
			unix.PtraceDetach(tid)
		}
	}()
	var pcs, stack []uint64
	// Detach needs a stopped tracee (a thread left traced would keep its
	// process from being reaped): resume only between samples.
	for i := 0; i < n; i++ {
		if i > 0 {
			if err := unix.PtraceCont(tid, 0); err != nil {
				return fmt.Sprintf("(ptrace cont: %v)", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := unix.PtraceInterrupt(tid); err != nil {
			return fmt.Sprintf("(ptrace interrupt: %v)", err)
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
			return fmt.Sprintf("(wait: %v)", err)
		}
		var regs unix.PtraceRegs
		if err := unix.PtraceGetRegs(tid, &regs); err != nil {
			return fmt.Sprintf("(regs: %v)", err)
		}
		pcs = append(pcs, uint64(regs.PC()))
		if i == 0 {
			stack = callers(tid, &regs, 12)
		}
	}
	t, err := readSelfTable()
	var out []string
	for _, pc := range pcs {
		if err != nil {
			out = append(out, fmt.Sprintf("pc %#x (%v)", pc, err))
			continue
		}
		out = append(out, fmt.Sprintf("pc %#x %s", pc, symbolize(t, pc)))
	}
	if err == nil && len(stack) > 0 {
		// The first sample's callers: [SP] is a guess (right for a leaf
		// without a frame), the rest follow frame pointers.
		var cs []string
		for _, pc := range stack {
			if _, _, fn := t.PCToLine(pc - 1); fn != nil {
				cs = append(cs, fn.Name)
			}
		}
		if len(cs) > 0 {
			out = append(out, "called from "+strings.Join(cs, " <- "))
		}
	}
	return strings.Join(out, "; ")
}

// symbolize names the function and line of pc.
func symbolize(t *gosym.Table, pc uint64) string {
	file, line, fn := t.PCToLine(pc)
	if fn == nil {
		return "(not Go code)"
	}
	return fmt.Sprintf("%s %s:%d", fn.Name, file, line)
}

// readSelfTable reads the pclntab of this executable (only on a hang).
func readSelfTable() (*gosym.Table, error) {
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec, text := f.Section(".gopclntab"), f.Section(".text")
	if sec == nil || text == nil {
		return nil, fmt.Errorf("no .gopclntab")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	return gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
}
