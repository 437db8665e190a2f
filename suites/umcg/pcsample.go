package main

import (
	"debug/elf"
	"debug/gosym"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// pcOf stops thread tid of a hung child for an instant (PTRACE_SEIZE +
// PTRACE_INTERRUPT), reads its user-space program counter and lets it go:
// for a thread that spins in user space, the function it spins in, which
// nothing in /proc tells. The child runs this same executable, so its
// symbol table resolves the address.
func pcOf(tid int) string {
	runtime.LockOSThread() // ptrace requests must come from the tracer thread
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(tid); err != nil {
		return fmt.Sprintf("(ptrace: %v)", err)
	}
	defer unix.PtraceDetach(tid)
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
	pc := uint64(regs.PC())
	return fmt.Sprintf("pc %#x %s", pc, symbolize(pc))
}

// symbolize names the function and line of pc in this executable.
func symbolize(pc uint64) string {
	t, err := readSelfTable()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
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
