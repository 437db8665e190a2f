package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// /proc/self/pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent   = 1 << 63
	pmExclusive = 1 << 56 // page mapped exactly once (fs/proc/task_mmu.c)
	pmPFNMask   = 1<<55 - 1
)

// pagemap returns the pagemap entries of the pages of b.
func pagemap(b []byte) ([]uint64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, fmt.Errorf("pagemap: %w", err)
	}
	defer f.Close()
	n := (len(b) + pageSize - 1) / pageSize
	raw := make([]byte, 8*n)
	if _, err := f.ReadAt(raw, int64(addrOf(b)/uintptr(pageSize))*8); err != nil {
		return nil, fmt.Errorf("pagemap: %w", err)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(raw[8*i:])
	}
	return out, nil
}

// pfns returns the page frames of b (0: not present).
func pfns(b []byte) ([]uint64, error) {
	pm, err := pagemap(b)
	if err != nil {
		return nil, err
	}
	for i, e := range pm {
		if e&pmPresent != 0 {
			pm[i] = e & pmPFNMask
		} else {
			pm[i] = 0
		}
	}
	return pm, nil
}

// exclusiveMismatch returns the first page of entries whose exclusive
// bit is not want, or -1.
func exclusiveMismatch(entries []uint64, want bool) int {
	for i, e := range entries {
		if e&pmPresent == 0 || (e&pmExclusive != 0) != want {
			return i
		}
	}
	return -1
}

// contiguousFolio checks that the frames are present, consecutive and
// start aligned to their number: how a large folio of that many pages
// looks in the pagemap.
func contiguousFolio(frames []uint64, folioPages int) error {
	if len(frames) == 0 {
		return fmt.Errorf("no pages")
	}
	if frames[0] == 0 {
		return fmt.Errorf("page 0 not present (or PFNs hidden: not root?)")
	}
	if frames[0]%uint64(folioPages) != 0 {
		return fmt.Errorf("first pfn %#x not aligned to %d pages", frames[0], folioPages)
	}
	for i, f := range frames {
		if f != frames[0]+uint64(i) {
			return fmt.Errorf("page %d at pfn %#x, not %#x: not one folio", i, f, frames[0]+uint64(i))
		}
	}
	return nil
}

// kpageflags bits.
const kpfTHP = 1 << 22

// pageFlags reads /proc/kpageflags for pfn.
func pageFlags(pfn uint64) (uint64, error) {
	f, err := os.Open("/proc/kpageflags")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(pfn)*8); err != nil {
		return 0, fmt.Errorf("kpageflags: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// anonHugeKB returns the AnonHugePages of the mapping that contains
// addr, from /proc/self/smaps: how much of it is mapped by PMDs.
func anonHugeKB(addr uintptr) (int, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("smaps: %w", err)
	}
	return parseAnonHugeKB(data, addr)
}

// parseAnonHugeKB finds the mapping containing addr in smaps text.
func parseAnonHugeKB(smaps []byte, addr uintptr) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	in := false
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = uint64(addr) >= a && uint64(addr) < b
				continue
			}
		}
		if in && f[0] == "AnonHugePages:" && len(f) >= 2 {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("smaps: no mapping with AnonHugePages contains %#x", addr)
}

// pageCount reads pfn's /proc/kpagecount entry: how many times the page
// is mapped.
func pageCount(pfn uint64) (uint64, error) {
	f, err := os.Open("/proc/kpagecount")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(pfn)*8); err != nil {
		return 0, fmt.Errorf("kpagecount: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}
