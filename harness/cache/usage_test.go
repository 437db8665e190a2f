package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPruneLRU: entries go oldest first, cheapest kinds first, until the
// cache fits; an entry another run holds is never touched.
func TestPruneLRU(t *testing.T) {
	dir := t.TempDir()
	mk := func(kind, name string, size int, age time.Duration) string {
		p := filepath.Join(dir, kind, name)
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "data"), make([]byte, size), 0o644)
		at := time.Now().Add(-age)
		os.Chtimes(filepath.Join(p, "data"), at, at)
		os.Chtimes(p, at, at)
		return p
	}
	oldKernel := mk("kernels", "a", 1000, 3*time.Hour)
	newKernel := mk("kernels", "b", 1000, time.Hour)
	busyTree := mk("trees", "t1", 5000, 5*time.Hour)
	tree := mk("trees", "t2", 5000, 4*time.Hour)
	src := mk("sources", "s", 3000, 10*time.Hour)
	l, ok, err := TryAcquire(busyTree + ".lock")
	if err != nil || !ok {
		t.Fatal(err)
	}
	defer l.Release()
	var log bytes.Buffer
	// 15000 bytes; a budget of 9000 must remove the old kernel (cheapest,
	// oldest), skip the busy tree and remove the other tree.
	removed, err := Prune(dir, 9000, nil, &log)
	if err != nil {
		t.Fatalf("Prune: %v\n%s", err, log.String())
	}
	var names []string
	for _, e := range removed {
		names = append(names, filepath.Base(e.Path))
	}
	if strings.Join(names, ",") != "a,b,t2" {
		t.Errorf("removed %v", names)
	}
	for _, p := range []string{busyTree, src} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	if _, err := os.Stat(oldKernel); err == nil {
		t.Errorf("the least recently used kernel is still there")
	}
	for _, p := range []string{newKernel, tree} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s kept although the cache was over budget", p)
		}
	}
	if !strings.Contains(log.String(), "removing kernels a") {
		t.Errorf("log:\n%s", log.String())
	}
}

func TestPruneOverBudgetWhenAllBusy(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "trees", "x")
	os.MkdirAll(p, 0o755)
	os.WriteFile(filepath.Join(p, "data"), make([]byte, 4000), 0o644)
	l, _, _ := TryAcquire(p + ".lock")
	defer l.Release()
	if _, err := Prune(dir, 100, nil, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "over its budget") {
		t.Errorf("err = %v", err)
	}
}
