package main

import (
	"bytes"
	"fmt"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// wakeRanges checks the wake semantics (userfaultfd_wake_function: a
// waiter at address a is woken by a range [start, start+len) iff
// start <= a < start+len). Three threads block in pread() on pages 1, 2
// and 3 of a five-page registration; pread faults are kernel-mode faults
// inside a system call, which the Go runtime never interrupts, so each
// is reported exactly once and a waiter only runs again when the kernel
// wakes it.
//   - after the three faults are read, a nonblocking read finds nothing;
//   - COPY(page 1) and ZEROPAGE(page 2) with DONTWAKE map the pages but
//     leave both waiters blocked;
//   - WAKEs of the neighbouring pages 0 (ending exactly at page 1) and 4
//     (starting right after page 3) release nobody — a released waiter
//     of a resolved page would finish, one of an unresolved page would
//     fault again and be reported a second time;
//   - WAKE of exactly page 2 releases only its waiter; a WAKE of pages
//     0..1 then releases page 1's; a normal COPY releases page 3's.
func wakeRanges(c *tcase) {
	f := c.newFD(0, 0, 0)
	const seed = 0x3c
	data := pattern(5*pageSize, seed)
	fd := c.memfd("wake", data)
	buf := c.anon(5)
	_, err := f.Register(buf.addr(), uintptr(buf.n), uffd.ModeMissing)
	c.check(err, "register")
	src := c.anon(1)
	copy(src.bytes(), pattern(pageSize, 0x11))
	ps := uintptr(pageSize)

	w := map[int]*thread{}
	for _, p := range []int{1, 2, 3} {
		p := p
		w[p] = c.start(fmt.Sprintf("pread into page %d", p), func() error {
			return uffd.PreadFull(fd, buf.page(p), int64(p*pageSize))
		})
	}
	got := map[uint64]int{}
	for i := 0; i < 3; i++ {
		m := c.read(f, "the faults of the three preads")
		if m.Event != uffd.EventPagefault {
			c.Fatalf("unexpected %v", m)
		}
		got[m.Address]++
	}
	for _, p := range []int{1, 2, 3} {
		if n := got[uint64(buf.pageAddr(p))]; n != 1 {
			c.Errorf("page %d: %d fault messages among the first three, want exactly 1 (got %v)", p, n, got)
		}
	}
	c.nothingQueued(f, "each fault must be reported once")
	c.stillBlocked("their faults were read but not resolved", w[1], w[2], w[3])

	_, err = f.Copy(buf.pageAddr(1), src.addr(), ps, uffd.CopyModeDontWake)
	c.check(err, "COPY page 1 with DONTWAKE")
	_, err = f.Zeropage(buf.pageAddr(2), ps, uffd.ZeropageModeDontWake)
	c.check(err, "ZEROPAGE page 2 with DONTWAKE")
	c.stillBlocked("COPY/ZEROPAGE with DONTWAKE", w[1], w[2])
	c.nothingQueued(f, "DONTWAKE resolutions must not wake the waiters")

	c.check(f.Wake(buf.pageAddr(0), ps), "WAKE page 0")
	c.stillBlocked("WAKE of page 0, which ends where page 1 starts", w[1], w[2], w[3])
	c.nothingQueued(f, "WAKE of page 0 must not wake page 3's waiter (it would fault again)")
	c.check(f.Wake(buf.pageAddr(4), ps), "WAKE page 4")
	c.stillBlocked("WAKE of page 4, which starts where page 3 ends", w[1], w[2], w[3])
	c.nothingQueued(f, "WAKE of page 4 must not wake page 3's waiter (it would fault again)")

	c.check(f.Wake(buf.pageAddr(2), ps), "WAKE page 2")
	c.await(w[2], "WAKE of exactly its page")
	c.stillBlocked("WAKE of page 2 only", w[1], w[3])
	c.nothingQueued(f, "WAKE of page 2 must not wake page 3's waiter")

	c.check(f.Wake(buf.pageAddr(0), 2*ps), "WAKE pages 0-1")
	c.await(w[1], "WAKE of pages 0-1")
	c.stillBlocked("WAKE of pages 0-1", w[3])
	c.nothingQueued(f, "WAKE of pages 0-1 must not wake page 3's waiter")

	_, err = f.Copy(buf.pageAddr(3), src.addr(), ps, 0)
	c.check(err, "COPY page 3")
	c.await(w[3], "COPY of its page")
	c.nothingQueued(f, "no fault may be left")
	for _, p := range []int{1, 2, 3} {
		if want := data[p*pageSize : (p+1)*pageSize]; !bytes.Equal(buf.page(p), want) {
			c.Errorf("page %d after pread: %s, want the file's page %d", p, describePage(buf.page(p), seed), p)
		}
	}
	for i, p := range c.present(buf) {
		if want := i >= 1 && i <= 3; p != want {
			c.Errorf("page %d mapped=%v, want %v", i, p, want)
		}
	}
}
