package gup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// VMStat is /proc/vmstat as name → value.
type VMStat map[string]int64

// statRefresh folds every CPU's pending vmstat deltas into the global
// counters. The FOLL_PIN counters are node stats with per-CPU
// thresholds (tens of pages on a small guest), so without a refresh two
// reads can disagree by more than a test pins.
const statRefresh = "/proc/sys/vm/stat_refresh"

// ReadVMStat reads /proc/vmstat, after folding the per-CPU deltas when
// refresh is set and the kernel has /proc/sys/vm/stat_refresh (root).
func ReadVMStat(refresh bool) (VMStat, error) {
	if refresh {
		if err := os.WriteFile(statRefresh, []byte("1\n"), 0); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("%s: %w", statRefresh, err)
		}
	}
	data, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return nil, fmt.Errorf("vmstat: %w", err)
	}
	return ParseVMStat(data)
}

// ParseVMStat parses the "name value" lines of /proc/vmstat.
func ParseVMStat(data []byte) (VMStat, error) {
	m := VMStat{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("vmstat: bad line %q", sc.Text())
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("vmstat: %s: %w", f[0], err)
		}
		m[f[0]] = v
	}
	return m, sc.Err()
}

// Names of the FOLL_PIN accounting counters (mm/vmstat.c; always there).
const (
	PinAcquired = "nr_foll_pin_acquired"
	PinReleased = "nr_foll_pin_released"
)

// Pins returns the pages pinned and unpinned since boot.
func (v VMStat) Pins() (acquired, released int64, ok bool) {
	a, ok1 := v[PinAcquired]
	r, ok2 := v[PinReleased]
	return a, r, ok1 && ok2
}

// Delta returns after[name]-v[name] and whether both have the counter.
func (v VMStat) Delta(after VMStat, name string) (int64, bool) {
	a, ok1 := v[name]
	b, ok2 := after[name]
	return b - a, ok1 && ok2
}
