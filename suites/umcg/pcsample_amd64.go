package main

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// callers walks a stopped thread's stack by frame pointers (Go on amd64
// keeps them): the word at SP first, the return address of a leaf without
// a frame (the runtime's assembly helpers such as osyield), then the
// chain from BP. At most max addresses.
func callers(tid int, regs *unix.PtraceRegs, max int) []uint64 {
	word := func(addr uint64) (uint64, bool) {
		var b [8]byte
		if n, err := unix.PtracePeekData(tid, uintptr(addr), b[:]); err != nil || n != 8 {
			return 0, false
		}
		return binary.LittleEndian.Uint64(b[:]), true
	}
	var out []uint64
	if ret, ok := word(regs.Rsp); ok {
		out = append(out, ret)
	}
	bp := regs.Rbp
	for len(out) < max && bp != 0 {
		ret, ok1 := word(bp + 8)
		next, ok2 := word(bp)
		if !ok1 || !ok2 || next <= bp {
			break
		}
		out = append(out, ret)
		bp = next
	}
	return out
}
