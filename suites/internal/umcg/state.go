package umcg

import (
	"fmt"
	"strings"
)

// StateOf returns the state part (bits 0-7) of a state word.
//
//go:nosplit
func StateOf(v uint32) uint32 { return v & StateMask }

// IsRunning reports whether a state word says RUNNING, whatever its flags.
//
//go:nosplit
func IsRunning(v uint32) bool { return v&StateMask == StateRunning }

// IsRunnable reports whether a state word says RUNNABLE, whatever its flags.
//
//go:nosplit
func IsRunnable(v uint32) bool { return v&StateMask == StateRunnable }

var stateNames = [...]string{"NONE", "RUNNING", "RUNNABLE", "BLOCKED"}

// FormatState renders a state word for reports: "RUNNABLE|COND_WAIT",
// "RUNNING|PREEMPT|user=0x1", "state(0x7)" for states the ABI lacks.
func FormatState(v uint32) string {
	var b strings.Builder
	if s := v & StateMask; int(s) < len(stateNames) {
		b.WriteString(stateNames[s])
	} else {
		fmt.Fprintf(&b, "state(%#x)", s)
	}
	if v&TFPreempt != 0 {
		b.WriteString("|PREEMPT")
	}
	if v&TFCondWait != 0 {
		b.WriteString("|COND_WAIT")
	}
	if f := v & TFMask &^ (TFPreempt | TFCondWait); f != 0 {
		fmt.Fprintf(&b, "|tf=%#x", f)
	}
	if u := v & UserMask; u != 0 {
		fmt.Fprintf(&b, "|user=%#x", u>>16)
	}
	return b.String()
}

// FormatTID renders a next_tid word: "1234", "1234|RUNNING", "0".
func FormatTID(v uint32) string {
	s := fmt.Sprint(v & TIDMask)
	if v&TIDRunning != 0 {
		s += "|RUNNING"
	}
	if r := v &^ (TIDMask | TIDRunning); r != 0 {
		s += fmt.Sprintf("|junk=%#x", r)
	}
	return s
}
