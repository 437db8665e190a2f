package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kmap_local_test driver (lib/test_kmap_local.c, CONFIG_TEST_KMAP_LOCAL,
// added by a kharness patch): debugfs files and its ioctl ABI, mirrored
// field for field from struct kmt_req.
const (
	kmtDir       = "/sys/kernel/debug/kmap_local_test"
	kmtRunPath   = kmtDir + "/run"
	kmtStatsPath = kmtDir + "/stats"
	kmtConfig    = "CONFIG_TEST_KMAP_LOCAL"

	// kmtMaxDepth is KMT_MAX_DEPTH: the driver nests at most 16 maps,
	// which is also what KM_MAX_IDX leaves usable with DEBUG_KMAP_LOCAL.
	kmtMaxDepth = 16
)

// Ops (KMT_OP_*): the disturbance done at the innermost depth.
const (
	opNest         = 1 // nothing: map, verify, unmap
	opSleep        = 2 // usleep(sleep_us): voluntary switch with the maps live
	opSpin         = 3 // busy spin_us with preemption on: involuntary switch
	opCopyToUser   = 4 // copy_to_user(user_buf, pages, user_len): may fault
	opCopyFromUser = 5 // copy_from_user into the mapped pages, verify
	opIRQ          = 6 // hrtimer callbacks map+verify a page in hard irq
)

// kmtFlagLowmem (KMT_F_LOWMEM) allocates lowmem pages: real maps only
// with DEBUG_KMAP_LOCAL_FORCE_MAP.
const kmtFlagLowmem = 1

var opNames = map[uint32]string{opNest: "NEST", opSleep: "SLEEP", opSpin: "SPIN",
	opCopyToUser: "COPY_TO_USER", opCopyFromUser: "COPY_FROM_USER", opIRQ: "IRQ"}

// allOps lists the ops in ABI order.
var allOps = []uint32{opNest, opSleep, opSpin, opCopyToUser, opCopyFromUser, opIRQ}

func opName(op uint32) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("op%d", op)
}

// kmtReq mirrors struct kmt_req. Every __u64 is at an 8-byte offset
// thanks to the explicit pads, so Go's 4-byte alignment of uint64 on 386
// gives the same 352-byte layout as x86_64 (pinned by a unit test).
type kmtReq struct {
	Op, Depth, Flags, SleepUS, SpinUS, Pad0 uint32
	UserBuf, UserLen, Seed                  uint64
	// out
	CPUBefore, CPUAfter, IdxBefore, IdxAfter uint32
	NrHighmem, Errors, IRQChecks, IRQErrors  uint32
	Nvcsw, Nivcsw, KmapReal, Pad1            uint32
	Vaddr                                    [kmtMaxDepth]uint64
	PFN                                      [kmtMaxDepth]uint64
}

// kmtIocRun is KMT_IOC_RUN = _IOWR('k', 1, struct kmt_req).
const kmtIocRun = 3<<30 | uintptr(unsafe.Sizeof(kmtReq{}))<<16 | 'k'<<8 | 1

// reset clears the out fields so that a driver that forgets one cannot
// pass on a previous run's values.
func (r *kmtReq) reset() {
	in := *r
	*r = kmtReq{Op: in.Op, Depth: in.Depth, Flags: in.Flags, SleepUS: in.SleepUS, SpinUS: in.SpinUS, Pad0: in.Pad0,
		UserBuf: in.UserBuf, UserLen: in.UserLen, Seed: in.Seed}
	// Poison the out fields a correct driver must overwrite.
	r.CPUBefore, r.CPUAfter = ^uint32(0), ^uint32(1)
	r.IdxAfter, r.Errors, r.KmapReal = ^uint32(0), ^uint32(0), ^uint32(0)
}

// String is the request part of a failure message.
func (r *kmtReq) String() string {
	s := fmt.Sprintf("op=%s depth=%d flags=%#x seed=%#x", opName(r.Op), r.Depth, r.Flags, r.Seed)
	switch r.Op {
	case opSleep:
		s += fmt.Sprintf(" sleep_us=%d", r.SleepUS)
	case opSpin:
		s += fmt.Sprintf(" spin_us=%d", r.SpinUS)
	case opIRQ:
		s += fmt.Sprintf(" spin_us=%d sleep_us=%d", r.SpinUS, r.SleepUS)
	case opCopyToUser, opCopyFromUser:
		s += fmt.Sprintf(" user_buf=%#x user_len=%d", r.UserBuf, r.UserLen)
	}
	return s
}

// outString summarises the driver's answer for failure messages.
func (r *kmtReq) outString() string {
	return fmt.Sprintf("cpu %d->%d idx %d->%d nr_highmem=%d errors=%d irq=%d/%d errs csw=%d/%d kmap_real=%d",
		r.CPUBefore, r.CPUAfter, r.IdxBefore, r.IdxAfter, r.NrHighmem, r.Errors, r.IRQChecks, r.IRQErrors,
		r.Nvcsw, r.Nivcsw, r.KmapReal)
}

