package main

import (
	"unsafe"

	"github.com/kharness/kharness/suites/internal/gup"
	"golang.org/x/sys/unix"
)

// hasPinnedStatus checks patches/cow's HasPinned line: MMF_HAS_PINNED
// is not inherited by a child, is set once the child pins its own pages,
// and is set in a parent that pins. (It decides whether fork looks for
// pinned pages at all.) Skips on kernels without patches/cow; fails when
// the patch set is applied and the line is missing.
func hasPinnedStatus(c *tcase) {
	dev := c.gupDev()
	if _, ok, err := hasPinned(unix.Getpid()); err != nil {
		c.Fatalf("%v", err)
	} else if !ok {
		cowVerdict("no HasPinned line in /proc/self/status", c.env.boot, c.env.bootErr).Apply(c)
	}
	r := c.region(memPage)
	args := &gup.PinArgs{Addr: uint64(addrOf(r.area)), Size: uint64(len(r.area)), Flags: gup.FlagWrite}
	f := c.newForker()
	s := f.script()
	s.notify(f.childOut())
	s.wait(f.childIn())
	s.ioctl(dev.Fd(), gup.PinLongtermTestStart, unsafe.Pointer(args))
	s.notify(f.childOut())
	s.wait(f.childIn())
	s.ioctl(dev.Fd(), gup.PinLongtermTestStop, nil)
	ch := c.fork(f, s)
	c.await(ch)
	c.expectHasPinned(ch.pid, 0, "a new child")
	c.release(ch)
	c.await(ch)
	c.pinned(pages(r.area))
	c.expectHasPinned(ch.pid, 1, "the child after pinning its pages")
	c.release(ch)
	c.finish(ch)
	c.pin(r.area, gup.FlagWrite)
	c.expectHasPinned(unix.Getpid(), 1, "the parent after pinning")
}
