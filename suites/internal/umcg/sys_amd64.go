package umcg

// u64Args passes a 64-bit system call argument: one register on x86_64.
//
//go:nosplit
func u64Args(v uint64) (uintptr, uintptr) { return uintptr(v), 0 }
