package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/suites/internal/uffd"
	"github.com/kharness/kharness/suites/internal/verdict"
	"github.com/kharness/kharness/suites/sysinfo"
)

// hugeMount is where tmpfsLargeFolio mounts its own tmpfs.
const hugeMount = "/tmp/kmt-huge"

// pmdSize is the THP size: from sysfs, else the architecture's (4 MiB on
// non-PAE i386, 2 MiB on x86_64).
func pmdSize(arch string) int {
	if data, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 0 {
			return n
		}
	}
	if arch == "386" {
		return 4 << 20
	}
	return 2 << 20
}

// largeFolioPages counts the pages of pfns that sit in fully populated,
// physically contiguous, PMD-aligned blocks: the footprint of huge
// folios (pagemap has no per-folio bit, contiguity is the evidence).
func largeFolioPages(pfns []uint64, block int) int {
	n := 0
	for s := 0; s+block <= len(pfns); s += block {
		first := pfns[s]
		ok := first != 0 && first%uint64(block) == 0
		for i := 1; ok && i < block; i++ {
			ok = pfns[s+i] == first+uint64(i)
		}
		if ok {
			n += block
		}
	}
	return n
}

// crossingWindow picks an I/O window in a file of size bytes that starts
// near a 4 KiB boundary (just before, on, or just after it) and crosses
// at least one more, up to a few pages long.
func crossingWindow(rng interface{ IntN(int) int }, size int) (off, n int) {
	pages := size / pageSize
	off = (1+rng.IntN(pages-2))*pageSize + rng.IntN(129) - 64
	toNext := pageSize - off%pageSize // bytes up to the next boundary
	n = toNext + 1 + rng.IntN(3*pageSize)
	if rng.IntN(16) == 0 {
		n = toNext + 1 + rng.IntN(size/2) // now and then a long one
	}
	if off+n > size {
		n = size - off
	}
	return off, n
}

// tmpfsLargeFolio mounts a tmpfs with huge=always and does writes and
// reads (pwrite/pread and vectored preadv) that start and end next to 4
// KiB boundaries inside the huge folios. On i386 a highmem huge folio
// cannot be mapped as one: the copies go page by page through
// kmap_local_page (read) and kmap_atomic (write), each crossing a
// boundary with a different mapping. The file must match an in-memory
// model byte for byte.
func tmpfsLargeFolio(c *tcase) {
	pmd := pmdSize(c.env.arch)
	fileSize := 2 * pmd * min(c.intensity, 4)
	workers := len(c.env.cpus)
	if err := os.MkdirAll(hugeMount, 0o755); err != nil {
		c.Fatalf("mkdir %s: %v", hugeMount, err)
	}
	opts := fmt.Sprintf("huge=always,size=%dk", (workers*fileSize+4*pmd)>>10)
	if err := unix.Mount("tmpfs", hugeMount, "tmpfs", 0, opts); err != nil {
		os.Remove(hugeMount)
		verdict.Config("CONFIG_TRANSPARENT_HUGEPAGE", fmt.Sprintf("tmpfs refuses -o %s at %s: %v", opts, hugeMount, err), c.env.cfg, c.env.cfgErr).Apply(c)
	}
	defer func() {
		if err := unix.Unmount(hugeMount, 0); err != nil {
			unix.Unmount(hugeMount, unix.MNT_DETACH)
		}
		os.Remove(hugeMount)
	}()
	mi0, _ := sysinfo.MemInfo()
	var k counter
	var hm lockedHighmem
	var wg sync.WaitGroup
	for i, cpu := range c.env.cpus {
		wg.Add(1)
		go func(id, cpu int) {
			defer wg.Done()
			c.folioWorker(id, cpu, fileSize, pmd, &k, &hm)
		}(i, cpu)
	}
	c.wait(&wg)
	mi1, _ := sysinfo.MemInfo()
	k.report(c)
	// Measurements: the huge pages in use before, the THP size.
	c.Metric("shmem_huge_kb_before", float64(mi0["ShmemHugePages"]))
	c.Metric("pmd_size_kb", float64(pmd>>10))
	if k.load("bytes_verified") == 0 {
		c.errorAll("no read was verified")
	}
	if k.load("large_folio_pages") == 0 {
		c.errorAll("huge=always accepted, yet no sampled page of the files sat in a PMD-sized folio (ShmemHugePages %d kB before, %d kB after): only small folios were exercised, not the per-page copies of a huge folio",
			mi0["ShmemHugePages"], mi1["ShmemHugePages"])
	}
	hm.report(c, "the huge tmpfs files")
}

