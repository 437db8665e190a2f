package cache

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Entry is one prunable thing in the cache: a work tree, a kernel, an
// initramfs image, a source import.
type Entry struct {
	Kind     string // trees, kernels, initramfs, sources, ccache, other
	Path     string
	Bytes    int64
	LastUsed time.Time
	// Lock is the file whose lock a user of the entry holds ("" when the
	// entry has none).
	Lock string
}

// kinds are the cache's directories of prunable entries, cheapest to
// rebuild first (a kernel rebuilds from its tree with ccache in seconds, a
// tree is a checkout, a source import takes minutes).
var kinds = []string{"initramfs", "kernels", "trees", "sources"}

// Usage lists every entry of the cache at dir, most recently used first
// within each kind, plus ccache and whatever else is there as one entry
// each.
func Usage(dir string) ([]Entry, error) {
	var out []Entry
	for _, k := range kinds {
		ents, err := os.ReadDir(filepath.Join(dir, k))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasSuffix(name, ".lock") || strings.HasSuffix(name, ".sha256") || strings.HasPrefix(name, ".tmp-") ||
				strings.HasSuffix(name, ".part") || strings.HasPrefix(name, "build-") {
				continue
			}
			p := filepath.Join(dir, k, name)
			size, used := du(p)
			if fi, err := e.Info(); err == nil && fi.ModTime().After(used) {
				used = fi.ModTime()
			}
			lock := p + ".lock"
			if _, err := os.Stat(lock); err != nil {
				lock = ""
			}
			out = append(out, Entry{Kind: k, Path: p, Bytes: size, LastUsed: used, Lock: lock})
		}
	}
	for _, other := range []string{"ccache", "configs", "catalog"} {
		p := filepath.Join(dir, other)
		if _, err := os.Stat(p); err == nil {
			size, used := du(p)
			out = append(out, Entry{Kind: other, Path: p, Bytes: size, LastUsed: used})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return false
		}
		return out[i].LastUsed.After(out[j].LastUsed)
	})
	return out, nil
}

// du sums the sizes under p and finds its newest modification time.
func du(p string) (int64, time.Time) {
	var n int64
	var newest time.Time
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed while we look: not ours to report
		}
		if fi, err := d.Info(); err == nil {
			if !d.IsDir() {
				n += fi.Size()
			}
			if fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
		return nil
	})
	return n, newest
}

// Touch marks an entry used now (its LastUsed).
func Touch(p string) {
	now := time.Now()
	os.Chtimes(p, now, now)
}

// Prune deletes least recently used entries until the cache at dir is at
// most max bytes, cheapest kinds first (kinds). An entry whose lock
// another run holds, or whose path is in keep, is never touched; ccache
// is bounded by its own max_size. It returns what it removed.
func Prune(dir string, max int64, keep map[string]bool, log io.Writer) ([]Entry, error) {
	entries, err := Usage(dir)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, e := range entries {
		total += e.Bytes
	}
	if total <= max {
		return nil, nil
	}
	// Oldest first, kind by kind.
	var victims []Entry
	for _, k := range kinds {
		var ofKind []Entry
		for _, e := range entries {
			if e.Kind == k {
				ofKind = append(ofKind, e)
			}
		}
		sort.Slice(ofKind, func(i, j int) bool { return ofKind[i].LastUsed.Before(ofKind[j].LastUsed) })
		victims = append(victims, ofKind...)
	}
	var removed []Entry
	for _, e := range victims {
		if total <= max {
			break
		}
		if keep[e.Path] {
			continue
		}
		var l *Lock
		if e.Lock != "" {
			var ok bool
			if l, ok, err = TryAcquire(e.Lock); err != nil || !ok {
				continue // in use by another run
			}
		}
		fmt.Fprintf(log, "cache: removing %s %s (%s, last used %s)\n", e.Kind, filepath.Base(e.Path), HumanBytes(e.Bytes), e.LastUsed.Format(time.RFC3339))
		err := os.RemoveAll(e.Path)
		if err == nil && e.Kind == "initramfs" {
			os.Remove(e.Path + ".sha256")
		}
		l.Release()
		if err != nil {
			return removed, fmt.Errorf("prune %s: %w", e.Path, err)
		}
		total -= e.Bytes
		removed = append(removed, e)
	}
	if total > max {
		return removed, fmt.Errorf("cache at %s is %s after pruning everything not in use, over its budget of %s", dir, HumanBytes(total), HumanBytes(max))
	}
	return removed, nil
}

// HumanBytes prints a size the way du -h does.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
