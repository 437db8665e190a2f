package main

import (
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"
)

// maxReported bounds the failures a stress test prints: a broken kernel
// must produce a readable report, not thousands of identical lines.
const maxReported = 20

// limiter reports failures from any goroutine, the first maxReported in
// full and the rest as a count (flush).
type limiter struct {
	c *tcase
	n atomic.Int64
}

func (l *limiter) fail(format string, args ...any) {
	if l.n.Add(1) <= maxReported {
		l.c.Errorf(format, args...)
	}
}

func (l *limiter) flush() {
	if n := l.n.Load(); n > maxReported {
		l.c.Errorf("%d more failures not shown", n-maxReported)
	}
}

// testSeed derives a per-test seed from the run's so that tests draw
// different numbers yet each is reproducible from the printed seed.
func testSeed(seed int64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return uint64(seed) ^ h.Sum64()
}

// newRand is a generator for stream of a test seed.
func newRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream*0x9e3779b97f4a7c15+1))
}

// percentile returns the p-th percentile (0..100, nearest rank) of d,
// which it sorts; 0 for no samples.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(p/100*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}
