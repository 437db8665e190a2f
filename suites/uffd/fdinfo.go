package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// fdinfo is what /proc/<pid>/fdinfo/<fd> shows for a userfaultfd
// (userfaultfd_show_fdinfo, fs/userfaultfd.c):
//
//	pending:	<faults queued and not yet read>
//	total:	<pending + faults read but not yet woken>
//	API:	<UFFD_API>:<ctx->features>:<UFFD_API_IOCTLS|UFFD_API_RANGE_IOCTLS>
type fdinfo struct {
	Pending, Total uint64
	API            uint64
	Features       uint64 // the enabled features | featureInitialized
	Ioctls         uint64
}

// fdinfoIoctls is UFFD_API_IOCTLS|UFFD_API_RANGE_IOCTLS, printed by every
// userfaultfd's fdinfo.
const fdinfoIoctls = apiIoctls | rangeIoctlsAll

// parseFdinfo parses the userfaultfd lines of an fdinfo file; the generic
// pos/flags/mnt_id/ino lines are ignored.
func parseFdinfo(s string) (fdinfo, error) {
	var fi fdinfo
	seen := map[string]bool{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "pending":
			fi.Pending, err = strconv.ParseUint(v, 10, 64)
		case "total":
			fi.Total, err = strconv.ParseUint(v, 10, 64)
		case "API":
			f := strings.Split(v, ":")
			if len(f) != 3 {
				return fi, fmt.Errorf("fdinfo API line %q: want api:features:ioctls", v)
			}
			if fi.API, err = strconv.ParseUint(f[0], 16, 64); err == nil {
				if fi.Features, err = strconv.ParseUint(f[1], 16, 64); err == nil {
					fi.Ioctls, err = strconv.ParseUint(f[2], 16, 64)
				}
			}
		default:
			continue
		}
		if err != nil {
			return fi, fmt.Errorf("fdinfo line %q: %w", line, err)
		}
		seen[k] = true
	}
	for _, k := range []string{"pending", "total", "API"} {
		if !seen[k] {
			return fi, fmt.Errorf("fdinfo has no %q line:\n%s", k, s)
		}
	}
	return fi, nil
}

func readFdinfo(fd int) (fdinfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return fdinfo{}, err
	}
	return parseFdinfo(string(b))
}

