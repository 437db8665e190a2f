package merge

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/runschema"
	"github.com/kharness/kharness/internal/runfixture"
)

// whole is a two-cell run made from the real record: the mutant cell on
// x86_64 (test-failure) and a passing copy of it on i386.
func whole(t *testing.T) *results.Run {
	r, err := runfixture.Load(runfixture.MutantRun)
	if err != nil {
		t.Fatal(err)
	}
	c := runfixture.Clone(r).Cells[0]
	c.ID, c.Target, c.Dir = "default.i386-highmem", "i386-highmem", "cells/default.i386-highmem"
	c.Outcome, c.Raw, c.Reason, c.Stage = outcome.Pass, outcome.Pass, "", ""
	for _, tt := range c.Tests {
		tt.Outcome, tt.Message, tt.Retry = outcome.Pass, "", nil
	}
	r.Cells = []*results.Cell{c, r.Cells[0]}
	return r
}

// shardOf is run r cut down to the cells of shard i of n, as kharness run
// --shard i/n records it.
func shardOf(r *results.Run, i, n int, cells ...string) func(*results.Run) {
	return func(s *results.Run) {
		var matrix []string
		for _, c := range r.Cells {
			matrix = append(matrix, c.ID)
		}
		s.Shard = &results.Shard{Index: i, Count: n, Matrix: matrix}
		var keep []*results.Cell
		var outs []outcome.Outcome
		for _, c := range s.Cells {
			for _, id := range cells {
				if c.ID == id {
					keep = append(keep, c)
					outs = append(outs, c.Outcome)
				}
			}
		}
		s.Cells = keep
		s.Outcome = outcome.Worst(outs...)
		s.ExitCode = s.Outcome.ExitCode()
	}
}

func writeEvents(t *testing.T, dir string, start time.Time, cells ...string) {
	var b strings.Builder
	for i, c := range cells {
		fmt.Fprintf(&b, `{"time":%q,"cell":%q,"kind":"stage","stage":"boot","status":"start"}`+"\n", start.Add(time.Duration(i)*time.Minute).Format(time.RFC3339Nano), c)
	}
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMergeEqualsUnsharded(t *testing.T) {
	w := whole(t)
	w.Outcome, w.ExitCode = outcome.TestFail, 1
	root := t.TempDir()
	t0 := w.Started
	d1, err := runfixture.Write(root, w, "20261203-010000-11", t0, shardOf(w, 1, 2, "default.x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := runfixture.Write(root, w, "20261203-010000-22", t0.Add(time.Second), shardOf(w, 2, 2, "default.i386-highmem"))
	writeEvents(t, d1, t0.Add(30*time.Second), "default.x86_64")
	writeEvents(t, d2, t0, "default.i386-highmem")
	parts, err := Read([]string{d2, d1})
	if err != nil {
		t.Fatal(err)
	}
	id := ID(parts)
	if id != ID([]Part{parts[1], parts[0]}) || !strings.HasPrefix(id, t0.UTC().Format("20060102-150405")+"-m") {
		t.Errorf("id %s depends on the order of the parts or lacks the start", id)
	}
	out := t.TempDir()
	m, dir, err := Write(parts, out, id)
	if err != nil {
		t.Fatal(err)
	}
	// The cells are the unsharded run's, in its order, field for field.
	gotJSON, _ := json.Marshal(m.Cells)
	wantJSON, _ := json.Marshal(w.Cells)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("merged cells differ from the unsharded run's:\n%s\n%s", gotJSON, wantJSON)
	}
	if m.Outcome != w.Outcome || m.ExitCode != w.ExitCode || m.Source != w.Source || m.Shard != nil {
		t.Errorf("merged run: %s exit %d source %s shard %v", m.Outcome, m.ExitCode, m.Source, m.Shard)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := runschema.Validate(b); err != nil {
		t.Error(err)
	}
	for _, f := range []string{"junit.xml", "cells/default.x86_64/console.log", "cells/default.i386-highmem/console.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	ev, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	lines := strings.Split(strings.TrimSpace(string(ev)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "i386") || !strings.Contains(lines[1], "x86_64") {
		t.Errorf("events not merged in time order:\n%s", ev)
	}
}

func TestMergeMissingShard(t *testing.T) {
	w := whole(t)
	root := t.TempDir()
	d1, _ := runfixture.Write(root, w, "20261203-010000-11", w.Started, shardOf(w, 1, 2, "default.i386-highmem"))
	parts, err := Read([]string{d1})
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := Runs(parts, "x")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range m.Cells {
		got = append(got, c.ID+":"+string(c.Outcome))
	}
	want := []string{"default.i386-highmem:pass", "default.x86_64:incomplete"}
	if !reflect.DeepEqual(got, want) || m.Outcome != outcome.Incomplete || m.ExitCode != 13 {
		t.Errorf("cells %v, run %s exit %d", got, m.Outcome, m.ExitCode)
	}
}

func TestMergeRejects(t *testing.T) {
	w := whole(t)
	root := t.TempDir()
	d1, _ := runfixture.Write(root, w, "20261203-010000-11", w.Started, shardOf(w, 1, 2, "default.i386-highmem"))
	other := runfixture.Clone(w)
	other.Cells = other.Cells[:1]
	d2, _ := runfixture.Write(root, other, "20261203-010000-22", w.Started, shardOf(other, 1, 1, "default.i386-highmem"))
	parts, _ := Read([]string{d1, d2})
	if _, _, err := Runs(parts, "x"); err == nil || !strings.Contains(err.Error(), "another matrix") {
		t.Errorf("shards of two matrices merged: %v", err)
	}
	if _, err := Read(nil); err == nil {
		t.Error("nothing to merge accepted")
	}
}
