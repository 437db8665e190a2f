package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/outcome"
)

// ImageRequest asks for the kernel image of one (source, patch stack,
// target, .config, compiler): from the cache when an entry exists and
// verifies, else built in the tree Tree prepares.
type ImageRequest struct {
	CacheDir string
	// Identity: everything that goes into the image.
	SourceID, PatchDigest, Arch, Compiler string
	Config                                []byte
	// Described in the entry's metadata, for people.
	Source, Version, Target string
	PatchSets               []string
	// Tree prepares the patched source on a cache miss and returns it
	// with the O= directory to build in; release is called when the build
	// is done (it holds the tree's lock).
	Tree func(ctx context.Context) (src, buildDir string, release func(), err error)
	// The build itself.
	MakeTarget, ImagePath string
	Jobs                  int
	CCache                string
	CCacheMax             int64
	Log                   io.Writer
	LogPath               string
	Lock                  cache.LockWait
	// OnObject is told the objects made so far (see Request.OnObject).
	OnObject func(n int)
}

// ImageMeta is a cache entry's meta.json. It is written last: its
// presence marks a complete entry, and its checksums are verified on
// every hit.
type ImageMeta struct {
	Key       string            `json:"key"`
	Source    string            `json:"source"`
	Version   string            `json:"version"`
	Compiler  string            `json:"compiler"`
	Target    string            `json:"target"`
	PatchSets []string          `json:"patchsets"`
	Seconds   float64           `json:"seconds"`
	Warnings  []string          `json:"warnings"`
	Objects   int               `json:"objects"` // what make made (all of them when Cold)
	Cold      bool              `json:"cold"`    // built from an empty build dir
	SHA256    map[string]string `json:"sha256"`  // artefact file → checksum
	Built     time.Time         `json:"built"`
}

// Image is a kernel image ready to boot.
type Image struct {
	Key    string
	Dir    string // the cache entry: bzImage, vmlinux, config, build.log, meta.json
	Path   string // the bootable image
	Cached bool
	Meta   ImageMeta
	// Notes say what the cache had to repair (a corrupt entry rebuilt).
	Notes []string
	// hold is a shared lock on the entry, kept until Release: a cache
	// prune by another run cannot delete a kernel this run boots.
	hold *cache.Lock
}

// Release lets the entry go (to a prune or a rebuild).
func (img *Image) Release() { img.hold.Release() }

// artefacts are the files of an entry that carry a checksum: the image,
// vmlinux (for gdb: the symbols of the very image that booted), the
// .config and the build log.
var artefacts = []string{"bzImage", "vmlinux", "config", "build.log"}

// recipe names how images are built; a change that makes earlier entries
// untrustworthy changes it. 2: sources with .incbin bypass ccache (before,
// a bzImage could carry another build's kernel).
const recipe = "2"

// ImageKey is the cache key of the image r describes.
func ImageKey(r ImageRequest) string {
	return cache.Key("kernel", recipe, r.SourceID, r.PatchDigest, r.Arch, string(r.Config), r.Compiler)
}