// counts waits up to waitDone for fdinfo to show pending/total and fails
// the test (naming the last values seen) if it never does. The counts
// change when a faulting thread queues itself or a waker removes it, both
// asynchronously to this thread.
func (c *tcase) counts(f *uffd.FD, pending, total uint64, when string) {
	deadline := time.Now().Add(waitDone)
	for {
		fi, err := readFdinfo(f.Fd())
		if err != nil {
			c.Fatalf("fdinfo %s: %v", when, err)
		}
		if fi.Pending == pending && fi.Total == total {
			return
		}
		if time.Now().After(deadline) {
			c.Errorf("fdinfo %s: pending %d total %d, want pending %d total %d", when, fi.Pending, fi.Total, pending, total)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fdinfoCounts checks /proc/self/fdinfo of a userfaultfd while faults are
// outstanding (the counts of Andrea Arcangeli's original fdinfo, seed
// 001): two threads block in pread() on two registered pages; before any
// read both are pending; each read moves one from pending to read-but-
// unresolved (pending drops, total stays); each resolution removes one.
// The API line shows the enabled features with the INITIALIZED bit 31,
// and the fixed ioctl mask.
func fdinfoCounts(c *tcase) {
	f := c.newFD(0, uffd.FeatureThreadID, 0)
	fi, err := readFdinfo(f.Fd())
	c.check(err, "fdinfo")
	if want := uffd.FeatureThreadID | featureInitialized; fi.API != uffd.API || fi.Features != want || fi.Ioctls != fdinfoIoctls {
		c.Errorf("fdinfo API %x:%x:%x, want %x:%x:%x (enabled features | INITIALIZED bit 31)",
			fi.API, fi.Features, fi.Ioctls, uffd.API, want, fdinfoIoctls)
	}
	if fi.Pending != 0 || fi.Total != 0 {
		c.Errorf("fdinfo of an idle userfaultfd: pending %d total %d, want 0 0", fi.Pending, fi.Total)
	}

	data := pattern(2*pageSize, 0x21)
	fd := c.memfd("fdinfo", data)
	buf := c.anon(3)
	_, err = f.Register(buf.addr(), uintptr(buf.n), uffd.ModeMissing)
	c.check(err, "register")
	src := c.anon(1)
	r0 := c.start("reader of page 0", func() error { return uffd.PreadFull(fd, buf.page(0), 0) })
	c.counts(f, 1, 1, "with one pread() blocked and its fault unread")
	r1 := c.start("reader of page 1", func() error { return uffd.PreadFull(fd, buf.page(1), int64(pageSize)) })
	c.counts(f, 2, 2, "with two faults unread")

	seen := map[uint64]uffd.Msg{}
	m := c.read(f, "the first fault")
	seen[m.Address] = m
	c.counts(f, 1, 2, "after reading one of two faults")
	m = c.read(f, "the second fault")
	if _, dup := seen[m.Address]; dup {
		c.Errorf("the same fault (%v) was read twice", m)
	}
	seen[m.Address] = m
	c.counts(f, 0, 2, "after reading both faults")
	c.nothingQueued(f, "both faults were read; a third read must find nothing")
	for i, th := range []*thread{r0, r1} {
		m, ok := seen[uint64(buf.pageAddr(i))]
		if !ok {
			c.Errorf("no fault reported for page %d", i)
		} else {
			c.checkFault(m, buf.pageAddr(i), uffd.PagefaultFlagWrite, "pread() into page "+strconv.Itoa(i))
			if int32(m.PTID) != th.tid.Load() {
				c.Errorf("fault on page %d carries thread id %d, the reader is %d", i, m.PTID, th.tid.Load())
			}
		}
		if th.finished() {
			c.Errorf("%s finished before its fault was resolved (err %v)", th.name, th.err)
		}
	}

	_, err = f.Copy(buf.pageAddr(0), src.addr(), uintptr(pageSize), 0)
	c.check(err, "COPY page 0")
	c.await(r0, "its page was copied")
	c.counts(f, 0, 1, "after resolving one of the read faults")
	_, err = f.Zeropage(buf.pageAddr(1), uintptr(pageSize), 0)
	c.check(err, "ZEROPAGE page 1")
	c.await(r1, "its page was zero-filled")
	c.counts(f, 0, 0, "after resolving both faults")
	for i := 0; i < 2; i++ {
		if string(buf.page(i)) != string(data[i*pageSize:(i+1)*pageSize]) {
			c.Errorf("page %d after pread: %s, want the file's page %d", i, describePage(buf.page(i), 0x21), i)
		}
	}

	// A fault read and then woken without being resolved leaves the
	// queues too: the waiter faults again and is pending once more.
	r2 := c.start("reader of page 2", func() error { return uffd.PreadFull(fd, buf.page(2), 0) })
	m = c.read(f, "the fault on page 2")
	c.checkFault(m, buf.pageAddr(2), uffd.PagefaultFlagWrite, "pread() into page 2")
	c.counts(f, 0, 1, "with the fault on page 2 read")
	c.check(f.Wake(buf.pageAddr(2), uintptr(pageSize)), "WAKE page 2 unresolved")
	m = c.read(f, "the repeated fault on page 2 after a WAKE without resolution")
	c.checkFault(m, buf.pageAddr(2), uffd.PagefaultFlagWrite, "repeated fault")
	_, err = f.Zeropage(buf.pageAddr(2), uintptr(pageSize), 0)
	c.check(err, "ZEROPAGE page 2")
	c.await(r2, "its page was zero-filled")
	c.counts(f, 0, 0, "at the end")
}