func (c *tcase) folioWorker(id, cpu, size, pmd int, k *counter, hm *lockedHighmem) {
	if _, err := pinSelf(cpu); err != nil {
		c.fail("%s: cpu=%d depth=1 page=-: %v", c.name, cpu, err)
		return
	}
	path := filepath.Join(hugeMount, fmt.Sprintf("f%d", id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		c.fail("%s: cpu=%d depth=1 page=-: %v", c.name, cpu, err)
		return
	}
	defer f.Close()
	fd := int(f.Fd())
	rng := newRand(c.seed, uint64(id))
	model := make([]byte, size)
	fillRandom(rng, model)
	for off := 0; off < size; off += 64 << 10 { // sequential fill allocates whole huge folios
		if _, err := unix.Pwrite(fd, model[off:min(off+64<<10, size)], int64(off)); err != nil {
			c.fail("%s: cpu=%d depth=1 page=%d: initial pwrite: %v", c.name, cpu, off/pageSize, err)
			return
		}
	}
	c.sampleFolios(f, size, pmd, k, hm)
	buf := make([]byte, size)
	for round := 0; round < 2 || c.Running(); round++ {
		for i := 0; i < 16; i++ {
			off, n := crossingWindow(rng, size)
			fillRandom(rng, buf[:n])
			if _, err := unix.Pwrite(fd, buf[:n], int64(off)); err != nil {
				c.fail("%s: cpu=%d depth=1 page=%d: pwrite [%d,+%d): %v", c.name, cpu, off/pageSize, off, n, err)
				continue
			}
			copy(model[off:], buf[:n])
			k.add("bytes_written", int64(n))
		}
		for i := 0; i < 32; i++ {
			off, n := crossingWindow(rng, size)
			clear(buf[:n])
			var err error
			how := "pread"
			if i%2 == 1 {
				how = "preadv"
				a := rng.IntN(n + 1)
				b := a + rng.IntN(n-a+1)
				_, err = preadvFull(fd, [][]byte{buf[:a], buf[a:b], buf[b:n]}, int64(off))
			} else {
				err = uffd.PreadFull(fd, buf[:n], int64(off))
			}
			if err != nil {
				c.fail("%s: cpu=%d depth=1 page=%d: %s [%d,+%d): %v", c.name, cpu, off/pageSize, how, off, n, err)
				continue
			}
			if !bytes.Equal(buf[:n], model[off:off+n]) {
				d := off + max(diffIndex(buf[:n], model[off:off+n]), 0)
				c.fail("%s: cpu=%d depth=1 page=%d: %s [%d,+%d) returned wrong data at file offset %d (folio %d, subpage %d)",
					c.name, cpu, d/pageSize, how, off, n, d, d/pmd, (d%pmd)/pageSize)
			}
			k.add("bytes_verified", int64(n))
		}
		if round%8 == 7 {
			c.sampleFolios(f, size, pmd, k, hm)
		}
	}
	if err := uffd.PreadFull(fd, buf, 0); err != nil || !bytes.Equal(buf, model) {
		d := max(diffIndex(buf, model), 0)
		c.fail("%s: cpu=%d depth=1 page=%d: final full read differs from the model at offset %d (err %v)", c.name, cpu, d/pageSize, d, err)
	}
}

// sampleFolios maps the file, faults its pages in and records huge-folio
// and highmem evidence from their frames.
func (c *tcase) sampleFolios(f *os.File, size, pmd int, k *counter, hm *lockedHighmem) {
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		hm.mu.Lock()
		hm.err = err
		hm.mu.Unlock()
		return
	}
	defer unix.Munmap(m)
	var s byte
	for i := 0; i < size; i += pageSize {
		s += m[i]
	}
	sink.Add(uint32(s))
	if pfns, err := sysinfo.PFNs(addrOf(m), size); err == nil {
		k.add("large_folio_pages", int64(largeFolioPages(pfns, pmd/pageSize)))
	}
	hm.sample(c.env, m)
}

// preadvFull is preadv finishing short reads.
func preadvFull(fd int, iovs [][]byte, off int64) (int, error) {
	total := 0
	for {
		var rest [][]byte
		for _, v := range iovs {
			if len(v) > 0 {
				rest = append(rest, v)
			}
		}
		if len(rest) == 0 {
			return total, nil
		}
		n, err := unix.Preadv(fd, rest, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, fmt.Errorf("EOF at offset %d", off)
		}
		total, off = total+n, off+int64(n)
		for i := range rest {
			k := min(n, len(rest[i]))
			rest[i], n = rest[i][k:], n-k
		}
		iovs = rest
	}
}
