// Package build runs the kernel build itself: make with ccache at a stable
// path, the full log kept on disk, and on failure the first compiler
// errors with file:line instead of the last 20 lines of make noise.
package build

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/kharness/kharness/harness/internal/proc"
	"github.com/kharness/kharness/harness/outcome"
)

// Request is one kernel build.
type Request struct {
	Src      string // source tree
	BuildDir string // O= directory holding .config
	Arch     string
	Target   string // make target, e.g. bzImage
	Image    string // output path relative to BuildDir
	Jobs     int    // 0 = nproc+1
	CCache   string // ccache directory; "" disables ccache
	// CCacheMax bounds ccache (its max_size); 0 keeps ccache's default.
	CCacheMax int64
	BaseDir   string // ccache base_dir: the root under which work trees live
	Log       io.Writer
	// OnObject, when set, is told the count of objects made so far (each
	// Kbuild "  CC foo.o" line), for a progress line.
	OnObject func(n int)
}

// Result of a successful build.
type Result struct {
	Image    string   // absolute path of the image in BuildDir
	Warnings []string // compiler warnings, file:line: warning: ...
	Objects  int      // objects Kbuild made (its CC/AS/LD/AR lines)
	// Cold is true when the build started from an empty build dir.
	Cold bool
}

// objectRe matches Kbuild's quiet-mode line for one made object.
var objectRe = regexp.MustCompile(`^\s+(CC|AS|LD|AR|CPP|HOSTCC|HOSTLD|OBJCOPY|LDS|CC \[M\])\s+\S`)

// objectCounter counts Kbuild's object lines in what make writes.
type objectCounter struct {
	n       int
	partial []byte
	on      func(int)
}

func (c *objectCounter) Write(p []byte) (int, error) {
	data := append(c.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if objectRe.Match(data[:i]) {
			c.n++
			if c.on != nil {
				c.on(c.n)
			}
		}
		data = data[i+1:]
	}
	c.partial = append(c.partial[:0], data...)
	return len(p), nil
}

// Diagnostic is a compiler message from the log.
type Diagnostic struct {
	File    string
	Line    int
	Col     int
	Kind    string // error, warning, fatal error
	Message string
}

func (d Diagnostic) String() string {
	if d.Col > 0 {
		return fmt.Sprintf("%s:%d:%d: %s: %s", d.File, d.Line, d.Col, d.Kind, d.Message)
	}
	return fmt.Sprintf("%s:%d: %s: %s", d.File, d.Line, d.Kind, d.Message)
}

// Error is a failed build with the first diagnostics from its log.
type Error struct {
	Errors  []Diagnostic
	LogPath string
	Tail    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("kernel build failed")
	if len(e.Errors) == 0 {
		b.WriteString("; no compiler error found in the log, its end:\n")
		b.WriteString(e.Tail)
	} else {
		b.WriteString(":")
		for _, d := range e.Errors {
			b.WriteString("\n  " + d.String())
		}
	}
	if e.LogPath != "" {
		b.WriteString("\nfull log: " + e.LogPath)
	}
	return b.String()
}

var diagRe = regexp.MustCompile(`^([^\s:][^:]*):(\d+):(?:(\d+):)? (error|warning|fatal error): (.*)$`)

