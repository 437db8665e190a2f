package main

// Host runs of the test bodies. The driver tests run against fakeDev, a
// user-space stand-in for kmap_local_test that keeps the ABI and the
// properties the suite relies on — deterministic COPY_TO_USER data per
// seed, user-memory accesses done by the kernel (pread/pwrite on a
// memfd, so userfaultfd faults are kernel-mode faults inside a system
// call, as in the driver), real context-switch counts — so that thread
// pinning, fault handling, affinity moves, result checking and failure
// reporting are exercised before a guest ever boots. Injected defects
// check that the suite notices them.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/suites/internal/uffd"
	"github.com/kharness/kharness/suites/suitetest"
)

// hostEnv is the real environment with the driver replaced by fakes and
// the i386-only expectations off (this host is not an i386 HIGHMEM
// kernel, even when the tests are built with GOARCH=386).
func hostEnv(t *testing.T, fake *fakeDriver) *env {
	t.Helper()
	e, err := detectEnv()
	if err != nil {
		t.Fatal(err)
	}
	e.arch = "host-" + runtime.GOARCH
	e.expect = expect{}
	e.preempt = false // SPIN preemption is a property of the guest kernel
	if fake != nil {
		e.newDev = fake.open
		e.readStats = fake.stats
	}
	return e
}

// runBody runs a test body for d and returns the collected results.
func runBody(t *testing.T, body func(*tcase), e *env, d time.Duration) *suitetest.T {
	t.Helper()
	h := suitetest.New(t, t.Name(), d)
	c := &tcase{tb: h, name: t.Name(), intensity: 1, seed: time.Now().UnixNano(), env: e}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.finish()
		body(c)
	}()
	select {
	case <-done:
	case <-time.After(d + 2*time.Minute):
		t.Fatalf("body still running 2 minutes after its deadline: %s", c.inflight.String())
	}
	t.Logf("metrics: %v", h.Metrics())
	return h
}

// needKernelUffd skips tests whose faults happen inside system calls when
// userfaultfd is not allowed to handle those here.
func needKernelUffd(t *testing.T) {
	t.Helper()
	f, err := uffd.New(unix.O_CLOEXEC, 0, 0)
	if err != nil {
		t.Skipf("kernel-mode userfaultfd unavailable: %v", err)
	}
	f.Close()
}

// fakeDriver is shared by every fakeDev a test opens.
type fakeDriver struct {
	runs, errs atomic.Int64
	opRuns     [opIRQ + 1]atomic.Int64 // per-op counters, as the driver keeps them
	pfn        atomic.Uint64
	inject     func(d *fakeDev, r *kmtReq)
	missing    bool
}

func (f *fakeDriver) open() (kmtDev, error) {
	if f.missing {
		return nil, &fs.PathError{Op: "open", Path: kmtRunPath, Err: fs.ErrNotExist}
	}
	fd, err := unix.MemfdCreate("fake-kmt", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &fakeDev{drv: f, memfd: fd}, nil
}

// fakeLimits are the real driver's depth limits on i386 with
// DEBUG_KMAP_LOCAL: 16 slots, 1 kept for the IRQ callback, 3 for the
// page fault path of the copy ops.
var fakeLimits = map[uint32]int{opNest: 16, opSleep: 16, opSpin: 16, opCopyToUser: 13, opCopyFromUser: 13, opIRQ: 15}

// stats is in the real driver's format ("name value" lines).
func (f *fakeDriver) stats() (map[string]int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "runs %d\nrejected 0\nerrors %d\ncpu_changed 0\nidx_leaked 0\nhighmem 0\nforce_map 0\n", f.runs.Load(), f.errs.Load())
	for _, op := range allOps {
		fmt.Fprintf(&b, "max_depth_%s %d\n", statOpNames[op], fakeLimits[op])
		fmt.Fprintf(&b, "%s %d\n", opStats[op], f.opRuns[op].Load())
	}
	return parseStats(b.String()), nil
}

type fakeDev struct {
	drv   *fakeDriver
	memfd int
	n     int // requests on this file, for non-determinism injection
}

func (d *fakeDev) Close() error { return unix.Close(d.memfd) }