// kmtDev runs requests; the real one is the debugfs file, host tests use
// a fake.
type kmtDev interface {
	Run(r *kmtReq) error
	Close() error
}

// kmtFile is an open kmap_local_test/run file.
type kmtFile struct{ f *os.File }

func openKmt() (*kmtFile, error) {
	f, err := os.OpenFile(kmtRunPath, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &kmtFile{f: f}, nil
}

// Run issues KMT_IOC_RUN. unix.Syscall, not RawSyscall: SLEEP and
// faulting COPY requests block for long, and a goroutine blocked in a raw
// system call would keep its P and stall the garbage collector — and with
// it the goroutines serving the faults the request waits for.
func (k *kmtFile) Run(r *kmtReq) error {
	r.reset()
	_, _, e := unix.Syscall(unix.SYS_IOCTL, k.f.Fd(), kmtIocRun, uintptr(unsafe.Pointer(r)))
	runtime.KeepAlive(r)
	if e != 0 {
		return fmt.Errorf("KMT_IOC_RUN %s: %w", r, e)
	}
	return nil
}

func (k *kmtFile) Close() error { return k.f.Close() }

// parseStats reads the driver's stats file. Its format is the driver's
// choice, so this accepts the usual debugfs shapes — "key: value",
// "key value", "key=value" (several per line allowed) — and keeps the
// numeric values (decimal or 0x hex) under lower-case keys.
func parseStats(text string) map[string]int64 {
	m := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "=") {
			for _, tok := range strings.Fields(line) {
				if k, v, ok := strings.Cut(tok, "="); ok {
					addStat(m, k, v)
				}
			}
			continue
		}
		var k, v string
		if i := strings.IndexByte(line, ':'); i >= 0 {
			k, v = line[:i], line[i+1:]
		} else if f := strings.Fields(line); len(f) >= 2 {
			k, v = strings.Join(f[:len(f)-1], "_"), f[len(f)-1]
		} else {
			continue
		}
		if f := strings.Fields(v); len(f) > 0 {
			addStat(m, k, f[0])
		}
	}
	return m
}

func addStat(m map[string]int64, k, v string) {
	k = strings.ToLower(strings.Join(strings.Fields(strings.TrimSpace(k)), "_"))
	v = strings.TrimRight(strings.TrimSpace(v), ",;")
	if k == "" {
		return
	}
	if n, err := strconv.ParseInt(v, 0, 64); err == nil {
		m[k] = n
	} else if u, err := strconv.ParseUint(v, 0, 64); err == nil {
		m[k] = int64(u >> 1) // absurdly large: keep it positive and large
	}
}

// isErrorStat says whether a stats counter counts something that must
// never happen: pattern mismatches in task or irq context ("errors",
// "irq_errors"), a CPU change inside a fixmap section ("cpu_changed") and
// an unbalanced kmap_ctrl.idx ("idx_leaked"). "rejected" and "failed"
// are not: the suite provokes rejections on purpose and reports failed
// requests itself.
func isErrorStat(k string) bool {
	return strings.Contains(k, "error") || strings.Contains(k, "mismatch") || k == "cpu_changed" || k == "idx_leaked"
}

// isCounterStat tells the counters from the configuration lines of the
// stats file (highmem, debug_kmap_local, force_map, max_depth_<op>).
func isCounterStat(k string) bool {
	switch k {
	case "highmem", "debug_kmap_local", "force_map":
		return false
	}
	return !strings.HasPrefix(k, "max_depth_")
}

// statErrors sums the error counters of a stats reading.
func statErrors(m map[string]int64) (int64, []string) {
	var sum int64
	var names []string
	for k, v := range m {
		if isErrorStat(k) {
			sum += v
			if v != 0 {
				names = append(names, fmt.Sprintf("%s=%d", k, v))
			}
		}
	}
	sort.Strings(names)
	return sum, names
}

// statOpNames are the op names of the stats file's max_depth_<op> lines.
var statOpNames = map[uint32]string{opNest: "nest", opSleep: "sleep", opSpin: "spin",
	opCopyToUser: "copy_to_user", opCopyFromUser: "copy_from_user", opIRQ: "irq"}

// depthLimits reads the largest depth the driver accepts per op (with
// flags 0) from its stats: on i386 HIGHMEM the task's kmap_local stack
// holds 16 maps (15 without DEBUG_KMAP_LOCAL), and the IRQ and copy ops
// keep 1 and 3 of them for the irq callback and the page fault path;
// deeper requests get ENOSPC. Missing lines mean no limit below 16.
func depthLimits(m map[string]int64) map[uint32]int {
	lim := map[uint32]int{}
	for _, op := range allOps {
		lim[op] = kmtMaxDepth
		if v, ok := m["max_depth_"+statOpNames[op]]; ok && v >= 0 && v < kmtMaxDepth {
			lim[op] = int(v)
		}
	}
	return lim
}

func readStats() (map[string]int64, error) {
	data, err := os.ReadFile(kmtStatsPath)
	if err != nil {
		return nil, err
	}
	return parseStats(string(data)), nil
}
