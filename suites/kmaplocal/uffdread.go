package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
)

// tmpfsFile writes data to dir/name and opens it read-only.
func tmpfsFile(dir, name string, data []byte) (*os.File, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return nil, err
	}
	return os.Open(p)
}

// sampleFile maps a file and records which of its page-cache pages are
// highmem pages (the pages the kernel kmaps to copy from).
func sampleFile(e *env, hm *highmem, f *os.File, size int) {
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		hm.err = fmt.Errorf("mmap %s: %w", f.Name(), err)
		return
	}
	defer unix.Munmap(m)
	var s byte
	for i := 0; i < size; i += pageSize {
		s += m[i] // map every page so pagemap shows its frame
	}
	sink.Add(uint32(s))
	hm.sample(e, m)
}

// sink keeps the compiler from dropping loads done for their side effect.
var sink atomic.Uint32

// fileChurn reads random windows of a tmpfs file on cpu until stop is
// closed and checks every byte: these reads map the file's pages with
// kmap_local in the same fixmap slots a sleeping reader holds.
func (c *tcase) fileChurn(id, cpu int, f *os.File, data []byte, stop <-chan struct{}, reads *atomic.Int64) {
	if _, err := pinSelf(cpu); err != nil {
		c.fail("%s: churn cpu=%d depth=1 page=-: %v", c.name, cpu, err)
		return
	}
	buf := make([]byte, len(data))
	rng := newRand(c.seed, uint64(id)|3<<32)
	for {
		select {
		case <-stop:
			return
		default:
		}
		off := rng.IntN(len(data))
		n := 1 + rng.IntN(len(data)-off)
		if err := uffd.PreadFull(int(f.Fd()), buf[:n], int64(off)); err != nil {
			c.fail("%s: churn cpu=%d depth=1 page=%d: pread %s: %v", c.name, cpu, off/pageSize, f.Name(), err)
			continue
		}
		if !bytes.Equal(buf[:n], data[off:off+n]) {
			c.fail("%s: churn cpu=%d depth=1 page=%s: churner got data that is not file %s's at offset %d (len %d)",
				c.name, cpu, firstDiff(buf[:n], data[off:off+n], off), filepath.Base(f.Name()), off, n)
		}
		reads.Add(1)
	}
}

// startFileChurn starts file churners: 2×intensity on CPU home, intensity
// on the others.
func (c *tcase) startFileChurn(home int, f *os.File, data []byte, reads *atomic.Int64) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	id := 0
	for _, cpu := range c.env.cpus {
		n := c.intensity
		if cpu == home {
			n *= 2
		}
		for j := 0; j < n; j++ {
			wg.Add(1)
			go func(id, cpu int) {
				defer wg.Done()
				c.fileChurn(id, cpu, f, data, stop, reads)
			}(id, cpu)
			id++
		}
	}
	return func() { close(stop); c.wait(&wg) }
}

// awaitChurn waits until the churners have completed a few more reads
// than start — proof that they ran while a faulting thread slept — or a
// while has passed.
func awaitChurn(reads *atomic.Int64, start int64) bool {
	deadline := time.Now().Add(2 * time.Second)
	for reads.Load() < start+2 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}