// fakePattern is the fake driver's page contents: a function of seed and
// page only, like the real driver's.
func fakePattern(seed uint64, depth int) []byte {
	b := make([]byte, depth*pageSize)
	for p := 0; p < depth; p++ {
		fillRandom(newRand(int64(seed), uint64(p)), b[p*pageSize:(p+1)*pageSize])
	}
	return b
}

// kernelIO has the kernel read or write user memory at addr, as
// copy_{to,from}_user would: pread64/pwrite64 on the memfd at offset 0.
func (d *fakeDev) kernelIO(trap uintptr, addr uint64, n int) error {
	for done := 0; done < n; {
		r, _, e := unix.Syscall6(trap, uintptr(d.memfd), uintptr(addr)+uintptr(done), uintptr(n-done), uintptr(done), 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		if r == 0 {
			return errors.New("short transfer")
		}
		done += int(r)
	}
	return nil
}

func threadCsw() (int64, int64) {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return int64(ru.Nvcsw), int64(ru.Nivcsw)
}

func (d *fakeDev) Run(r *kmtReq) error {
	r.reset()
	copyOp := r.Op == opCopyToUser || r.Op == opCopyFromUser
	if r.Depth < 1 || r.Depth > kmtMaxDepth || opNames[r.Op] == "" || r.Flags&^kmtFlagLowmem != 0 || r.Pad0 != 0 ||
		r.SleepUS > 10_000_000 || r.SpinUS > 10_000_000 || copyOp && (r.UserLen == 0 || r.UserLen > uint64(r.Depth)*uint64(pageSize)) {
		return unix.EINVAL
	}
	if r.Flags == 0 && int(r.Depth) > fakeLimits[r.Op] {
		return unix.ENOSPC
	}
	d.n++
	v0, i0 := threadCsw()
	r.CPUBefore = uint32(getcpu())
	base := d.drv.pfn.Add(kmtMaxDepth)
	for i := 0; i < int(r.Depth); i++ {
		r.PFN[i] = 0x10000 + base + uint64(i)
		r.Vaddr[i] = 0xffff888000000000 + r.PFN[i]<<12
	}
	n := int(r.Depth) * pageSize
	switch r.Op {
	case opSleep:
		ts := unix.NsecToTimespec(int64(r.SleepUS) * 1000)
		unix.Nanosleep(&ts, nil)
	case opSpin:
		for end := time.Now().Add(time.Duration(r.SpinUS) * time.Microsecond); time.Now().Before(end); {
		}
	case opIRQ:
		r.IRQChecks = r.Depth
	case opCopyToUser:
		if _, err := unix.Pwrite(d.memfd, fakePattern(r.Seed, int(r.Depth)), 0); err != nil {
			return err
		}
		if err := d.kernelIO(unix.SYS_PREAD64, r.UserBuf, min(n, int(r.UserLen))); err != nil {
			return fmt.Errorf("fake copy_to_user: %w", err)
		}
	case opCopyFromUser:
		if err := d.kernelIO(unix.SYS_PWRITE64, r.UserBuf, min(n, int(r.UserLen))); err != nil {
			return fmt.Errorf("fake copy_from_user: %w", err)
		}
	}
	v1, i1 := threadCsw()
	r.Nvcsw, r.Nivcsw = uint32(v1-v0), uint32(i1-i0)
	r.CPUAfter = uint32(getcpu())
	r.IdxBefore, r.IdxAfter, r.Errors, r.KmapReal = 0, 0, 0, 0
	if d.drv.inject != nil {
		d.drv.inject(d, r)
	}
	d.drv.runs.Add(1)
	d.drv.opRuns[r.Op].Add(1)
	d.drv.errs.Add(int64(r.Errors))
	return nil
}

func TestHostDriverTests(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    func(*tcase)
		kernel  bool     // needs kernel-mode userfaultfd
		nonzero []string // metrics that must be > 0
	}{
		{"driver-nest", driverNest, false, []string{"runs_ok", "sweeps", "max_depth_copy_to_user", "kmt_runs"}},
		{"driver-sleep-preempt", driverSleepPreempt, false, []string{"sleep_ops", "spin_ops", "churn_runs", "sleep_op_switches"}},
		{"driver-uffd-fault", driverUffdFault, true, []string{"requests", "faults_in_section", "resolved_copy", "resolved_zeropage"}},
		{"driver-irq", driverIRQ, false, []string{"irq_ops", "irq_checks"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kernel {
				needKernelUffd(t)
			}
			fake := &fakeDriver{}
			e := hostEnv(t, fake)
			h := runBody(t, tc.body, e, 1500*time.Millisecond)
			if h.Skipped() != "" {
				t.Fatalf("skipped: %s", h.Skipped())
			}
			if len(h.Errors()) > 0 {
				t.Fatalf("%d failures, first: %s", len(h.Errors()), h.Errors()[0])
			}
			for _, m := range tc.nonzero {
				if h.Metrics()[m] <= 0 {
					t.Errorf("metric %s = %v, want > 0", m, h.Metrics()[m])
				}
			}
			if tc.name == "driver-uffd-fault" && len(e.cpus) > 1 && h.Metrics()["affinity_moves"] == 0 {
				t.Errorf("no blocked thread was moved to another CPU")
			}
		})
	}
}

