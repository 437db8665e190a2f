package umcg

// u64Args passes a 64-bit system call argument the i386 way: low half in
// the first register, high half in the next (as pread64 and fallocate do).
// A kernel that declares the argument u64 without an i386 wrapper only
// sees the low half: a timeout test on i386 notices.
//
//go:nosplit
func u64Args(v uint64) (uintptr, uintptr) { return uintptr(uint32(v)), uintptr(uint32(v >> 32)) }