// uffdReadTmpfs is the note's deterministic sleep-inside-kmap recipe,
// which needs no driver: a thread pinned to the first CPU read()s a tmpfs
// file into a userfaultfd-registered buffer, so copy_page_to_iter()'s
// copy_to_user faults while it holds kmap_local_page() of the file page,
// and the thread sleeps with the mapping live. Churn threads on the same
// CPU read another file (through the same fixmap slot) before the fault
// is resolved. The reader must get file A byte for byte, the churners
// file B, at unaligned file offsets and buffer offsets.
func uffdReadTmpfs(c *tcase) {
	dir := c.tmpfsDir()
	defer os.RemoveAll(dir)
	pages := min(16*c.intensity, 64)
	size := pages * pageSize
	rng := newRand(c.seed, 0)
	dataA, dataB := make([]byte, size), make([]byte, size)
	fillRandom(rng, dataA)
	fillRandom(rng, dataB)
	fa, err := tmpfsFile(dir, "A", dataA)
	if err != nil {
		c.Fatalf("%v", err)
	}
	defer fa.Close()
	fb, err := tmpfsFile(dir, "B", dataB)
	if err != nil {
		c.Fatalf("%v", err)
	}
	defer fb.Close()
	var hm highmem
	sampleFile(c.env, &hm, fa, size)

	u, err := uffd.New(unix.O_CLOEXEC|unix.O_NONBLOCK, 0, uffd.FeatureThreadID)
	if err != nil {
		c.Fatalf("userfaultfd: %v", err)
	}
	defer u.Close()
	rbuf, err := mmapAnon(size + pageSize)
	if err != nil {
		c.Fatalf("%v", err)
	}
	defer c.munmap(rbuf)
	if _, err := u.Register(addrOf(rbuf), uintptr(len(rbuf)), uffd.ModeMissing); err != nil {
		c.Fatalf("%v", err)
	}
	home := c.env.cpus[0]
	var churnReads, faults atomic.Int64
	var k counter
	var readerTID atomic.Int64
	junk, err := mmapAnon(pageSize)
	if err != nil {
		c.Fatalf("%v", err)
	}
	defer c.munmap(junk)
	fillWord(junk, 0xdeadbeef)
	hrng := newRand(c.seed, 1)
	h, err := uffd.Serve(context.Background(), u, 1, func(_ context.Context, m uffd.Msg) error {
		faults.Add(1)
		page := uintptr(m.Address) &^ uintptr(pageSize-1)
		pg := int(page-addrOf(rbuf)) / pageSize
		if tid := readerTID.Load(); u.Has(uffd.FeatureThreadID) && int64(m.PTID) != tid {
			c.fail("%s: cpu=%d depth=1 page=%d: fault from thread %d, the reader is %d", c.name, home, pg, m.PTID, tid)
		}
		if m.Flags&uffd.PagefaultFlagWrite == 0 {
			c.fail("%s: cpu=%d depth=1 page=%d: read() faulted for reading its destination (%v)", c.name, home, pg, m)
		}
		if !awaitChurn(&churnReads, churnReads.Load()) {
			k.add("churn_starved", 1)
		}
		var err error
		if hrng.IntN(2) == 0 {
			_, err = u.Zeropage(page, uintptr(pageSize), 0)
		} else {
			_, err = u.Copy(page, addrOf(junk), uintptr(pageSize), 0)
		}
		if uffd.IsExist(err) {
			err = u.Wake(page, uintptr(pageSize))
		}
		return err
	})
	if err != nil {
		c.Fatalf("%v", err)
	}
	stopChurn := c.startFileChurn(home, fb, dataB, &churnReads)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tid, err := pinSelf(home)
		if err != nil {
			c.fail("%s: cpu=%d depth=1 page=-: %v", c.name, home, err)
			return
		}
		readerTID.Store(int64(tid))
		for n := 0; n < 3 || c.Running(); n++ {
			foff := rng.IntN(2 * pageSize)
			boff := rng.IntN(pageSize)
			cnt := 1 + rng.IntN(size-foff)
			if boff+cnt > len(rbuf) {
				cnt = len(rbuf) - boff
			}
			if err := zap(rbuf); err != nil {
				c.fail("%s: cpu=%d depth=1 page=-: %v", c.name, home, err)
				return
			}
			before := faults.Load()
			c.inflight.begin(0, fmt.Sprintf("pread(A, buf+%#x, %d, %d)", boff, cnt, foff))
			err := uffd.PreadFull(int(fa.Fd()), rbuf[boff:boff+cnt], int64(foff))
			c.inflight.end(0)
			if err != nil {
				c.fail("%s: cpu=%d depth=1 page=%d: pread A into the registered buffer: %v", c.name, home, foff/pageSize, err)
				continue
			}
			if !bytes.Equal(rbuf[boff:boff+cnt], dataA[foff:foff+cnt]) {
				c.fail("%s: cpu=%d depth=1 page=%s: reader's data is not file A's (file offset %d, buffer offset %#x, len %d)",
					c.name, home, firstDiff(rbuf[boff:boff+cnt], dataA[foff:foff+cnt], foff), foff, boff, cnt)
			}
			if cpu := getcpu(); cpu != home {
				c.fail("%s: cpu=%d depth=1 page=-: reader bound to cpu %d runs on cpu %d", c.name, home, home, cpu)
			}
			if faults.Load() == before {
				k.add("reads_without_fault", 1)
			}
			k.add("reads", 1)
			if n%8 == 0 {
				hm.sample(c.env, rbuf)
			}
		}
	}()
	c.wait(&wg)
	stopChurn()
	if err := h.Stop(); err != nil {
		c.errorAll("fault handler: %v", err)
	}
	k.report(c)
	c.Metric("sleeps_in_section", float64(faults.Load()))
	c.Metric("churn_reads", float64(churnReads.Load()))
	if k.load("reads") == 0 {
		c.errorAll("no read of file A completed")
	}
	if k.load("reads") > 0 && faults.Load() == 0 {
		c.errorAll("%d reads into userfaultfd memory and no fault: the reader never slept inside copy_page_to_iter", k.load("reads"))
	}
	c.churnDuringFaults(faults.Load(), churnReads.Load(), k.load("churn_starved"))
	hm.report(c, "file A's page cache and the reader's buffer")
}

