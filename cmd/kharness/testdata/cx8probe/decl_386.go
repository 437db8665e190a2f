package main

// xadd64Flags is Xadd64's loop followed by PUSHFL (probe_386.s).
func xadd64Flags(p *uint64, lo, hi uint32) uint32
