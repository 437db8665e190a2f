// Package cache holds the content-addressed store shared by the stages:
// keys are hashes of everything that influences an artefact, entries are
// published atomically, and a file lock keeps concurrent runs from
// building the same entry twice.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kharness/kharness/harness/internal/proc"
)

// Key hashes its parts into a hex key. Parts are length-prefixed so that
// ("ab","c") and ("a","bc") differ.
func Key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		io.WriteString(h, p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FileHash returns the sha256 of a file's content.
func FileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Lock is an exclusive advisory lock on a file. The holder writes who it
// is into the file, so that a run waiting for it can say whom it waits for.
type Lock struct{ f *os.File }

// LockWait says how to wait for a lock another process holds.
type LockWait struct {
	// Max bounds the wait (0: until ctx is done); past it Acquire fails
	// naming the holder.
	Max time.Duration
	// Log, when set, is told every Every that the wait goes on, and by whom.
	Log   io.Writer
	Every time.Duration
}

// Acquire takes an exclusive lock on path (created if needed), waiting as
// w says and until ctx is done.
func Acquire(ctx context.Context, path string, w LockWait) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	every := w.Every
	if every == 0 {
		every = 30 * time.Second
	}
	next := start.Add(every)
	for {
		l, ok, err := TryAcquire(path)
		if err != nil || ok {
			return l, err
		}
		waited := time.Since(start)
		if w.Max > 0 && waited > w.Max {
			return nil, fmt.Errorf("lock %s: still held by %s after %s (timeouts.lock)", path, Holder(path), waited.Round(time.Second))
		}
		if w.Log != nil && time.Now().After(next) {
			fmt.Fprintf(w.Log, "waiting for %s, held by %s, for %s\n", path, Holder(path), waited.Round(time.Second))
			next = time.Now().Add(every)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s (held by %s): %w", path, Holder(path), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TryAcquire takes the lock on path only if nobody holds it; ok is false
// when it is held.
func TryAcquire(path string) (l *Lock, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
		cmd, _ := os.ReadFile("/proc/self/cmdline")
		f.Truncate(0)
		f.WriteAt([]byte(fmt.Sprintf("pid %d (%s) since %s\n", os.Getpid(),
			strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")), time.Now().Format(time.RFC3339))), 0)
		return &Lock{f: f}, true, nil
	case unix.EWOULDBLOCK:
		f.Close()
		return nil, false, nil
	default:
		f.Close()
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
}

// Holder says who holds the lock at path, as the holder wrote it.
func Holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return "another process"
	}
	return strings.TrimSpace(string(b))
}

// Share turns an exclusive lock into a shared one: the holder keeps using
// the entry (a kernel it is about to boot) while others may read it too,
// but nobody can take it exclusively (Prune, a rebuild) until Release.
func (l *Lock) Share() error {
	if err := unix.Flock(int(l.f.Fd()), unix.LOCK_SH); err != nil {
		return fmt.Errorf("share lock %s: %w", l.f.Name(), err)
	}
	return nil
}

// Release drops the lock.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
	}
}

// Exists reports whether path exists.
func Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// CopyFile copies src to dst through a temporary file and a rename, so a
// crash never leaves a half-written artefact under its final name.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst))
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return publish(tmp, dst)
}

// publish makes a finished temporary file durable and gives it its name:
// data synced before the rename, the directory after, so that a crash
// leaves either the old entry or the whole new one.
func publish(tmp *os.File, dst string) error {
	err := tmp.Sync()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// WriteFile writes data atomically.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	return publish(tmp, path)
}

// TempDir makes a temporary directory under parent named for this
// process, so that SweepTemp can remove the ones a killed run left.
func TempDir(parent, prefix string) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(parent, fmt.Sprintf("%s%d-", prefix, os.Getpid()))
}

// SweepTemp removes the TempDirs under parent whose process is gone.
func SweepTemp(parent, prefix string) {
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		var pid int
		if _, err := fmt.Sscan(pidStr, &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		os.RemoveAll(filepath.Join(parent, e.Name()))
	}
}

// Symlink points link at target, replacing what was there by a rename so
// that link is never missing.
func Symlink(target, link string) error {
	tmp := fmt.Sprintf("%s.tmp-%d", link, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// GoSources lists, as (path, sha256) pairs, every source file of the main
// module that the packages pkgs import for GOOS=linux GOARCH=goarch, as
// `go list -deps` reports them, plus go.mod and go.sum (which pin every
// outside dependency). It is the key of anything built from those
// packages: host code that does not go into it does not invalidate it.
func GoSources(ctx context.Context, moduleDir, goarch string, pkgs ...string) ([]string, error) {
	var parts []string
	for _, f := range []string{"go.mod", "go.sum"} {
		h, err := FileHash(filepath.Join(moduleDir, f))
		if err != nil {
			return nil, err
		}
		parts = append(parts, f, h)
	}
	args := append([]string{"list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .SFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}"}, pkgs...)
	out, err := proc.Output(ctx, proc.Cmd{Dir: moduleDir, Name: "go", Args: args,
		Env: []string{"GOOS=linux", "GOARCH=" + goarch, "CGO_ENABLED=0"}})
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		for _, name := range f[1:] {
			p := filepath.Join(f[0], name)
			h, err := FileHash(p)
			if err != nil {
				return nil, err
			}
			rel, _ := filepath.Rel(moduleDir, p)
			parts = append(parts, rel, h)
		}
	}
	return parts, nil
}