// churnDuringFaults fails the test when the file churners read nothing,
// or read nothing while any fault was held: no other task then mapped
// the slot the sleeping task held.
func (c *tcase) churnDuringFaults(faults, churnReads, starved int64) {
	switch {
	case churnReads == 0:
		c.errorAll("the churn threads completed no read")
	case faults > 0 && starved >= faults:
		c.errorAll("the churn threads read nothing while any of the %d faults was held (each handler waited 2 s for them): nobody reused the slot of a sleeping section", faults)
	}
}

// uffdCopyUnpopulated drives UFFDIO_COPY's fallback: the first copy from
// the source runs with page faults disabled inside kmap_local (atomic),
// fails on a non-present source page with -ENOENT, and mfill_atomic()
// retries copy_from_user with faults allowed while holding
// kmap_local_folio() of the new page. Sources: untouched anonymous memory
// (zero page), an untouched private file mapping (page cache), memory
// registered on a second userfaultfd (the retry then sleeps in
// handle_userfault with the kmap live while churn threads run), and a
// PROT_NONE mapping (EFAULT). The destination must hold exactly the
// source's data.
func uffdCopyUnpopulated(c *tcase) {
	dir := c.tmpfsDir()
	defer os.RemoveAll(dir)
	pages := min(16*c.intensity, 64)
	size := pages * pageSize
	rng := newRand(c.seed, 0)
	dataF, dataP := make([]byte, size), make([]byte, size)
	fillRandom(rng, dataF)
	fillRandom(rng, dataP)
	ff, err := tmpfsFile(dir, "F", dataF)
	if err != nil {
		c.Fatalf("%v", err)
	}
	defer ff.Close()

	dstFD, err := uffd.New(unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if err != nil {
		c.Fatalf("userfaultfd: %v", err)
	}
	defer dstFD.Close()
	srcFD, err := uffd.New(unix.O_CLOEXEC|unix.O_NONBLOCK, 0, uffd.FeatureThreadID)
	if err != nil {
		c.Fatalf("userfaultfd: %v", err)
	}
	defer srcFD.Close()
	dst, err := mmapAnon(size)
	if err != nil {
		c.Fatalf("%v", err)
	}
	defer c.munmap(dst)
	if _, err := dstFD.Register(addrOf(dst), uintptr(size), uffd.ModeMissing); err != nil {
		c.Fatalf("%v", err)
	}
	// Nobody should fault on dst: UFFDIO_COPY fills it. Serve it anyway,
	// so that a bug fails the test instead of hanging it.
	hDst, err := uffd.Serve(context.Background(), dstFD, 1, func(_ context.Context, m uffd.Msg) error {
		dstFD.Zeropage(uintptr(m.Address), uintptr(pageSize), 0)
		return fmt.Errorf("unexpected fault on the destination: %v", m)
	})
	if err != nil {
		c.Fatalf("%v", err)
	}
	pdata, err := mmapAnon(size)
	if err != nil {
		c.Fatalf("%v", err)
	}
	defer c.munmap(pdata)
	copy(pdata, dataP)

	home := c.env.cpus[0]
	var churnReads, srcFaults atomic.Int64
	var copierTID atomic.Int64
	var srcBase atomic.Uintptr
	var k counter
	hSrc, err := uffd.Serve(context.Background(), srcFD, 1, func(_ context.Context, m uffd.Msg) error {
		srcFaults.Add(1)
		page := uintptr(m.Address) &^ uintptr(pageSize-1)
		base := srcBase.Load()
		pg := int(page-base) / pageSize
		if tid := copierTID.Load(); srcFD.Has(uffd.FeatureThreadID) && int64(m.PTID) != tid {
			c.fail("%s: cpu=%d depth=1 page=%d: source fault from thread %d, the copier is %d", c.name, home, pg, m.PTID, tid)
		}
		if m.Flags&uffd.PagefaultFlagWrite != 0 {
			c.fail("%s: cpu=%d depth=1 page=%d: UFFDIO_COPY wrote to its source (%v)", c.name, home, pg, m)
		}
		if !awaitChurn(&churnReads, churnReads.Load()) {
			k.add("churn_starved", 1)
		}
		if base == 0 || page < base || page >= base+uintptr(size) {
			srcFD.Zeropage(page, uintptr(pageSize), 0)
			return fmt.Errorf("source fault %v outside the current source", m)
		}
		_, err := srcFD.Copy(page, addrOf(pdata)+(page-base), uintptr(pageSize), 0)
		if uffd.IsExist(err) {
			err = srcFD.Wake(page, uintptr(pageSize))
		}
		return err
	})
	if err != nil {
		c.Fatalf("%v", err)
	}
	stopChurn := c.startFileChurn(home, ff, dataF, &churnReads)

	var hm highmem
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tid, err := pinSelf(home)
		if err != nil {
			c.fail("%s: cpu=%d depth=1 page=-: %v", c.name, home, err)
			return
		}
		copierTID.Store(int64(tid))
		zero := make([]byte, size)
		for n := 0; n < 8 || c.Running(); n++ {
			variant := []string{"anon", "file", "uffd", "prot-none"}[n%4]
			src, want, err := copySource(variant, ff, size, srcFD)
			if err != nil {
				c.fail("%s: cpu=%d depth=1 page=-: %s source: %v", c.name, home, variant, err)
				return
			}
			if variant == "uffd" {
				srcBase.Store(addrOf(src))
			}
			switch {
			case variant == "uffd":
				want = dataP // what the source handler copies in
			case want == nil:
				want = zero
			}
			before := srcFaults.Load()
			c.inflight.begin(0, fmt.Sprintf("UFFDIO_COPY %d pages from %s source", pages, variant))
			copied, err := copyAll(dstFD, addrOf(dst), addrOf(src), uintptr(size))
			c.inflight.end(0)
			srcBase.Store(0)
			munmap(src)
			switch {
			case variant == "prot-none":
				if !errors.Is(err, unix.EFAULT) || copied != 0 {
					c.fail("%s: cpu=%d depth=1 page=0: UFFDIO_COPY from a PROT_NONE source copied %d bytes, err %v; want 0 and EFAULT", c.name, home, copied, err)
				} else {
					k.add("efault_ok", 1)
				}
				continue // dst stays missing
			case err != nil:
				c.fail("%s: cpu=%d depth=1 page=%d: UFFDIO_COPY from %s source: %v", c.name, home, int(copied)/pageSize, variant, err)
				if zerr := zap(dst); zerr != nil {
					return
				}
				continue
			}
			if !bytes.Equal(dst, want) {
				c.fail("%s: cpu=%d depth=1 page=%s: destination after UFFDIO_COPY from an unpopulated %s source", c.name, home, firstDiff(dst, want, 0), variant)
			}
			if variant == "uffd" {
				f := srcFaults.Load() - before
				k.add("sleeps_in_section", f)
				if f == 0 {
					k.add("uffd_copies_without_fault", 1)
				}
			}
			k.add("copies_"+variant, 1)
			if n%8 == 0 {
				hm.sample(c.env, dst)
			}
			if err := zap(dst); err != nil {
				c.fail("%s: cpu=%d depth=1 page=-: %v", c.name, home, err)
				return
			}
		}
	}()
	c.wait(&wg)
	stopChurn()
	for _, h := range []*uffd.Handler{hDst, hSrc} {
		if err := h.Stop(); err != nil {
			c.errorAll("fault handler: %v", err)
		}
	}
	k.report(c)
	c.Metric("churn_reads", float64(churnReads.Load()))
	if k.load("copies_uffd") == 0 {
		c.errorAll("no UFFDIO_COPY from a userfaultfd-registered source completed")
	}
	if k.load("copies_uffd") > 0 && k.load("sleeps_in_section") == 0 {
		c.errorAll("%d copies from userfaultfd-registered sources and no source fault: the mfill retry path never slept", k.load("copies_uffd"))
	}
	c.churnDuringFaults(k.load("sleeps_in_section"), churnReads.Load(), k.load("churn_starved"))
	hm.report(c, "the UFFDIO_COPY destination pages")
}

