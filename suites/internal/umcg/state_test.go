package umcg

import "testing"

func TestStateHelpers(t *testing.T) {
	for _, tc := range []struct {
		v                 uint32
		state             uint32
		running, runnable bool
		format            string
	}{
		{0, StateNone, false, false, "NONE"},
		{StateRunning, StateRunning, true, false, "RUNNING"},
		{StateRunning | TFPreempt, StateRunning, true, false, "RUNNING|PREEMPT"},
		{StateRunnable | TFCondWait, StateRunnable, false, true, "RUNNABLE|COND_WAIT"},
		{StateBlocked, StateBlocked, false, false, "BLOCKED"},
		{StateRunning | UserPreemptible, StateRunning, true, false, "RUNNING|user=0x1"},
		{StateRunnable | TFPreempt | TFCondWait | 0x400, StateRunnable, false, true, "RUNNABLE|PREEMPT|COND_WAIT|tf=0x400"},
		{0x7, 0x7, false, false, "state(0x7)"},
		{0xabcd0001, StateRunning, true, false, "RUNNING|user=0xabcd"},
	} {
		if got := StateOf(tc.v); got != tc.state {
			t.Errorf("StateOf(%#x) = %#x, want %#x", tc.v, got, tc.state)
		}
		if got := IsRunning(tc.v); got != tc.running {
			t.Errorf("IsRunning(%#x) = %v", tc.v, got)
		}
		if got := IsRunnable(tc.v); got != tc.runnable {
			t.Errorf("IsRunnable(%#x) = %v", tc.v, got)
		}
		if got := FormatState(tc.v); got != tc.format {
			t.Errorf("FormatState(%#x) = %q, want %q", tc.v, got, tc.format)
		}
	}
}

func TestFormatTID(t *testing.T) {
	for _, tc := range []struct {
		v    uint32
		want string
	}{
		{0, "0"},
		{1234, "1234"},
		{1234 | TIDRunning, "1234|RUNNING"},
		{0x40000000 | 7, "7|junk=0x40000000"},
	} {
		if got := FormatTID(tc.v); got != tc.want {
			t.Errorf("FormatTID(%#x) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
