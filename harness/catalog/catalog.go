// Package catalog finds what a run can choose from on disk: the suites
// (directories under suites/ with a suite.yaml manifest) and the patch
// sets. Manifests are decoded strictly, like kharness.yaml.
package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/internal/proc"
	"github.com/kharness/kharness/harness/internal/strictyaml"
)

// Suite is a suite's manifest.
type Suite struct {
	Name        string `yaml:"-"`
	Dir         string `yaml:"-"`
	Description string `yaml:"description"`
	// Type is what runs: go (the default: the Go program in the suite's
	// directory), kselftest (programs of the kernel tree's selftests,
	// built from the cell's own tree) or kunit (in-kernel KUnit suites,
	// turned on by the suite's kconfig fragment, reporting on the console).
	Type string `yaml:"type"`
	// Timeout is the suite's deadline in the guest at the default 10s
	// duration under KVM; the harness scales it.
	Timeout time.Duration `yaml:"timeout"`
	// Default false keeps a suite (e.g. the harness's own selftest) out of "all".
	Default *bool `yaml:"default"`
	// Programs are a kselftest suite's programs.
	Programs []Program `yaml:"programs"`
	// KUnit are a kunit suite's KUnit suites (as they name themselves in
	// KTAP); each must report.
	KUnit []string `yaml:"kunit"`
	// Sysctl is what a kselftest suite sets before its programs run
	// (vm.nr_hugepages for the hugetlb cases), restored after.
	Sysctl map[string]string `yaml:"sysctl"`
}

// Suite types.
const (
	TypeGo        = "go"
	TypeKselftest = "kselftest"
	TypeKUnit     = "kunit"
)

// Program is one selftest program.
type Program struct {
	// Path in the kernel tree, e.g. tools/testing/selftests/mm/cow.
	Path string `yaml:"path"`
	// Args are its arguments; {duration_s} stands for the run's duration
	// in seconds, so a stress program scales like the Go suites.
	Args []string `yaml:"args"`
	// Timeout overrides the directory's settings file (timeout=N), which
	// overrides kselftest's 45 s default.
	Timeout time.Duration `yaml:"timeout"`
	// Format is how it reports: ktap (the default), or uffd-unit
	// ("Testing X... done|skipped [reason]|failed [reason]" lines, which
	// 6.12's uffd-unit-tests prints instead of KTAP).
	Format string `yaml:"format"`
}

// Name is the program's name (its test name).
func (p Program) Name() string { return filepath.Base(p.Path) }

// IsGo says whether the suite is a Go program of this module.
func (s Suite) IsGo() bool { return s.Type == "" || s.Type == TypeGo }

// Declared are the tests a kselftest or kunit suite declares: its
// programs, or its KUnit suites.
func (s Suite) Declared() []string {
	var out []string
	for _, p := range s.Programs {
		out = append(out, p.Name())
	}
	return append(out, s.KUnit...)
}

