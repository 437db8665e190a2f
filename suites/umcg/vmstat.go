package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The pin-leak oracle: /proc/vmstat nr_foll_pin_acquired and
// nr_foll_pin_released count every FOLL_PIN pin and unpin since boot. The
// UMCG kernel pins a worker's struct page and its server's only while the
// worker is inside a system call or page fault, so once every task has
// quiesced (or exited) both must have moved by the same amount.

// pins is a reading of the two counters.
type pins struct{ acquired, released int64 }

func (p pins) held() int64 { return p.acquired - p.released }

// readPins reads the counters after folding the per-CPU deltas (they are
// node stats with per-CPU thresholds: without /proc/sys/vm/stat_refresh
// two reads disagree by more than a test pins).
func readPins() (pins, error) {
	if err := os.WriteFile("/proc/sys/vm/stat_refresh", []byte("1\n"), 0); err != nil && !os.IsNotExist(err) {
		return pins{}, fmt.Errorf("stat_refresh: %w", err)
	}
	data, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return pins{}, fmt.Errorf("vmstat: %w", err)
	}
	return parsePins(data)
}

// parsePins picks the two counters out of /proc/vmstat.
func parsePins(data []byte) (pins, error) {
	var p pins
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		var dst *int64
		switch f[0] {
		case "nr_foll_pin_acquired":
			dst = &p.acquired
		case "nr_foll_pin_released":
			dst = &p.released
		default:
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return pins{}, fmt.Errorf("vmstat %s: %w", f[0], err)
		}
		*dst = v
		seen++
	}
	if seen != 2 {
		return pins{}, fmt.Errorf("vmstat: nr_foll_pin_acquired/released missing")
	}
	return p, nil
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
