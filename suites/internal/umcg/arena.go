package umcg

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Arena is an anonymous private mapping cut into 64-byte struct umcg_task
// slots. Its pages are PageAnon (the kernel refuses to pin anything else),
// populated up front (no first-touch faults while tasks run) and never
// move, so slot addresses can be handed to the kernel and linked into
// runnable lists.
type Arena struct {
	mem  []byte
	base uintptr
	p0   unsafe.Pointer // slot 0
	n    int

	mu   sync.Mutex // guards used; allocation only, never on a hot path
	used []bool
}

// NewArena maps an arena of at least n slots (rounded up to whole pages).
func NewArena(n int) (*Arena, error) {
	if n <= 0 {
		return nil, fmt.Errorf("umcg: arena of %d slots", n)
	}
	page := unix.Getpagesize()
	size := (n*TaskSize + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("umcg: mmap arena of %d bytes: %w", size, err)
	}
	a := &Arena{mem: mem, base: uintptr(unsafe.Pointer(&mem[0])), p0: unsafe.Pointer(&mem[0]), n: size / TaskSize}
	a.used = make([]bool, a.n)
	return a, nil
}

// Close unmaps the arena. No task may still be registered on one of its
// slots: the kernel would write into whatever gets mapped there next.
func (a *Arena) Close() error {
	if a.mem == nil {
		return nil
	}
	err := unix.Munmap(a.mem)
	a.mem = nil
	if err != nil {
		return fmt.Errorf("umcg: munmap arena: %w", err)
	}
	return nil
}

// Len is the number of slots.
func (a *Arena) Len() int { return a.n }

// Base is the address of slot 0.
func (a *Arena) Base() uintptr { return a.base }

// Bytes is the arena's mapping (for tests that plant raw values or
// change protections of its pages).
func (a *Arena) Bytes() []byte { return a.mem }

// Task returns slot i.
func (a *Arena) Task(i int) *Task {
	if i < 0 || i >= a.n {
		panic(fmt.Sprintf("umcg: slot %d of %d", i, a.n))
	}
	return (*Task)(unsafe.Pointer(&a.mem[i*TaskSize]))
}

// task is Task for the server loop: no bounds message (the caller
// checked i), and nosplit (see Server.loop).
//
//go:nosplit
func (a *Arena) task(i int) *Task {
	return (*Task)(unsafe.Add(a.p0, i*TaskSize))
}

// Alloc reserves a free slot, zeroed, and returns its index.
func (a *Arena) Alloc() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, u := range a.used {
		if !u {
			a.used[i] = true
			a.Task(i).Reset(StateNone, 0)
			return i, nil
		}
	}
	return -1, fmt.Errorf("umcg: arena full (%d slots)", a.n)
}

// Free gives slot i back. The caller guarantees the kernel no longer
// knows the slot (its task unregistered or exited).
func (a *Arena) Free(i int) {
	a.mu.Lock()
	a.used[i] = false
	a.mu.Unlock()
}

// Index maps a user address (a runnable list link) back to its slot.
//
//go:nosplit
func (a *Arena) Index(addr uint64) (int, bool) {
	return slotIndex(uint64(a.base), a.n, addr)
}

// slotIndex is Index without the arena: addr must be the exact start of
// one of n 64-byte slots starting at base.
//
//go:nosplit
func slotIndex(base uint64, n int, addr uint64) (int, bool) {
	if addr < base {
		return -1, false
	}
	off := addr - base
	if off%TaskSize != 0 || off/TaskSize >= uint64(n) {
		return -1, false
	}
	return int(off / TaskSize), true
}
