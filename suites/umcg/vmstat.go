package main

import (
	"fmt"
	"time"

	"github.com/kharness/kharness/suites/internal/gup"
)

// The pin-leak oracle: /proc/vmstat nr_foll_pin_acquired and
// nr_foll_pin_released count every FOLL_PIN pin and unpin since boot. The
// UMCG kernel pins a worker's struct page and its server's only while the
// worker is inside a system call or page fault, so once every task has
// quiesced (or exited) both must have moved by the same amount.

// pins is a reading of the two counters.
type pins struct{ acquired, released int64 }

func (p pins) held() int64 { return p.acquired - p.released }

// readPins reads the counters after folding the per-CPU deltas (see
// gup.ReadVMStat).
func readPins() (pins, error) {
	v, err := gup.ReadVMStat(true)
	if err != nil {
		return pins{}, err
	}
	return pinsOf(v)
}

// parsePins picks the two counters out of /proc/vmstat's text.
func parsePins(data []byte) (pins, error) {
	v, err := gup.ParseVMStat(data)
	if err != nil {
		return pins{}, err
	}
	return pinsOf(v)
}

func pinsOf(v gup.VMStat) (pins, error) {
	a, r, ok := v.Pins()
	if !ok {
		return pins{}, fmt.Errorf("vmstat: %s/%s missing", gup.PinAcquired, gup.PinReleased)
	}
	return pins{a, r}, nil
}

// pinLeak waits up to limit for the pins held to come back to base.held()
// and returns the excess still held (0 = balanced) and the pins taken
// since base.
func pinLeak(base pins, limit time.Duration) (excess, taken int64, err error) {
	deadline := time.Now().Add(limit)
	for {
		p, err := readPins()
		if err != nil {
			return 0, 0, err
		}
		excess, taken = p.held()-base.held(), p.acquired-base.acquired
		if excess == 0 || time.Now().After(deadline) {
			return excess, taken, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
