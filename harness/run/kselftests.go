package run

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/catalog"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/initramfs"
	"github.com/kharness/kharness/harness/kselftest"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/target"
)

// kselftestSuites are the cell's suites of type kselftest.
func (p *Pipeline) kselftestSuites(c config.MatrixCell) []catalog.Suite {
	var out []catalog.Suite
	for _, spec := range c.Suites {
		if s, ok := p.Suites[guest.ParseSuiteSpec(spec).Name]; ok && s.Type == catalog.TypeKselftest {
			out = append(out, s)
		}
	}
	return out
}

// Kselftests builds the cell's kselftest programs from its own work tree
// (at the kernel's stack) and returns the initramfs with them and their
// plans added; base when the cell runs none.
func (p *Pipeline) Kselftests(ctx context.Context, store *results.Store, c config.MatrixCell, cell *results.Cell, k *Kernel, t target.Target, base string, accel boot.Accel) (string, error) {
	suites := p.kselftestSuites(c)
	if len(suites) == 0 {
		return base, nil
	}
	if k.tree == nil {
		return "", outcome.Errorf(outcome.Infra, "kselftests: the kernel has no work tree to build them from")
	}
	seen := map[string]bool{}
	var paths []string
	for _, s := range suites {
		for _, pr := range s.Programs {
			if !seen[pr.Path] {
				seen[pr.Path] = true
				paths = append(paths, pr.Path)
			}
		}
	}
	log, err := os.Create(filepath.Join(store.CellDir(c.ID), "kselftest.log"))
	if err != nil {
		return "", outcome.Errorf(outcome.Infra, "%w", err)
	}
	defer log.Close()
	w, commit, err := k.tree()
	if err != nil {
		return "", err
	}
	task := p.Track.Start("["+c.ID+"] kselftests", 0, "")
	task.Set(0, fmt.Sprintf("building %d program(s) from the tree", len(paths)))
	res, err := kselftest.Build(ctx, kselftest.Request{Tree: w.Dir, Commit: commit, Arch: t.Arch, Paths: paths,
		Compiler: p.compiler, CacheDir: p.cacheDir, Log: log, Lock: p.lockWait(c.ID)})
	w.Release()
	task.Done("")
	if err != nil {
		return "", stageErr(StageKselftest, err)
	}
	p.logf(c.ID, "kselftests: %d program(s) (%s, cached=%v)", len(res.Programs), res.Duration.Round(time.Millisecond), res.Cached)
	timing(store, cell, StageKselftest, res.Duration.Seconds())
	scale := 1.0
	if accel == boot.TCG {
		scale = p.Cfg.Timeouts.TCGScale
	}
	files := map[string]string{}
	data := map[string][]byte{}
	for _, s := range suites {
		plan := guest.KselftestPlan{Sysctl: s.Sysctl}
		for _, pr := range s.Programs {
			name := pr.Name()
			files[filepath.Join(guest.KselftestDir(s.Name), name)] = filepath.Join(res.Dir, res.Programs[name])
			to := pr.Timeout
			if to == 0 {
				to = res.Timeouts[name]
			}
			format := pr.Format
			if format == "" {
				format = "ktap"
			}
			plan.Programs = append(plan.Programs, guest.KselftestProgram{Name: name, Args: expandArgs(pr.Args, p.Cfg.Duration),
				Timeout: time.Duration(float64(to) * scale), Format: format})
		}
		b, err := json.Marshal(plan)
		if err != nil {
			return "", outcome.Errorf(outcome.Infra, "%w", err)
		}
		data[filepath.Join(guest.KselftestDir(s.Name), guest.KselftestPlanFile)] = b
	}
	img, err := initramfs.Extend(ctx, base, files, data, p.cacheDir, log, p.lockWait(c.ID))
	if err != nil {
		return "", stageErr(StageKselftest, err)
	}
	return img, nil
}

// expandArgs puts the run's duration into a program's arguments.
func expandArgs(args []string, d time.Duration) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "{duration_s}", strconv.Itoa(max(int(d.Seconds()), 1)))
	}
	return out
}
