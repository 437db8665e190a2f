// Package kconfig produces a kernel .config from a base target (tinyconfig
// or defconfig) plus fragments, and then checks, like kunit.py, that every
// option the fragments asked for survived olddefconfig: an option silently
// dropped by an unmet dependency is the classic way to test the wrong
// kernel.
package kconfig

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/kharness/kharness/harness/internal/proc"
	"github.com/kharness/kharness/harness/outcome"
)

// Option is one requested setting and where it was requested.
type Option struct {
	Name  string // CONFIG_FOO
	Value string // y, m, n, a number or a quoted string
	File  string
	Line  int
}

func (o Option) String() string {
	return fmt.Sprintf("%s=%s (%s:%d)", o.Name, o.Value, o.File, o.Line)
}

// Fragment is a parsed config fragment file.
type Fragment struct {
	Path string
	// Level orders fragments by generality (common, target, patch set,
	// suite): a later level may override an earlier one, two fragments of
	// the same level must agree.
	Level   string
	Options []Option
}

var (
	setRe   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetRe = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
)

// ParseFragment reads a fragment; malformed lines are errors naming file:line.
func ParseFragment(path string) (Fragment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Fragment{}, fmt.Errorf("kconfig fragment: %w", err)
	}
	return ParseFragmentData(path, data)
}

// ParseFragmentData parses fragment text as if read from path.
func ParseFragmentData(path string, data []byte) (Fragment, error) {
	f := Fragment{Path: path}
	var errs *multierror.Error
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var o Option
		if m := unsetRe.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: "n"}
		} else if line == "" || strings.HasPrefix(line, "#") {
			continue
		} else if m := setRe.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: m[2]}
			if !validValue(o.Value) {
				errs = multierror.Append(errs, fmt.Errorf("%s:%d: %s: bad value %q (want y, m, n, a number or a quoted string)", path, n, o.Name, o.Value))
				continue
			}
		} else {
			errs = multierror.Append(errs, fmt.Errorf("%s:%d: not a kconfig line: %q (want CONFIG_FOO=y or # CONFIG_FOO is not set)", path, n, line))
			continue
		}
		o.File, o.Line = path, n
		if prev, dup := seen[o.Name]; dup {
			errs = multierror.Append(errs, fmt.Errorf("%s:%d: %s already set at line %d", path, n, o.Name, prev))
			continue
		}
		seen[o.Name] = n
		f.Options = append(f.Options, o)
	}
	return f, errs.ErrorOrNil()
}

var numRe = regexp.MustCompile(`^(-?[0-9]+|0x[0-9a-fA-F]+)$`)

func validValue(v string) bool {
	switch v {
	case "y", "m", "n":
		return true
	}
	if numRe.MatchString(v) {
		return true
	}
	return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"'
}

// Merge combines fragments in order. A fragment of a later level (a patch
// set's over the target's) overrides an earlier one, and every override is
// reported so it is never silent; two fragments of the same level that
// disagree (two suites wanting different values) are an error naming both,
// since no order between them is meaningful.
func Merge(frags []Fragment) (opts []Option, overrides []string, err error) {
	idx := map[string]int{}
	level := map[string]string{}
	var errs *multierror.Error
	for _, f := range frags {
		for _, o := range f.Options {
			i, ok := idx[o.Name]
			if !ok {
				idx[o.Name], level[o.Name] = len(opts), f.Level
				opts = append(opts, o)
				continue
			}
			if opts[i].Value == o.Value {
				continue
			}
			if level[o.Name] == f.Level {
				errs = multierror.Append(errs, fmt.Errorf("%s:%d: %s=%s disagrees with %s:%d: %s=%s (both %s fragments; settle it in one place)",
					o.File, o.Line, o.Name, o.Value, opts[i].File, opts[i].Line, opts[i].Name, opts[i].Value, f.Level))
				continue
			}
			overrides = append(overrides, fmt.Sprintf("%s overrides %s", o, opts[i]))
			opts[i], level[o.Name] = o, f.Level
		}
	}
	return opts, overrides, errs.ErrorOrNil()
}

// Parse reads a .config into name → value ("n" for "is not set").
func Parse(data []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if s := setRe.FindStringSubmatch(line); s != nil {
			m[s[1]] = s[2]
		} else if s := unsetRe.FindStringSubmatch(line); s != nil {
			m[s[1]] = "n"
		}
	}
	return m
}

// Dropped is a requested option that did not end up as requested.
type Dropped struct {
	Option
	Got string // value in the final .config; "n" when unset or absent
}

// Verify compares the requested options against the final .config.
func Verify(final map[string]string, requested []Option) []Dropped {
	var d []Dropped
	for _, o := range requested {
		got, ok := final[o.Name]
		if !ok {
			got = "n"
		}
		if got != o.Value {
			d = append(d, Dropped{Option: o, Got: got})
		}
	}
	return d
}

// DroppedError lists every option that did not survive.
type DroppedError struct {
	Dropped []Dropped
}

func (e *DroppedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kconfig: %d requested option(s) did not survive olddefconfig (unmet dependencies or invalid for this arch):", len(e.Dropped))
	for _, d := range e.Dropped {
		got := "is not set"
		if d.Got != "n" {
			got = "=" + d.Got
		}
		fmt.Fprintf(&b, "\n  %s:%d: %s=%s requested, final .config has %s %s", d.File, d.Line, d.Name, d.Value, d.Name, got)
	}
	return b.String()
}

// Request describes one configuration to produce.
type Request struct {
	Src       string // kernel source tree
	BuildDir  string // O= directory; .config is written here
	Arch      string // make ARCH=
	Base      string // tinyconfig, defconfig, ...
	Fragments []Fragment
	Log       io.Writer
	Jobs      int
}

// Configure writes BuildDir/.config and verifies it. On dropped options
// it returns a *DroppedError wrapped as outcome.KconfigDrop; the .config
// is still written so it can be inspected.
func Configure(ctx context.Context, r Request) ([]byte, error) {
	if err := os.MkdirAll(r.BuildDir, 0o755); err != nil {
		return nil, err
	}
	mk := func(args ...string) error {
		a := append([]string{"-C", r.Src, "O=" + r.BuildDir, "ARCH=" + r.Arch, "-s"}, args...)
		if _, err := proc.Run(ctx, proc.Cmd{Name: "make", Args: a, Log: r.Log}); err != nil {
			return outcome.Errorf(outcome.Infra, "make %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}
	if err := mk(r.Base); err != nil {
		return nil, err
	}
	opts, overrides, err := Merge(r.Fragments)
	if err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "kconfig fragments: %w", err)
	}
	for _, o := range overrides {
		fmt.Fprintf(r.Log, "kconfig: note: %s\n", o)
	}
	cfgPath := filepath.Join(r.BuildDir, ".config")
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(base)
	b.WriteString("\n# kharness fragments\n")
	for _, o := range opts {
		if o.Value == "n" {
			fmt.Fprintf(&b, "# %s is not set\n", o.Name)
		} else {
			fmt.Fprintf(&b, "%s=%s\n", o.Name, o.Value)
		}
	}
	if err := os.WriteFile(cfgPath, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if err := mk("olddefconfig"); err != nil {
		return nil, err
	}
	final, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	if d := Verify(Parse(final), opts); len(d) > 0 {
		sort.SliceStable(d, func(i, j int) bool { return d[i].File < d[j].File })
		return final, &outcome.Error{Outcome: outcome.KconfigDrop, Err: &DroppedError{Dropped: d}}
	}
	return final, nil
}