// TestHostDriverDefects: the suite must notice a broken driver, and say
// where (case, CPU, depth, page).
func TestHostDriverDefects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   func(*tcase)
		kernel bool
		inject func(d *fakeDev, r *kmtReq)
		want   []string
	}{
		{"migration", driverNest, false, func(_ *fakeDev, r *kmtReq) {
			if r.Depth == 7 {
				r.CPUAfter = r.CPUBefore + 1
			}
		}, []string{"depth=7", "changed CPU inside the kmap_local section"}},
		{"leaked slot", driverNest, false, func(_ *fakeDev, r *kmtReq) {
			if r.Depth == 16 {
				r.IdxAfter = 1
			}
		}, []string{"depth=16", "kmap_ctrl.idx is 1"}},
		{"pattern errors and stats", driverSleepPreempt, false, func(_ *fakeDev, r *kmtReq) {
			if r.Op == opSpin {
				r.Errors = 1
			}
		}, []string{"op=SPIN", "pattern mismatches", "reports errors during this test"}},
		{"shared vaddr", driverIRQ, false, func(_ *fakeDev, r *kmtReq) {
			if r.Depth >= 3 {
				r.Vaddr[2] = r.Vaddr[0]
			}
		}, []string{"page=2", "share a slot"}},
		{"irq never ran", driverIRQ, false, func(_ *fakeDev, r *kmtReq) { r.IRQChecks = 0 }, []string{"irq_checks=0"}},
		{"non-deterministic copy", driverUffdFault, true, func(d *fakeDev, r *kmtReq) {
			if r.Op == opCopyToUser && d.n%2 == 0 && r.Depth >= 2 { // every other copy writes a different page 1
				buf := make([]byte, pageSize)
				fillWord(buf, uint32(d.n))
				d.kernelIO(unix.SYS_PREAD64, r.UserBuf+uint64(pageSize), 0) // keep the fake honest about faults
				unix.Pwrite(d.memfd, buf, 0)
				d.kernelIO(unix.SYS_PREAD64, r.UserBuf+uint64(pageSize), pageSize)
			}
		}, []string{"page=1", "COPY_TO_USER"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kernel {
				needKernelUffd(t)
			}
			fake := &fakeDriver{inject: tc.inject}
			h := runBody(t, tc.body, hostEnv(t, fake), 700*time.Millisecond)
			all := strings.Join(h.Errors(), "\n")
			if len(h.Errors()) == 0 {
				t.Fatal("the defect went unnoticed")
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no failure mentions %q; got:\n%s", w, all)
				}
			}
			for _, e := range h.Errors() {
				if strings.Contains(e, "more failures not shown") || strings.Contains(e, "reports errors during") {
					continue
				}
				if !strings.Contains(e, "cpu=") || !strings.Contains(e, "depth=") || !strings.Contains(e, "page=") {
					t.Errorf("failure does not name cpu, depth and page: %s", e)
				}
			}
		})
	}
}

