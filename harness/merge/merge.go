// Package merge puts the run directories of a sharded matrix (kharness
// run --shard i/N on several machines) back together into one run:
// results.json with the cells in the unsharded run's order, junit.xml,
// the events of every shard in time order and each cell's artefacts, so
// that what people and history read is the run the matrix would have
// been on one machine. A cell no shard reported is incomplete.
package merge

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/runschema"
)

// Part is one shard's run directory.
type Part struct {
	Dir string
	Run *results.Run
}

// Read loads the shard runs in dirs (each a run directory).
func Read(dirs []string) ([]Part, error) {
	var parts []Part
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "results.json"))
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		if err := runschema.Validate(b); err != nil {
			return nil, fmt.Errorf("merge: %s: %w", d, err)
		}
		var r results.Run
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("merge: %s: %w", d, err)
		}
		parts = append(parts, Part{Dir: d, Run: &r})
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("merge: no run directories")
	}
	return parts, nil
}

// ID is the merged run's id: the first shard's start and a digest of the
// shards' ids, so merging the same shards twice names the same run.
func ID(parts []Part) string {
	var ids []string
	start := parts[0].Run.Started
	for _, p := range parts {
		ids = append(ids, p.Run.ID)
		if p.Run.Started.Before(start) {
			start = p.Run.Started
		}
	}
	sort.Strings(ids)
	h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return start.UTC().Format("20060102-150405") + "-m" + hex.EncodeToString(h[:])[:8]
}

// Runs merges parts into one run (not written). The cells keep the
// matrix order the shards recorded; without shard records, the order of
// the parts. A cell two parts ran (a shard rerun) is taken from the part
// that started last.
func Runs(parts []Part, id string) (*results.Run, map[string]Part, error) {
	var matrix []string
	for _, p := range parts {
		s := p.Run.Shard
		if s == nil {
			continue
		}
		if matrix == nil {
			matrix = s.Matrix
		} else if strings.Join(matrix, ",") != strings.Join(s.Matrix, ",") {
			return nil, nil, fmt.Errorf("merge: %s is a shard of another matrix than %s", p.Run.ID, parts[0].Run.ID)
		}
	}
	first := parts[0].Run
	m := &results.Run{Schema: results.Schema, ID: id, PID: os.Getpid(), Config: first.Config, Source: first.Source,
		Started: first.Started, Finished: first.Finished}
	m.Host, _ = os.Hostname()
	from := map[string]Part{}
	cells := map[string]*results.Cell{}
	var order []string
	var outs []outcome.Outcome
	for _, p := range parts {
		r := p.Run
		if r.Source != m.Source {
			return nil, nil, fmt.Errorf("merge: %s tested source %s, %s source %s", r.ID, r.Source, first.ID, m.Source)
		}
		if r.Started.Before(m.Started) {
			m.Started = r.Started
		}
		if r.Finished.After(m.Finished) {
			m.Finished = r.Finished
		}
		// A shard's own verdict counts where its cells do not carry it:
		// interrupted, or a record that could not be written.
		if r.Outcome == outcome.Interrupted || (r.Outcome == outcome.Infra && r.Reason != "") {
			outs = append(outs, r.Outcome)
			m.Reason = strings.TrimPrefix(m.Reason+"; "+r.ID+": "+r.Reason, "; ")
		}
		for _, c := range r.Cells {
			if prev, dup := from[c.ID]; dup && !r.Started.After(prev.Run.Started) {
				continue
			}
			if _, seen := cells[c.ID]; !seen {
				order = append(order, c.ID)
			}
			cells[c.ID], from[c.ID] = c, p
		}
	}
	if matrix == nil {
		matrix = order
	}
	for _, id := range matrix {
		c, ok := cells[id]
		if !ok {
			name, target := id, ""
			if i := strings.LastIndex(id, "."); i > 0 {
				name, target = id[:i], id[i+1:]
			}
			c = &results.Cell{ID: id, Name: name, Target: target, Outcome: outcome.Incomplete, Raw: outcome.Incomplete,
				Reason: "no shard reported this cell (its job failed, or its results were not downloaded)",
				Dir:    filepath.Join("cells", id), Tests: []*results.Test{}}
		}
		m.Cells = append(m.Cells, c)
		outs = append(outs, c.Outcome)
	}
	for _, id := range order {
		if !contains(matrix, id) {
			return nil, nil, fmt.Errorf("merge: cell %s of %s is not in the shards' matrix", id, from[id].Run.ID)
		}
	}
	m.Outcome = outcome.Worst(outs...)
	m.ExitCode = m.Outcome.ExitCode()
	if m.Finished.Before(m.Started) {
		m.Finished = time.Time{}
	}
	return m, from, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Write merges the parts into root/<id>/: results.json, junit.xml,
// events.jsonl (every shard's, in time order) and cells/<id>/ copied from
// the shard that ran the cell. It returns the run and its directory.
func Write(parts []Part, root, id string) (*results.Run, string, error) {
	m, from, err := Runs(parts, id)
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("merge: %w", err)
	}
	for cid, p := range from {
		src := filepath.Join(p.Dir, "cells", cid)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := copyTree(src, filepath.Join(dir, "cells", cid)); err != nil {
			return nil, "", fmt.Errorf("merge: cell %s: %w", cid, err)
		}
	}
	if err := mergeEvents(parts, filepath.Join(dir, "events.jsonl")); err != nil {
		return nil, "", fmt.Errorf("merge: events: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, "", fmt.Errorf("merge: %w", err)
	}
	if err := cache.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n')); err != nil {
		return nil, "", fmt.Errorf("merge: %w", err)
	}
	if err := results.WriteJUnit(filepath.Join(dir, "junit.xml"), m); err != nil {
		return nil, "", fmt.Errorf("merge: junit.xml: %w", err)
	}
	return m, dir, nil
}

// mergeEvents writes every shard's events file as one, in time order
// (stable: a shard's own order is kept for equal times).
func mergeEvents(parts []Part, dst string) error {
	type line struct {
		t    time.Time
		text string
	}
	var lines []line
	for _, p := range parts {
		f, err := os.Open(filepath.Join(p.Dir, "events.jsonl"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var r struct {
				Time time.Time `json:"time"`
			}
			json.Unmarshal(sc.Bytes(), &r)
			lines = append(lines, line{r.Time, sc.Text()})
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].t.Before(lines[j].t) })
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return cache.WriteFile(dst, []byte(b.String()))
}

// copyTree copies a cell's artefacts, hard-linking where it can.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		}
		os.Remove(to)
		if os.Link(path, to) == nil {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