// GetImage returns the image r describes. The entry's lock is held while it
// is checked and built, so two runs that want the same kernel build it
// once; an entry whose checksums fail is rebuilt, with a note.
func GetImage(ctx context.Context, r ImageRequest) (*Image, error) {
	key := ImageKey(r)
	dir := filepath.Join(r.CacheDir, "kernels", key[:24])
	img := &Image{Key: key, Dir: dir, Path: filepath.Join(dir, "bzImage")}
	lock, err := cache.Acquire(ctx, dir+".lock", r.Lock)
	if err != nil {
		return nil, outcome.Errorf(outcome.Infra, "kernel cache: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			lock.Release()
		}
	}()
	// share hands the caller a shared hold on the entry it gets.
	share := func() (*Image, error) {
		if err := lock.Share(); err != nil {
			return nil, infra(err)
		}
		keep, img.hold = true, lock
		return img, nil
	}
	meta, err := verify(dir)
	switch {
	case err == nil:
		img.Cached, img.Meta = true, *meta
		cache.Touch(dir) // most recently used, for the cache budget
		return share()
	case !errors.Is(err, os.ErrNotExist):
		img.Notes = append(img.Notes, fmt.Sprintf("cached kernel %s failed verification (%v): rebuilt", key[:12], err))
		if err := os.RemoveAll(dir); err != nil {
			return nil, outcome.Errorf(outcome.Infra, "remove corrupt kernel entry: %w", err)
		}
	}
	src, buildDir, release, err := r.Tree(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := os.MkdirAll(buildDir, 0o755); err != nil {
		return nil, infra(err)
	}
	// The build dir may hold another config from an earlier run of the
	// same tree: put ours in place; make then rebuilds only what changed.
	if cur, _ := os.ReadFile(filepath.Join(buildDir, ".config")); string(cur) != string(r.Config) {
		if err := os.WriteFile(filepath.Join(buildDir, ".config"), r.Config, 0o644); err != nil {
			return nil, infra(err)
		}
	}
	start := time.Now()
	res, err := Run(ctx, Request{Src: src, BuildDir: buildDir, Arch: r.Arch, Target: r.MakeTarget, Image: r.ImagePath,
		Jobs: r.Jobs, CCache: r.CCache, CCacheMax: r.CCacheMax, BaseDir: r.CacheDir, Log: r.Log, OnObject: r.OnObject}, r.LogPath)
	if err != nil {
		return nil, err
	}
	m := ImageMeta{Key: key, Source: r.Source, Version: r.Version, Compiler: r.Compiler, Target: r.Target,
		PatchSets: r.PatchSets, Seconds: time.Since(start).Seconds(), Warnings: res.Warnings, Objects: res.Objects, Cold: res.Cold,
		SHA256: map[string]string{}, Built: time.Now().UTC()}
	if err := cache.CopyFile(res.Image, img.Path); err != nil {
		return nil, infra(err)
	}
	if err := cache.WriteFile(filepath.Join(dir, "config"), r.Config); err != nil {
		return nil, infra(err)
	}
	if err := cache.CopyFile(r.LogPath, filepath.Join(dir, "build.log")); err != nil {
		return nil, infra(err)
	}
	if err := cache.CopyFile(filepath.Join(buildDir, "vmlinux"), filepath.Join(dir, "vmlinux")); err != nil {
		return nil, infra(err)
	}
	for _, a := range artefacts {
		if m.SHA256[a], err = cache.FileHash(filepath.Join(dir, a)); err != nil {
			return nil, infra(err)
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, infra(err)
	}
	if err := cache.WriteFile(filepath.Join(dir, "meta.json"), b); err != nil {
		return nil, infra(err)
	}
	img.Meta = m
	return share()
}

// verify reads an entry's metadata and checks every artefact against it.
func verify(dir string) (*ImageMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err // ErrNotExist: no entry (or an unfinished one)
	}
	var m ImageMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("meta.json: %w", err)
	}
	if len(m.SHA256) == 0 {
		return nil, fmt.Errorf("meta.json has no checksums (an entry from an older kharness)")
	}
	for _, a := range artefacts {
		want, ok := m.SHA256[a]
		if !ok {
			return nil, fmt.Errorf("meta.json has no checksum for %s", a)
		}
		got, err := cache.FileHash(filepath.Join(dir, a))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		if got != want {
			return nil, fmt.Errorf("%s has sha256 %s, meta.json says %s", a, got[:12], want[:12])
		}
	}
	return &m, nil
}

// infra marks a host-side failure; a full disk says so.
func infra(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return outcome.Errorf(outcome.Infra, "disk full: %w", err)
	}
	return outcome.Errorf(outcome.Infra, "kernel cache: %w", err)
}

// Previous is what an earlier cold build of the same target took, for a
// progress line's total and ETA: the most recent cached entry whose
// metadata says it was built from an empty build dir.
func Previous(cacheDir, target string) (objects int, took time.Duration, ok bool) {
	metas, _ := filepath.Glob(filepath.Join(cacheDir, "kernels", "*", "meta.json"))
	var best ImageMeta
	for _, m := range metas {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var im ImageMeta
		if json.Unmarshal(b, &im) != nil || im.Target != target || !im.Cold || im.Objects == 0 {
			continue
		}
		if im.Built.After(best.Built) {
			best = im
		}
	}
	if best.Objects == 0 {
		return 0, 0, false
	}
	return best.Objects, time.Duration(best.Seconds * float64(time.Second)), true
}
