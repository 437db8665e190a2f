package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/event"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/internal/standin"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/target"
)

// qemu is the stand-in QEMU, built on first use; TestMain removes it.
var qemu standin.QEMU

func TestMain(m *testing.M) {
	code := m.Run()
	qemu.Cleanup()
	os.Exit(code)
}

// TestVerdictThroughBoot replays the guest streams through the
// stand-in QEMU, the real boot.Run and results.Cell: a suite that never
// starts or dies between tests is not green, and a mutant is caught only
// by a test failing, never by a watchdog or a dead agent.
func TestVerdictThroughBoot(t *testing.T) {
	bin, err := qemu.Path()
	if err != nil {
		t.Fatal(err)
	}
	ev := func(js string) string { return "event " + js + "\n" }
	hello := "console [    0.000000] Linux version 6.12.57 (kharness@kharness) (gcc 12) #1 SMP\n" + ev(`{"type":"hello"}`)
	declared := make([]string, 16)
	for i := range declared {
		declared[i] = fmt.Sprintf(`"t%d"`, i)
	}
	cowStart := ev(`{"type":"suite-start","suite":"cow","tests":[` + strings.Join(declared, ",") + `]}`)
	done := ev(`{"type":"done"}`) + "exit 0\n"
	tests := []struct {
		name          string
		script        string
		normal, xfail outcome.Outcome
	}{
		{"a test starts, then silence past no_output",
			hello + cowStart + ev(`{"type":"test-start","suite":"cow","test":"t0"}`) + "hang\n",
			outcome.Timeout, outcome.Mismatch},
		{"guest powers off before done",
			hello + cowStart + ev(`{"type":"test-start","suite":"cow","test":"t0"}`) + ev(`{"type":"test-end","suite":"cow","test":"t0","result":"pass"}`) + "exit 0\n",
			outcome.KernelCrash, outcome.Mismatch},
		{"suite-end fail (segfault) after 1 of 16 tests",
			hello + cowStart + ev(`{"type":"test-start","suite":"cow","test":"t0"}`) + ev(`{"type":"test-end","suite":"cow","test":"t0","result":"pass"}`) +
				ev(`{"type":"suite-end","suite":"cow","result":"fail","message":"suite exited: signal: segmentation fault"}`) + done,
			outcome.TestFail, outcome.Mismatch},
		{"suite-end fail (/bin/cow: no such file), 0 tests",
			hello + ev(`{"type":"suite-start","suite":"cow"}`) + ev(`{"type":"suite-end","suite":"cow","result":"fail","message":"start /bin/cow: fork/exec /bin/cow: no such file or directory"}`) + done,
			outcome.TestFail, outcome.Mismatch},
		{"suite-end timeout while no test runs",
			hello + cowStart + ev(`{"type":"suite-end","suite":"cow","result":"timeout","message":"suite cow killed after its 5m0s deadline"}`) + done,
			outcome.Timeout, outcome.Mismatch},
		{"every test skipped",
			hello + ev(`{"type":"suite-start","suite":"cow","tests":["t0","t1"]}`) + ev(`{"type":"test-end","suite":"cow","test":"t0","result":"skip","message":"no THP"}`) +
				ev(`{"type":"test-end","suite":"cow","test":"t1","result":"skip","message":"no THP"}`) + ev(`{"type":"suite-end","suite":"cow","result":"pass"}`) + done,
			outcome.AllSkipped, outcome.AllSkipped},
		{"the named test fails",
			hello + ev(`{"type":"suite-start","suite":"cow","tests":["t0","t1"]}`) + ev(`{"type":"test-end","suite":"cow","test":"t0","result":"pass"}`) +
				ev(`{"type":"test-end","suite":"cow","test":"t1","result":"fail","message":"child saw the parent's write"}`) + ev(`{"type":"suite-end","suite":"cow","result":"fail","message":"suite exited: exit status 1"}`) + done,
			outcome.TestFail, outcome.ExpectedFail},
	}
	for _, tc := range tests {
		for _, expect := range []bool{false, true} {
			name := tc.name
			if expect {
				name += "/expect fail"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				script := filepath.Join(dir, "script")
				os.WriteFile(script, []byte(tc.script), 0o644)
				tg, _ := target.Lookup("x86_64")
				tg.QEMU = bin
				spec := boot.Spec{Target: tg, Kernel: "/k", Initrd: "/i", Accel: boot.TCG, Dir: dir,
					Cmdline: []string{"fakeqemu.script=" + script},
					Guest:   guest.BootArgs{Mode: guest.ModeRun, Suites: []guest.Suite{{Name: "cow", Deadline: time.Hour}}},
					Boot:    5 * time.Second, NoOutput: time.Second, Overall: time.Minute}
				c := &results.Cell{Suites: []string{"cow"}}
				if expect {
					c.Expect = &outcome.Expectation{}
					if strings.Contains(tc.name, "named") {
						c.Expect.Fail = []string{"cow:t1"}
					}
				}
				br, err := boot.Run(context.Background(), spec, func(e event.Event) { c.Apply(e) })
				if err != nil {
					t.Fatal(err)
				}
				c.Finish((&Pipeline{}).bootVerdict(br, c))
				want := tc.normal
				if expect {
					want = tc.xfail
				}
				if c.Outcome != want {
					t.Errorf("outcome %s (raw %s: %s), want %s", c.Outcome, c.Raw, c.Reason, want)
				}
				if want.Failed() && c.Reason == "" {
					t.Errorf("a failed cell without a reason")
				}
			})
		}
	}
}