// copySource maps a fresh, never touched source of the given kind. want
// is the data the copy must produce for a file source; nil for the
// others (zeros for anonymous memory, the handler's data for "uffd").
func copySource(variant string, ff *os.File, size int, srcFD *uffd.FD) (src, want []byte, err error) {
	switch variant {
	case "anon":
		src, err = mmapAnon(size)
		return src, nil, err
	case "file":
		src, err = unix.Mmap(int(ff.Fd()), 0, size, unix.PROT_READ, unix.MAP_PRIVATE)
		if err != nil {
			return nil, nil, err
		}
		want = make([]byte, size)
		if err := uffd.PreadFull(int(ff.Fd()), want, 0); err != nil {
			unix.Munmap(src)
			return nil, nil, err
		}
		return src, want, nil
	case "uffd":
		if src, err = mmapAnon(size); err != nil {
			return nil, nil, err
		}
		if _, err = srcFD.Register(addrOf(src), uintptr(size), uffd.ModeMissing); err != nil {
			unix.Munmap(src)
			return nil, nil, err
		}
		return src, nil, nil
	case "prot-none":
		src, err = unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		return src, nil, err
	}
	return nil, nil, fmt.Errorf("unknown source %q", variant)
}

// copyAll is UFFDIO_COPY of a whole range, retrying EAGAIN.
func copyAll(f *uffd.FD, dst, src, length uintptr) (int64, error) {
	var total int64
	for uintptr(total) < length {
		n, err := f.Copy(dst+uintptr(total), src+uintptr(total), length-uintptr(total), 0)
		total += n
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
