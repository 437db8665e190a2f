// Package shard splits a matrix across machines (GitHub Actions jobs):
// one build job per distinct kernel, so each kernel is built and uploaded
// once, and test shards packed by the cells' durations in history
// (longest first onto the least loaded shard), with a default for cells
// and tests history has not seen. The plan is a pure function of the
// matrix and the durations, and shard ids are positions, so "re-run
// failed jobs" reruns the same cells.
package shard

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/config"
)

// MaxJobs is GitHub Actions' limit on the jobs of one matrix.
const MaxJobs = 256

// Build is one build job: a distinct kernel and the cells that boot it.
type Build struct {
	Kernel    string   `json:"kernel"` // k-<target>-<digest of the patch stack>
	Target    string   `json:"target"`
	PatchSets []string `json:"patchsets"`
	Cells     []string `json:"cells"`
}

// Shard is one test job.
type Shard struct {
	Index   int      `json:"shard"` // 1-based
	Count   int      `json:"shards"`
	Cells   []string `json:"cells"` // in matrix order
	Kernels []string `json:"kernels"`
	Seconds float64  `json:"seconds"` // estimated
}

// Plan is the whole split.
type Plan struct {
	Config string `json:"config"`
	// Matrix is every cell id, in the unsharded run's order.
	Matrix []string `json:"matrix"`
	Builds []Build  `json:"builds"`
	Shards []Shard  `json:"shards"`
	// Estimates is each cell's expected wall time, seconds, and where it
	// comes from ("history" or "default").
	Estimates map[string]Estimate `json:"estimates"`
}

// Estimate is one cell's expected time.
type Estimate struct {
	Seconds float64 `json:"seconds"`
	From    string  `json:"from"`
}

// KernelID names the kernel a cell boots: within one config the source
// is fixed, so (target, patch stack) decides the kernel (every suite's
// kconfig fragment goes into every kernel).
func KernelID(c config.MatrixCell) string {
	h := sha256.Sum256([]byte(c.Target + "\x00" + strings.Join(c.PatchSets, "\x00")))
	return "k-" + c.Target + "-" + hex.EncodeToString(h[:])[:10]
}

// Durations are what history knows of cells and tests, in seconds.
type Durations struct {
	// Boot is a cell's boot overhead beyond its tests (QEMU, kernel,
	// agent), per cell id.
	Boot map[string]float64
	// Test is one test's time, per "cell id suite/test".
	Test map[string]float64
}

// Defaults for what history has not seen.
type Defaults struct {
	Boot time.Duration // per cell
	Test time.Duration // per test beyond the stress duration
}

// DefaultDefaults fit TCG on this project's 2-core machine.
var DefaultDefaults = Defaults{Boot: 60 * time.Second, Test: 30 * time.Second}

// Tests lists the tests a cell runs, "suite/test".
type Tests func(config.MatrixCell) []string