// TestHostDriverMissing: without the driver the driver tests skip only
// on a kernel without patch set kmap-local (per its command line) that is
// not built with the driver either; otherwise they fail, saying why.
func TestHostDriverMissing(t *testing.T) {
	applied := guest.BootArgs{PatchSets: []string{"cow", "kmap-local", "umcg"}}
	stock := guest.BootArgs{PatchSets: []string{"cow"}}
	for _, tc := range []struct {
		name     string
		cfg      map[string]string
		boot     guest.BootArgs
		bootErr  error
		wantSkip bool
		word     string
	}{
		{"stock kernel, option not set", map[string]string{}, stock, nil, true, kmtConfig + " is not set"},
		{"stock kernel, module", map[string]string{kmtConfig: "m"}, stock, nil, true, kmtConfig + "=m"},
		{"stock kernel, built in", map[string]string{kmtConfig: "y"}, stock, nil, false, kmtConfig + "=y"},
		{"stock kernel, config unreadable", nil, stock, nil, false, "cannot be told"},
		{"patch set applied", map[string]string{}, applied, nil, false, "although patch set kmap-local is applied"},
		{"patch set applied, built in", map[string]string{kmtConfig: "y"}, applied, nil, false, "although patch set kmap-local is applied"},
		{"command line unreadable", map[string]string{}, guest.BootArgs{}, errors.New("bad kharness value"), false, "cannot be told"},
	} {
		e := hostEnv(t, &fakeDriver{missing: true})
		e.cfg, e.boot, e.bootErr = tc.cfg, tc.boot, tc.bootErr
		if tc.cfg == nil {
			e.cfgErr = errors.New("no /proc/config.gz")
		}
		h := runBody(t, driverNest, e, time.Second)
		if tc.wantSkip && (h.Skipped() == "" || len(h.Errors()) > 0 || !strings.Contains(h.Skipped(), tc.word)) {
			t.Errorf("%s: skip %q errs %v, want a skip naming %q", tc.name, h.Skipped(), h.Errors(), tc.word)
		}
		if !tc.wantSkip && (h.Skipped() != "" || len(h.Errors()) != 1 || !strings.Contains(h.Errors()[0], tc.word) || !strings.Contains(h.Errors()[0], kmtRunPath+" missing")) {
			t.Errorf("%s: skip %q errs %v, want one failure naming %q", tc.name, h.Skipped(), h.Errors(), tc.word)
		}
	}
}

// TestHostUserspaceTests runs the driver-less tests for real on this
// machine (they need no patched kernel; tmpfs-large-folio needs root to
// mount).
func TestHostUserspaceTests(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    func(*tcase)
		kernel  bool
		root    bool
		nonzero []string
	}{
		{"uffd-read-tmpfs", uffdReadTmpfs, true, false, []string{"reads", "sleeps_in_section", "churn_reads"}},
		{"uffd-copy-unpopulated", uffdCopyUnpopulated, true, false, []string{"copies_anon", "copies_file", "copies_uffd", "efault_ok", "sleeps_in_section"}},
		{"fork-cow-highmem", forkCOWHighmem, false, false, []string{"forks", "parent_cow_pages"}},
		{"tmpfs-large-folio", tmpfsLargeFolio, false, true, []string{"bytes_verified", "bytes_written"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kernel {
				needKernelUffd(t)
			}
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root")
			}
			h := runBody(t, tc.body, hostEnv(t, nil), 1500*time.Millisecond)
			if h.Skipped() != "" {
				t.Skipf("skipped: %s", h.Skipped())
			}
			if len(h.Errors()) > 0 {
				t.Fatalf("%d failures, first: %s", len(h.Errors()), h.Errors()[0])
			}
			for _, m := range tc.nonzero {
				if h.Metrics()[m] <= 0 {
					t.Errorf("metric %s = %v, want > 0", m, h.Metrics()[m])
				}
			}
		})
	}
}

// TestForkDetectsChildLeak: a fork round must fail when the parent's
// view changes behind its back — simulated by rewriting a stamp the
// child wrote into the parent's expectation.
func TestForkDetectsCorruption(t *testing.T) {
	h := suitetest.New(t, t.Name(), time.Second)
	c := &tcase{tb: h, name: t.Name(), intensity: 1, env: hostEnv(t, nil)}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		w, err := newForkWorker(c, 0, 64*pageSize)
		if err != nil {
			done <- err
			return
		}
		defer w.close()
		if err := w.round(1); err != nil {
			done <- fmt.Errorf("clean round failed: %w", err)
			return
		}
		w.stamps[5] ^= 1 // the child now expects a pre-fork value the page does not have
		err = w.round(2)
		if err == nil || !strings.Contains(err.Error(), "page=5") || !strings.Contains(err.Error(), "pre-fork snapshot") {
			done <- fmt.Errorf("corrupted snapshot round: %v, want a child report naming page=5", err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("fork rounds hung")
	}
}
