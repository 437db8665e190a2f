// Package sysinfo reads what a suite needs to know about the guest kernel
// it runs on: its configuration, memory zones and the physical frames
// behind user memory. Suites use it to prove that a test really exercised
// what it claims (e.g. that its pages came from highmem).
package sysinfo

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KernelConfig parses /proc/config.gz (CONFIG_IKCONFIG_PROC).
func KernelConfig() (map[string]string, []byte, error) {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return nil, nil, fmt.Errorf("kernel config: %w (is CONFIG_IKCONFIG_PROC set?)", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("/proc/config.gz: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, nil, fmt.Errorf("/proc/config.gz: %w", err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			m[k] = v
		}
	}
	return m, raw, nil
}

// MemInfo parses /proc/meminfo into kB values.
func MemInfo() (map[string]uint64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err == nil {
			m[k] = n
		}
	}
	return m, nil
}

// Zone is one memory zone of node 0 from /proc/zoneinfo.
type Zone struct {
	Name     string
	StartPFN uint64
	Spanned  uint64
	Present  uint64
}

// Contains reports whether pfn lies in the zone's span.
func (z Zone) Contains(pfn uint64) bool {
	return z.Spanned > 0 && pfn >= z.StartPFN && pfn < z.StartPFN+z.Spanned
}

// Zones parses /proc/zoneinfo.
func Zones() (map[string]Zone, error) {
	data, err := os.ReadFile("/proc/zoneinfo")
	if err != nil {
		return nil, err
	}
	zones := map[string]Zone{}
	var cur *Zone
	flush := func() {
		if cur != nil {
			zones[cur.Name] = *cur
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "Node" && f[2] == "zone" {
			flush()
			cur = &Zone{Name: f[3]}
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "start_pfn:":
			cur.StartPFN = n
		case "spanned":
			cur.Spanned = n
		case "present":
			cur.Present = n
		}
	}
	flush()
	return zones, nil
}

// PFNs returns the physical frame of each page in [addr, addr+length) from
// /proc/self/pagemap; 0 means not present. Needs CAP_SYS_ADMIN for real PFNs.
func PFNs(addr uintptr, length int) ([]uint64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ps := uintptr(os.Getpagesize())
	n := (length + int(ps) - 1) / int(ps)
	buf := make([]byte, 8*n)
	if _, err := f.ReadAt(buf, int64(addr/ps)*8); err != nil {
		return nil, fmt.Errorf("pagemap: %w", err)
	}
	out := make([]uint64, n)
	for i := range out {
		e := binary.LittleEndian.Uint64(buf[8*i:])
		if e&(1<<63) != 0 {
			out[i] = e & ((1 << 55) - 1)
		}
	}
	return out, nil
}

// Addr returns the address of a byte slice's first element.
func Addr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// Uname returns release, version and machine.
func Uname() (release, version, machine string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", "", ""
	}
	return unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:])
}

// Mounted reports whether a file system of type fstype is mounted at dir.
func Mounted(dir, fstype string) bool {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == dir && f[2] == fstype {
			return true
		}
	}
	return false
}