// Make splits cells into at most n test shards (never more than cells or
// MaxJobs) and one build job per kernel (grouped when there are more
// than MaxJobs kernels).
func Make(cfgPath string, cells []config.MatrixCell, n int, d Durations, tests Tests, stress time.Duration, def Defaults) (*Plan, error) {
	if n < 1 {
		return nil, fmt.Errorf("shards: want at least 1, not %d", n)
	}
	if len(cells) == 0 {
		return nil, fmt.Errorf("shards: the matrix is empty")
	}
	if n > len(cells) {
		n = len(cells)
	}
	if n > MaxJobs {
		n = MaxJobs
	}
	p := &Plan{Config: cfgPath, Estimates: map[string]Estimate{}}
	kernels := map[string]*Build{}
	var korder []string
	byID := map[string]config.MatrixCell{}
	for _, c := range cells {
		p.Matrix = append(p.Matrix, c.ID)
		byID[c.ID] = c
		k := KernelID(c)
		b, ok := kernels[k]
		if !ok {
			b = &Build{Kernel: k, Target: c.Target, PatchSets: c.PatchSets}
			kernels[k] = b
			korder = append(korder, k)
		}
		b.Cells = append(b.Cells, c.ID)
		est := Estimate{From: "history"}
		boot, ok := d.Boot[c.ID]
		if !ok {
			boot, est.From = def.Boot.Seconds(), "default"
		}
		est.Seconds = boot
		for _, t := range tests(c) {
			s, ok := d.Test[c.ID+" "+t]
			if !ok {
				s, est.From = (stress + def.Test).Seconds(), "default"
			}
			est.Seconds += s
		}
		p.Estimates[c.ID] = est
	}
	for _, k := range korder {
		p.Builds = append(p.Builds, *kernels[k])
	}
	if len(p.Builds) > MaxJobs {
		groups := make([]Build, MaxJobs)
		for i, b := range p.Builds {
			g := &groups[i%MaxJobs]
			if g.Kernel == "" {
				*g = b
				continue
			}
			g.Kernel += "+" + b.Kernel
			g.Cells = append(g.Cells, b.Cells...)
		}
		p.Builds = groups
	}
	// Longest first onto the least loaded shard; ties by id and index, so
	// the same inputs always give the same shards.
	order := append([]string(nil), p.Matrix...)
	sort.SliceStable(order, func(i, j int) bool {
		a, b := p.Estimates[order[i]].Seconds, p.Estimates[order[j]].Seconds
		if a != b {
			return a > b
		}
		return order[i] < order[j]
	})
	load := make([]float64, n)
	member := map[string]int{}
	for _, id := range order {
		best := 0
		for i := 1; i < n; i++ {
			if load[i] < load[best] {
				best = i
			}
		}
		load[best] += p.Estimates[id].Seconds
		member[id] = best
	}
	p.Shards = make([]Shard, n)
	for i := range p.Shards {
		p.Shards[i] = Shard{Index: i + 1, Count: n, Seconds: load[i]}
	}
	for _, id := range p.Matrix {
		s := &p.Shards[member[id]]
		s.Cells = append(s.Cells, id)
		k := KernelID(byID[id])
		if !contains(s.Kernels, k) {
			s.Kernels = append(s.Kernels, k)
		}
	}
	return p, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// ParseSpec reads "i/N".
func ParseSpec(s string) (i, n int, err error) {
	if _, err := fmt.Sscanf(s, "%d/%d", &i, &n); err != nil || i < 1 || n < 1 || i > n || fmt.Sprintf("%d/%d", i, n) != s {
		return 0, 0, fmt.Errorf("--shard %q: want i/N with 1 <= i <= N", s)
	}
	return i, n, nil
}

// Shard returns shard i (1-based) of a plan made for n shards.
func (p *Plan) Shard(i, n int) (Shard, error) {
	if n != len(p.Shards) {
		return Shard{}, fmt.Errorf("the plan has %d shards, not %d (a matrix of %d cells has at most that many)", len(p.Shards), n, len(p.Matrix))
	}
	return p.Shards[i-1], nil
}

// Matrix is GitHub Actions' strategy.matrix: {"include": [...]}.
type Matrix struct {
	Include []map[string]any `json:"include"`
}

// TestMatrix is the test jobs' matrix: shard, shards, cells (comma
// separated, for --only) and kernels (the build artefacts it needs).
func (p *Plan) TestMatrix() Matrix {
	m := Matrix{Include: []map[string]any{}}
	for _, s := range p.Shards {
		m.Include = append(m.Include, map[string]any{"shard": s.Index, "shards": s.Count,
			"cells": strings.Join(s.Cells, ","), "kernels": strings.Join(s.Kernels, ","),
			"minutes": int(s.Seconds/60 + 0.5)})
	}
	return m
}

// BuildMatrix is the build jobs' matrix: kernel (the artefact's name),
// target, and a cell that boots it (for --only).
func (p *Plan) BuildMatrix() Matrix {
	m := Matrix{Include: []map[string]any{}}
	for _, b := range p.Builds {
		m.Include = append(m.Include, map[string]any{"kernel": b.Kernel, "target": b.Target,
			"cells": strings.Join(firstPerKernel(b), ","), "patchsets": strings.Join(b.PatchSets, ",")})
	}
	return m
}

// firstPerKernel is one cell per kernel of a (possibly grouped) build.
func firstPerKernel(b Build) []string {
	if !strings.Contains(b.Kernel, "+") {
		return b.Cells[:1]
	}
	return b.Cells
}

// Load reads a plan written by Write.
func Load(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return &p, nil
}

// Check says whether the plan was made for this matrix.
func (p *Plan) Check(cells []config.MatrixCell) error {
	var ids []string
	for _, c := range cells {
		ids = append(ids, c.ID)
	}
	if strings.Join(ids, ",") != strings.Join(p.Matrix, ",") {
		return fmt.Errorf("the plan was made for another matrix (%d cells, this config has %d): plan again", len(p.Matrix), len(ids))
	}
	return nil
}