// sysctlRe is a sysctl's dotted name (no path tricks).
var sysctlRe = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_-]+)+$`)

func (s Suite) validate(path string) error {
	var errs *multierror.Error
	switch s.Type {
	case "", TypeGo:
		if len(s.Programs) > 0 || len(s.KUnit) > 0 || len(s.Sysctl) > 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s: a go suite has no programs, kunit or sysctl", path))
		}
	case TypeKselftest:
		for k := range s.Sysctl {
			if !sysctlRe.MatchString(k) {
				errs = multierror.Append(errs, fmt.Errorf("%s: sysctl %q: want a name like vm.nr_hugepages", path, k))
			}
		}
		if len(s.Programs) == 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s: a kselftest suite needs programs", path))
		}
		seen := map[string]bool{}
		for i, p := range s.Programs {
			if !strings.HasPrefix(p.Path, "tools/testing/selftests/") || strings.Contains(p.Path, "..") {
				errs = multierror.Append(errs, fmt.Errorf("%s: programs[%d]: path %q is not under tools/testing/selftests/", path, i, p.Path))
			}
			if seen[p.Name()] {
				errs = multierror.Append(errs, fmt.Errorf("%s: programs[%d]: %s named twice", path, i, p.Name()))
			}
			seen[p.Name()] = true
			switch p.Format {
			case "", "ktap", "uffd-unit":
			default:
				errs = multierror.Append(errs, fmt.Errorf("%s: programs[%d]: format %q: want ktap or uffd-unit", path, i, p.Format))
			}
		}
	case TypeKUnit:
		if len(s.KUnit) == 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s: a kunit suite names its KUnit suites (kunit: [...])", path))
		}
	default:
		errs = multierror.Append(errs, fmt.Errorf("%s: type %q: want go, kselftest or kunit", path, s.Type))
	}
	return errs.ErrorOrNil()
}

// InAll reports whether "all" selects the suite.
func (s Suite) InAll() bool { return s.Default == nil || *s.Default }

// Suites reads every suites/<name>/suite.yaml under dir, sorted by name.
func Suites(dir string) ([]Suite, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("suites: %w", err)
	}
	var out []Suite
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name(), "suite.yaml")
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue // a library package such as suites/suite
		}
		if err != nil {
			return nil, err
		}
		var s Suite
		if _, err := strictyaml.Decode(p, data, &s); err != nil {
			return nil, err
		}
		if s.Timeout <= 0 {
			return nil, fmt.Errorf("%s: timeout must be set and positive", p)
		}
		if err := s.validate(p); err != nil {
			return nil, err
		}
		s.Name, s.Dir = e.Name(), filepath.Join(dir, e.Name())
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GoNames lists the suites that are Go programs (what goes into the
// initramfs and lists its tests with -list).
func GoNames(ss []Suite) []string {
	var n []string
	for _, s := range ss {
		if s.IsGo() {
			n = append(n, s.Name)
		}
	}
	return n
}

// Names lists suite names; with onlyDefault, those "all" selects.
func Names(ss []Suite, onlyDefault bool) []string {
	var n []string
	for _, s := range ss {
		if !onlyDefault || s.InAll() {
			n = append(n, s.Name)
		}
	}
	return n
}

// Tests lists each suite's tests as its binary declares them (-list),
// built for the host from the module at moduleDir. Lists are cached under
// cacheDir by a hash of the suites' sources, so an unchanged tree costs
// one `go list`. A suite that does not build or list is an error naming it.
func Tests(ctx context.Context, moduleDir, module, cacheDir string, suites []string) (map[string][]string, error) {
	pkgs := make([]string, len(suites))
	for i, s := range suites {
		pkgs[i] = module + "/suites/" + s
	}
	src, err := cache.GoSources(ctx, moduleDir, runtime.GOARCH, pkgs...)
	if err != nil {
		return nil, fmt.Errorf("suites' sources: %w", err)
	}
	key := cache.Key(append([]string{"catalog-tests-v1", runtime.Version(), strings.Join(suites, ",")}, src...)...)
	path := filepath.Join(cacheDir, "catalog", key[:24]+".json")
	if b, err := os.ReadFile(path); err == nil {
		var m map[string][]string
		if json.Unmarshal(b, &m) == nil {
			return m, nil
		}
	}
	bin, err := os.MkdirTemp("", "kharness-list-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bin)
	if _, err := proc.Run(ctx, proc.Cmd{Dir: moduleDir, Name: "go", Args: append([]string{"build", "-o", bin + "/"}, pkgs...)}); err != nil {
		return nil, fmt.Errorf("build the suites to list their tests: %w", err)
	}
	m := map[string][]string{}
	var errs *multierror.Error
	for _, s := range suites {
		out, err := proc.Run(ctx, proc.Cmd{Name: filepath.Join(bin, s), Args: []string{"-list"}})
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("suite %s: -list: %w", s, err))
			continue
		}
		m[s] = strings.Fields(string(out))
		if len(m[s]) == 0 {
			errs = multierror.Append(errs, fmt.Errorf("suite %s declares no tests", s))
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(m)
	if err := cache.WriteFile(path, b); err != nil {
		return nil, fmt.Errorf("cache the suites' test lists: %w", err)
	}
	return m, nil
}