// Diagnostics extracts compiler/linker diagnostics of the given kinds from a
// build log, in order, without duplicates.
func Diagnostics(log []byte, kinds ...string) []Diagnostic {
	want := map[string]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	var out []Diagnostic
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		m := diagRe.FindStringSubmatch(sc.Text())
		if m == nil || !want[m[4]] {
			continue
		}
		d := Diagnostic{File: m[1], Kind: m[4], Message: m[5]}
		fmt.Sscan(m[2], &d.Line)
		if m[3] != "" {
			fmt.Sscan(m[3], &d.Col)
		}
		if k := d.String(); !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

// linkerErrRe catches errors that have no file:line (ld, modpost, make).
var linkerErrRe = regexp.MustCompile(`(undefined reference to|ld: .*error|ERROR: modpost:|make\[\d+\]: \*\*\* No rule)`)

// Jobs is the default parallelism: one more than the CPUs, so one job is
// always ready while another waits on I/O.
func Jobs() int { return runtime.NumCPU() + 1 }

// CCacheAvailable reports whether ccache is installed.
func CCacheAvailable() bool {
	_, err := exec.LookPath("ccache")
	return err == nil
}

// Run builds the kernel. The log goes to r.Log as it is produced.
func Run(ctx context.Context, r Request, logPath string) (*Result, error) {
	jobs := r.Jobs
	if jobs <= 0 {
		jobs = Jobs()
	}
	args := []string{"-C", r.Src, "O=" + r.BuildDir, "ARCH=" + r.Arch, fmt.Sprintf("-j%d", jobs),
		"KBUILD_BUILD_USER=kharness", "KBUILD_BUILD_HOST=kharness", "KBUILD_BUILD_TIMESTAMP=2000-01-01"}
	// The C locale: gcc's messages (quotes, translations) are then the
	// same on every host, so warnings compare across builds and machines.
	// Not LC_ALL: the kernel's Makefile unexports it.
	env := []string{"LANG=C", "LC_CTYPE=C", "LC_MESSAGES=C"}
	if r.CCache != "" && CCacheAvailable() {
		cc, err := writeCCWrapper(r.CCache)
		if err != nil {
			return nil, outcome.Errorf(outcome.Infra, "compiler wrapper: %w", err)
		}
		args = append(args, "CC="+cc, "HOSTCC="+cc)
		// Depend mode: on a miss ccache takes the headers from the
		// compiler's own -MMD output instead of running the preprocessor
		// first, which is most of its cold-build cost; the preprocessed
		// mode it gives up hit 3 times in 2,911 misses here (a config
		// change moves the preprocessed text of nearly every file).
		env = append(env, "CCACHE_DIR="+r.CCache, "CCACHE_NOHASHDIR=1", "CCACHE_DEPEND=1",
			"CCACHE_SLOPPINESS=time_macros,include_file_mtime,include_file_ctime")
		if r.CCacheMax > 0 {
			env = append(env, fmt.Sprintf("CCACHE_MAXSIZE=%dk", r.CCacheMax>>10))
		}
		if r.BaseDir != "" {
			env = append(env, "CCACHE_BASEDIR="+r.BaseDir)
		}
	}
	args = append(args, r.Target)
	var captured bytes.Buffer
	objects := &objectCounter{on: r.OnObject}
	log := io.MultiWriter(r.Log, &captured, objects)
	_, vmErr := os.Stat(filepath.Join(r.BuildDir, "vmlinux"))
	cold := vmErr != nil
	// A build killed midway (kharness SIGKILLed, the host rebooted) can
	// leave an object half written but newer than its source, which make
	// then trusts: a kernel that dies before its first line. A marker in
	// the build dir says a build is under way; finding it, the next build
	// starts from make clean (ccache keeps that cheap).
	marker := filepath.Join(r.BuildDir, ".kharness-building")
	if _, err := os.Stat(marker); err == nil {
		fmt.Fprintf(log, "kharness: the last build in %s did not finish: make clean first\n", r.BuildDir)
		clean := []string{"-C", r.Src, "O=" + r.BuildDir, "ARCH=" + r.Arch, "clean"}
		if err := proc.Stream(ctx, proc.Cmd{Name: "make", Args: clean, Log: log}); err != nil {
			return nil, outcome.Errorf(outcome.Infra, "make clean after an unfinished build: %w", err)
		}
	}
	if err := os.WriteFile(marker, []byte("kharness\n"), 0o644); err != nil {
		return nil, outcome.Errorf(outcome.Infra, "build marker: %w", err)
	}
	err := proc.Stream(ctx, proc.Cmd{Name: "make", Args: args, Env: env, Log: log})
	if ctx.Err() == nil {
		// make ended on its own, success or not: Kbuild deleted what it
		// could not finish (.DELETE_ON_ERROR), the tree is consistent.
		if rerr := os.Remove(marker); rerr != nil && err == nil {
			return nil, outcome.Errorf(outcome.Infra, "build marker: %w", rerr)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, outcome.Errorf(outcome.Interrupted, "kernel build: %w", ctx.Err())
		}
		if l := hostFault(captured.Bytes()); l != "" {
			return nil, outcome.Errorf(outcome.Infra, "kernel build stopped by the host, not the code: %s\nfull log: %s", l, logPath)
		}
		be := &Error{LogPath: logPath}
		be.Errors = Diagnostics(captured.Bytes(), "error", "fatal error")
		for i := range be.Errors {
			be.Errors[i].File = relTo(be.Errors[i].File, r.Src, r.BuildDir)
		}
		if len(be.Errors) > 10 {
			be.Errors = be.Errors[:10]
		}
		if len(be.Errors) == 0 {
			be.Tail = tailLines(captured.Bytes(), 20)
		}
		return nil, &outcome.Error{Outcome: outcome.BuildFail, Err: be}
	}
	img := filepath.Join(r.BuildDir, r.Image)
	if _, err := os.Stat(img); err != nil {
		return nil, outcome.Errorf(outcome.BuildFail, "kernel build succeeded but %s is missing", img)
	}
	if err := checkPayload(r.BuildDir); err != nil {
		return nil, payloadError(err)
	}
	var warnings []string
	for _, d := range Diagnostics(captured.Bytes(), "warning") {
		d.File = relTo(d.File, r.Src, r.BuildDir)
		warnings = append(warnings, d.String())
	}
	return &Result{Image: img, Warnings: warnings, Objects: objects.n, Cold: cold}, nil
}

// relTo names a file relative to the first of dirs it is under: gcc
// names a source by its absolute path in some O= builds, and a tree's
// path differs between caches and hosts while "mm/mremap.c" does not.
func relTo(file string, dirs ...string) string {
	for _, d := range dirs {
		if d == "" || !filepath.IsAbs(file) {
			continue
		}
		if rel, err := filepath.Rel(d, file); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return file
}

// hostFaultRe are make/compiler messages about the machine, not the code.
var hostFaultRe = regexp.MustCompile(`(No space left on device|Disk quota exceeded|Cannot allocate memory|virtual memory exhausted|Read-only file system|Killed signal terminated program)`)

// hostFault returns the first line of a build log that blames the host.
func hostFault(log []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if hostFaultRe.Match(sc.Bytes()) {
			return strings.TrimSpace(sc.Text())
		}
	}
	return ""
}

func tailLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var keep []string
	for _, l := range lines {
		if linkerErrRe.MatchString(l) {
			keep = append(keep, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(keep) > 0 {
		return strings.Join(append(keep, "..."), "\n") + "\n" + strings.Join(lines, "\n")
	}
	return strings.Join(lines, "\n")
}

// CompilerID identifies the toolchain for the build cache key: a new gcc
// or binutils must not reuse kernels built by the old one. It does not ask
// make: an unchanged rerun must not run make at all.
func CompilerID(ctx context.Context) string {
	var parts []string
	for _, c := range [][]string{{"gcc", "--version"}, {"ld", "--version"}} {
		out, err := proc.Output(ctx, proc.Cmd{Name: c[0], Args: c[1:]})
		if err != nil {
			parts = append(parts, c[0]+": missing")
			continue
		}
		first, _, _ := strings.Cut(out, "\n")
		parts = append(parts, first)
	}
	return strings.Join(parts, "; ")
}
