package main

import (
	"golang.org/x/sys/unix"
)

// order is who writes first after fork.
type order int

const (
	parentFirst order = iota
	childFirst
)

func (o order) String() string {
	if o == parentFirst {
		return "parent-first"
	}
	return "child-first"
}

// newForker makes a forker that is closed at the end of the test.
func (c *tcase) newForker() *forker {
	f, err := newForker()
	c.mustf(err, "fork setup")
	c.later(f.close)
	return f
}

// fork starts a child running s; it is killed at the end of the test if
// it is still around.
func (c *tcase) fork(f *forker, s *script) *child {
	ch, err := f.fork(s)
	c.mustf(err, "fork")
	c.later(ch.kill)
	return ch
}

// await waits for the child's next notify, failing the test (with the
// child's own report) if it dies instead.
func (c *tcase) await(ch *child) {
	if err := ch.await(); err != nil {
		c.Fatalf("%v", err)
	}
}

func (c *tcase) release(ch *child) { c.mustf(ch.release(), "release child") }

// finish waits for the child to exit and reports its failure.
func (c *tcase) finish(ch *child) {
	if err := ch.finish(); err != nil {
		c.Errorf("%v", err)
	}
}

// mprotectDance maps b R/O and R/W again: mprotect() may then map pages
// writable right away (the "mprotect optimisation"), which it must
// never do for a page that is shared.
func (c *tcase) mprotectDance(b []byte) {
	c.mustf(unix.Mprotect(b, unix.PROT_READ), "mprotect(R)")
	c.mustf(unix.Mprotect(b, unix.PROT_READ|unix.PROT_WRITE), "mprotect(RW)")
}

// parentWrite writes the parent's tag over b (after the mprotect dance
// if asked).
func (c *tcase) parentWrite(b []byte, mprot bool) {
	if mprot {
		c.mprotectDance(b)
	}
	fill(b, tagParent, 0)
}

// forkWrite is the exchange at the heart of the COW tests: fork, then
// parent and child each write their tag over the whole area, in the
// given order. Each must see the pre-fork data until its own write and
// never the other's. With mprot each writer does the mprotect dance
// first. afterFork runs in the parent right after the fork, before any
// write (for oracles on the fresh fork).
func (c *tcase) forkWrite(area []byte, ord order, mprot bool, afterFork func(ch *child)) {
	f := c.newForker()
	s := f.script()
	s.wait(f.childIn()) // until the parent has looked at the fresh fork
	s.check(area, tagPre, 0, "the child's memory is not the pre-fork snapshot")
	if mprot {
		s.mprotect(area, unix.PROT_READ)
		s.mprotect(area, unix.PROT_READ|unix.PROT_WRITE)
	}
	s.fill(area, tagChild, 0)
	s.notify(f.childOut())
	s.wait(f.childIn())
	s.check(area, tagChild, 0, "the parent's write leaked into the child")
	ch := c.fork(f, s)
	afterFork(ch)
	if ord == parentFirst {
		c.parentWrite(area, mprot)
		c.release(ch)
		c.await(ch)
	} else {
		c.release(ch)
		c.await(ch)
		if m := mismatch(area, tagPre, 0); m != "" {
			c.Errorf("the child's write leaked into the parent: %s", m)
		}
		c.parentWrite(area, mprot)
	}
	c.release(ch)
	c.finish(ch)
	if m := mismatch(area, tagParent, 0); m != "" {
		c.Errorf("the parent does not see its own write: %s", m)
	}
}
