// Package config reads kharness.yaml, applies command-line overrides and
// expands the matrix into cells. Decoding is strict (unknown keys and wrong
// types are errors with file:line:col) and validation reports every
// problem at once.
package config

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/internal/strictyaml"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/target"
)

// DefaultSource is Debian's kernel source package.
const DefaultSource = "debian:linux-source-6.12"

// Selection is either "all" or an explicit list of names.
type Selection struct {
	All   bool
	Names []string
}

// UnmarshalYAML accepts the scalar "all", a single name, or a list.
func (s *Selection) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == "all" {
			*s = Selection{All: true}
			return nil
		}
		if n.Tag == "!!null" {
			*s = Selection{Names: []string{}}
			return nil
		}
		*s = Selection{Names: []string{n.Value}}
		return nil
	case yaml.SequenceNode:
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		if names == nil {
			names = []string{}
		}
		*s = Selection{Names: names}
		return nil
	}
	return fmt.Errorf("want \"all\" or a list of names")
}

// Set reports whether the selection was written at all.
func (s Selection) Set() bool { return s.All || s.Names != nil }

// Cell is one explicitly configured matrix entry.
type Cell struct {
	Name      string    `yaml:"name"`
	Targets   []string  `yaml:"targets"`
	PatchSets Selection `yaml:"patchsets"`
	Suites    Selection `yaml:"suites"`
	// Expect marks a cell that must fail (a mutant): `fail` for any test
	// failure or crash blamed on a test, or a mapping naming the tests,
	// accepted outcomes, crash title or reason (outcome.Expectation).
	Expect Expect `yaml:"expect"`
}

// Expect is a cell's expectation as written: absent or `pass` (none),
// `fail` (the shorthand) or a mapping.
type Expect struct {
	outcome.Expectation `yaml:",inline"`
	// Set is true for `fail` and for the mapping form.
	Set bool `yaml:"-"`
}

// FromScalar reads the one-word forms (strictyaml.ScalarForm).
func (e *Expect) FromScalar(word string) error {
	switch word {
	case "fail":
		*e = Expect{Set: true}
	case "pass", "":
		*e = Expect{}
	default:
		return fmt.Errorf("expect must be pass, fail or a mapping {fail: [suite:regexp...], outcome: [...], crash: regexp, reason: regexp}, not %q", word)
	}
	return nil
}

// FromMapping marks the mapping form as set (strictyaml.ScalarForm).
func (e *Expect) FromMapping() { e.Set = true }

// Get returns the expectation, nil for a cell expected to pass.
func (e Expect) Get() *outcome.Expectation {
	if !e.Set {
		return nil
	}
	x := e.Expectation
	return &x
}

// Size is a number of bytes written as "25G", "500M" or "1.5 GiB".
type Size int64

// UnmarshalYAML reads a size with a unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := humanize.ParseBytes(n.Value)
	if err != nil {
		return fmt.Errorf("want a size such as 25G or 500M: %w", err)
	}
	*s = Size(v)
	return nil
}

// Timeouts are the base deadlines under KVM; TCG multiplies them (Plan).
type Timeouts struct {
	Boot     time.Duration `yaml:"boot"`      // QEMU start to the agent's hello
	NoOutput time.Duration `yaml:"no_output"` // silence: console or events before the hello, events after
	Suite    time.Duration `yaml:"suite"`     // a suite's set-up allowance (a manifest's timeout overrides it)
	Test     time.Duration `yaml:"test"`      // one test's allowance beyond 2 × duration
	Overall  time.Duration `yaml:"overall"`   // whole boot, 0 = derived from the suites
	TCGScale float64       `yaml:"tcg_scale"`
	// Caps keep a long duration under TCG from giving a hung guest days.
	SuiteMax   time.Duration `yaml:"suite_max"`
	OverallMax time.Duration `yaml:"overall_max"`
	// Lock bounds the wait for another run's lock on a tree or cache entry.
	Lock time.Duration `yaml:"lock"`
	// Build bounds one kernel build (make), Command one git/tar/olddefconfig.
	Build   time.Duration `yaml:"build"`
	Command time.Duration `yaml:"command"`
}

// SuitePlan is what Plan needs of one suite of a cell.
type SuitePlan struct {
	Setup time.Duration // its manifest's timeout (0: timeouts.suite)
	Tests int           // tests selected
}

// Deadlines are a boot's timeouts, scaled for the accelerator.
type Deadlines struct {
	Boot, NoOutput, Test, Overall time.Duration
	Suites                        []time.Duration // per SuitePlan, in order
}

// Plan scales the base timeouts for one boot. Under TCG every allowance is
// multiplied by tcg_scale; the stress duration itself is wall time and is
// not. A test may take 2 × duration plus its allowance; a suite its
// set-up allowance plus every test's, capped at suite_max; the boot the
// sum plus the boot allowance and a minute, capped at overall_max.
func (t Timeouts) Plan(tcg bool, duration time.Duration, suites []SuitePlan) Deadlines {
	scale := 1.0
	if tcg {
		scale = t.TCGScale
	}
	sc := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	d := Deadlines{Boot: sc(t.Boot), NoOutput: sc(t.NoOutput), Test: 2*duration + sc(t.Test)}
	total := time.Duration(0)
	for _, s := range suites {
		setup := s.Setup
		if setup == 0 {
			setup = t.Suite
		}
		sd := sc(setup) + time.Duration(s.Tests)*(duration+sc(t.Test)/4)
		if sd > t.SuiteMax {
			sd = t.SuiteMax
		}
		d.Suites = append(d.Suites, sd)
		total += sd
	}
	if t.Overall > 0 {
		d.Overall = sc(t.Overall)
	} else {
		d.Overall = d.Boot + total + time.Minute
	}
	if d.Overall > t.OverallMax {
		d.Overall = t.OverallMax
	}
	return d
}

// Dirs are the project directories, relative to the config file.
type Dirs struct {
	Patches  string `yaml:"patches"`
	Kconfigs string `yaml:"kconfigs"`
	Suites   string `yaml:"suites"`
	Module   string `yaml:"module"` // Go module holding the agent and suites
	// Known is the known-issues file (harness/known): failures it
	// describes are recorded but do not fail a cell, here and in history.
	Known string `yaml:"known"`
}

// File is kharness.yaml.
type File struct {
	Source    string    `yaml:"source"`
	Targets   []string  `yaml:"targets"`
	PatchSets Selection `yaml:"patchsets"`
	Suites    Selection `yaml:"suites"`
	// Duration is the stress parameter handed to every suite: seconds in
	// CI, minutes nightly.
	Duration  time.Duration `yaml:"duration"`
	Intensity int           `yaml:"intensity"`
	Accel     string        `yaml:"accel"`
	Results   string        `yaml:"results"`
	Cache     string        `yaml:"cache"`
	Jobs      int           `yaml:"jobs"`
	// CacheMax bounds the whole cache (trees, kernels, initramfs images,
	// sources; least recently used first); CCacheMax bounds ccache.
	CacheMax  Size `yaml:"cache_max"`
	CCacheMax Size `yaml:"ccache_max"`
	// Overlap lets the next cell's kernel build while a cell boots: auto
	// (when the host has two cores beyond the guest's), on or off.
	Overlap  string   `yaml:"overlap"`
	Cmdline  []string `yaml:"cmdline"` // extra kernel args for every boot
	Timeouts Timeouts `yaml:"timeouts"`
	Dirs     Dirs     `yaml:"dirs"`
	Cells    []Cell   `yaml:"cells"`
}

// Config is a loaded file plus where it came from.
type Config struct {
	File
	Path string // the config file
	Root string // its directory; relative paths resolve here
	pos  strictyaml.Positions
	// unmatched lists --cell patterns that matched no cell: Validate
	// reports them instead of silently running nothing.
	unmatched []string
	allCells  []string
	// Only, when set, keeps just these matrix cells (MatrixCell.ID): one
	// shard of a sharded matrix, or one kernel's build job.
	Only []string
}

// Overrides are the command-line flags that take precedence over the file.
type Overrides struct {
	Source    string
	Targets   []string
	PatchSets []string
	Suites    []string
	Accel     string
	Results   string
	Cache     string
	Duration  time.Duration
	// Cells keeps only the matrix cells whose names match one of these
	// shell patterns (path.Match), e.g. "cow-*" for one family of mutants.
	Cells []string
}

// Load reads and strictly decodes path, fills defaults and applies o.
// It does not validate names against the tree: call Validate.
func Load(path string, o Overrides) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config path %s: %w", path, err)
	}
	return Parse(abs, data, o)
}

// Parse decodes data as if read from path.
func Parse(path string, data []byte, o Overrides) (*Config, error) {
	c := &Config{Path: path, Root: filepath.Dir(path)}
	pos, err := strictyaml.Decode(path, data, &c.File)
	c.pos = pos
	if err != nil {
		return nil, err
	}
	c.defaults()
	c.override(o)
	return c, nil
}

func (c *Config) defaults() {
	f := &c.File
	if f.Source == "" {
		f.Source = DefaultSource
	}
	if len(f.Targets) == 0 {
		f.Targets = target.Defaults()
	}
	if !f.PatchSets.Set() {
		f.PatchSets = Selection{All: true}
	}
	if !f.Suites.Set() {
		f.Suites = Selection{All: true}
	}
	if f.Duration == 0 {
		f.Duration = 10 * time.Second
	}
	if f.Intensity == 0 {
		f.Intensity = 1
	}
	if f.CacheMax == 0 {
		f.CacheMax = 25 << 30
	}
	if f.CCacheMax == 0 {
		f.CCacheMax = 5 << 30
	}
	if f.Accel == "" {
		f.Accel = "auto"
	}
	if f.Results == "" {
		f.Results = "results"
	}
	if f.Timeouts.Boot == 0 {
		f.Timeouts.Boot = 30 * time.Second
	}
	if f.Timeouts.NoOutput == 0 {
		f.Timeouts.NoOutput = 60 * time.Second
	}
	if f.Timeouts.Suite == 0 {
		f.Timeouts.Suite = 5 * time.Minute
	}
	if f.Timeouts.Test == 0 {
		f.Timeouts.Test = 2 * time.Minute
	}
	if f.Timeouts.SuiteMax == 0 {
		f.Timeouts.SuiteMax = 4 * time.Hour
	}
	if f.Timeouts.OverallMax == 0 {
		f.Timeouts.OverallMax = 8 * time.Hour
	}
	if f.Timeouts.Lock == 0 {
		f.Timeouts.Lock = 2 * time.Hour
	}
	if f.Timeouts.Build == 0 {
		f.Timeouts.Build = 2 * time.Hour
	}
	if f.Timeouts.Command == 0 {
		f.Timeouts.Command = 30 * time.Minute
	}
	if f.Timeouts.TCGScale == 0 {
		f.Timeouts.TCGScale = 5
	}
	if f.Dirs.Patches == "" {
		f.Dirs.Patches = "patches"
	}
	if f.Dirs.Kconfigs == "" {
		f.Dirs.Kconfigs = "kconfigs"
	}
	if f.Dirs.Suites == "" {
		f.Dirs.Suites = "suites"
	}
	if f.Dirs.Module == "" {
		f.Dirs.Module = "."
	}
	if f.Dirs.Known == "" {
		f.Dirs.Known = "known-issues.yaml"
	}
}

func (c *Config) override(o Overrides) {
	if o.Source != "" {
		c.Source = o.Source
	}
	if len(o.Targets) > 0 {
		c.Targets = o.Targets
		c.fromFlag("targets", "--target", len(o.Targets))
		for i := range c.Cells {
			c.Cells[i].Targets = intersect(c.cellTargets(c.Cells[i]), o.Targets)
		}
	}
	if o.PatchSets != nil {
		c.PatchSets = Selection{Names: o.PatchSets, All: len(o.PatchSets) == 1 && o.PatchSets[0] == "all"}
		if c.PatchSets.All {
			c.PatchSets.Names = nil
		}
		c.fromFlag("patchsets", "--patchset", len(o.PatchSets))
		c.Cells = nil // an explicit stack on the command line replaces the configured cells
	}
	if len(o.Suites) > 0 {
		c.Suites = Selection{Names: o.Suites}
		c.fromFlag("suites", "--suite", len(o.Suites))
		for i := range c.Cells {
			c.Cells[i].Suites = Selection{}
		}
	}
	if o.Accel != "" {
		c.Accel = o.Accel
		c.fromFlag("accel", "--accel", 0)
	}
	if o.Results != "" {
		c.Results = o.Results
	}
	if o.Cache != "" {
		c.Cache = o.Cache
	}
	if o.Duration != 0 {
		c.Duration = o.Duration
	}
	if len(o.Cells) > 0 {
		c.filterCells(o.Cells)
	}
}

// filterCells keeps the cells named by patterns; the implicit cell of a
// file without cells is called "default".
func (c *Config) filterCells(patterns []string) {
	cells := c.Cells
	if len(cells) == 0 {
		cells = []Cell{{Name: "default"}}
	}
	hit := make([]bool, len(patterns))
	var keep []Cell
	for _, cell := range cells {
		c.allCells = append(c.allCells, cell.Name)
		match := false
		for i, p := range patterns {
			if ok, err := path.Match(p, cell.Name); ok || (err != nil && p == cell.Name) {
				hit[i], match = true, true
			}
		}
		if match {
			keep = append(keep, cell)
		}
	}
	for i, p := range patterns {
		if !hit[i] {
			c.unmatched = append(c.unmatched, p)
		}
	}
	c.Cells = keep
}

// fromFlag makes errors about a value given on the command line name the
// flag, not the line of the file it replaced.
func (c *Config) fromFlag(key, flag string, n int) {
	for p := range c.pos {
		if p == key || strings.HasPrefix(p, key+"[") {
			delete(c.pos, p)
		}
	}
	c.pos[key] = strictyaml.Pos{Flag: flag}
	for i := 0; i < n; i++ {
		c.pos[fmt.Sprintf("%s[%d]", key, i)] = strictyaml.Pos{Flag: flag}
	}
}

func (c *Config) cellTargets(cell Cell) []string {
	if len(cell.Targets) > 0 {
		return cell.Targets
	}
	return c.Targets
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	out := []string{}
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// Abs resolves a path from the config relative to its directory.
func (c *Config) Abs(p string) string {
	if strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[2:])
		}
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Root, p)
}

// CacheDir is where sources, kernels and initramfs images are kept across
// runs. A stable path also keeps ccache hits across work trees. There is
// no fallback to a shared /tmp: another user's or an old run's files
// there would be trusted as ours.
func (c *Config) CacheDir() (string, error) {
	if c.Cache != "" {
		return c.Abs(c.Cache), nil
	}
	if d := os.Getenv("KHARNESS_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set cache: in %s, --cache or $KHARNESS_CACHE (%v)", c.Path, err)
	}
	return filepath.Join(d, "kharness"), nil
}

// Where returns the file position of a config value path, for errors.
func (c *Config) Where(path string) strictyaml.Pos {
	if p, ok := c.pos[path]; ok {
		return p
	}
	return strictyaml.Pos{File: c.Path}
}

// Catalog is what exists on disk, for validating names.
type Catalog struct {
	PatchSets []string // every patch set that exists
	// DefaultPatchSets are those "all" selects: top-level sets, not the
	// ones nested under a container such as mutants/.
	DefaultPatchSets []string
	Suites           []string // every suite that exists
	// DefaultSuites are those "all" selects (test-only suites are not).
	DefaultSuites []string
	// Tests are each suite's declared tests (its -list), for checking
	// that a test regexp selects something. A suite missing here is not
	// checked.
	Tests map[string][]string
}

// checkTests reports a test regexp that does not compile or selects no
// declared test of the suite.
func (cat Catalog) checkTests(suite, expr string) error {
	re, err := guest.CompileTests(expr)
	if err != nil {
		return err
	}
	tests, ok := cat.Tests[suite]
	if !ok {
		return nil
	}
	for _, t := range tests {
		if re.MatchString(t) {
			return nil
		}
	}
	return fmt.Errorf("test regexp %q selects none of suite %s's tests (%s)", expr, suite, listOrNone(tests))
}

// validateExpect checks a cell's expectation: its patterns compile, name
// suites the cell runs and select tests that exist.
func (c *Config) validateExpect(path string, x outcome.Expectation, suites []string, cat Catalog, add func(path, format string, args ...any)) {
	if err := x.Validate(); err != nil {
		add(path, "%v", err)
		return
	}
	runs := map[string]string{}
	for _, s := range suites {
		g := guest.ParseSuiteSpec(s)
		runs[g.Name] = g.Tests
	}
	for i, p := range x.Fail {
		g := guest.ParseSuiteSpec(p)
		where := fmt.Sprintf("%s.fail[%d]", path, i)
		if _, ok := runs[g.Name]; !ok && len(suites) > 0 {
			add(where, "expects suite %s to fail, but the cell does not run it (it runs %s)", g.Name, strings.Join(suites, ", "))
			continue
		}
		if g.Tests != "" {
			if err := cat.checkTests(g.Name, g.Tests); err != nil {
				add(where, "%v", err)
			}
		}
	}
}

// cellSuites is what a cell runs, "all" resolved later by Matrix; an
// empty list means the defaults.
func (c *Config) cellSuites(cell Cell) []string {
	if cell.Suites.Set() && !cell.Suites.All {
		return cell.Suites.Names
	}
	if !c.Suites.All {
		return c.Suites.Names
	}
	return nil
}

// Validate checks every name and value and reports all problems together.
func (c *Config) Validate(cat Catalog) error {
	var errs *multierror.Error
	add := func(path, format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%s: %s", c.Where(path), fmt.Sprintf(format, args...)))
	}
	known := target.Builtin()
	for i, t := range c.Targets {
		if _, ok := known[t]; !ok {
			add(fmt.Sprintf("targets[%d]", i), "unknown target %q (known: %s)", t, strings.Join(target.Names(), ", "))
		}
	}
	checkSel := func(path string, s Selection, have []string, what string) {
		set := map[string]bool{}
		for _, h := range have {
			set[h] = true
		}
		for i, n := range s.Names {
			var tests string
			if what == "suite" {
				g := guest.ParseSuiteSpec(n) // suite:test-regexp
				n, tests = g.Name, g.Tests
			}
			if !set[n] && n != "all" {
				add(fmt.Sprintf("%s[%d]", path, i), "unknown %s %q (have: %s)", what, n, listOrNone(have))
				continue
			}
			if tests != "" {
				if err := cat.checkTests(n, tests); err != nil {
					add(fmt.Sprintf("%s[%d]", path, i), "%v", err)
				}
			}
		}
	}
	checkSel("patchsets", c.PatchSets, cat.PatchSets, "patch set")
	checkSel("suites", c.Suites, cat.Suites, "suite")
	switch c.Overlap {
	case "", "auto", "on", "off":
	default:
		add("overlap", "overlap must be auto, on or off, not %q", c.Overlap)
	}
	switch c.Accel {
	case "auto", "kvm", "tcg":
	default:
		add("accel", "accel must be auto, kvm or tcg, not %q", c.Accel)
	}
	if c.Duration < 0 {
		add("duration", "duration must be positive")
	}
	if c.Intensity < 1 {
		add("intensity", "intensity must be at least 1")
	}
	if c.Timeouts.TCGScale < 1 {
		add("timeouts.tcg_scale", "tcg_scale must be at least 1")
	}
	if len(c.unmatched) > 0 {
		errs = multierror.Append(errs, fmt.Errorf("--cell %s matches no cell of %s (cells: %s)",
			strings.Join(c.unmatched, ","), c.Path, listOrNone(c.allCells)))
	}
	names := map[string]int{}
	for i, cell := range c.Cells {
		p := fmt.Sprintf("cells[%d]", i)
		if cell.Name == "" {
			add(p, "cell needs a name")
		} else if strings.ContainsAny(cell.Name, "/ \t") {
			add(p+".name", "cell name %q may not contain '/' or spaces", cell.Name)
		} else if j, dup := names[cell.Name]; dup {
			add(p+".name", "cell name %q already used by cells[%d]", cell.Name, j)
		} else {
			names[cell.Name] = i
		}
		for j, t := range cell.Targets {
			if _, ok := known[t]; !ok {
				add(fmt.Sprintf("%s.targets[%d]", p, j), "unknown target %q (known: %s)", t, strings.Join(target.Names(), ", "))
			}
		}
		checkSel(p+".patchsets", cell.PatchSets, cat.PatchSets, "patch set")
		checkSel(p+".suites", cell.Suites, cat.Suites, "suite")
		if x := cell.Expect.Get(); x != nil {
			c.validateExpect(p+".expect", *x, c.cellSuites(cell), cat, add)
		}
	}
	return errs.ErrorOrNil()
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// MatrixCell is one (source, target, patch stack) to build and boot.
type MatrixCell struct {
	ID        string // "<name>/<target>", unique in the run and safe as a directory name
	Name      string
	Target    string
	PatchSets []string // applied together, in this order
	Suites    []string
	Expect    *outcome.Expectation // nil: the cell must pass
}

// Matrix expands the config into cells. Without explicit cells there is
// one cell per target with every selected patch set stacked.
func (c *Config) Matrix(cat Catalog) []MatrixCell {
	// "all" inside a list stands for the defaults there, so a mutant cell
	// can say [all, mutants/x]: the default stack plus one bug.
	resolve := func(s Selection, all []string) []string {
		if s.All {
			return append([]string(nil), all...)
		}
		out := []string{}
		for _, n := range s.Names {
			if n == "all" {
				out = append(out, all...)
			} else {
				out = append(out, n)
			}
		}
		return out
	}
	var out []MatrixCell
	cells := c.Cells
	if len(cells) == 0 {
		cells = []Cell{{Name: "default"}}
	}
	keep := map[string]bool{}
	for _, id := range c.Only {
		keep[id] = true
	}
	for _, cell := range cells {
		ps := c.PatchSets
		if cell.PatchSets.Set() {
			ps = cell.PatchSets
		}
		ss := c.Suites
		if cell.Suites.Set() {
			ss = cell.Suites
		}
		for _, t := range c.cellTargets(cell) {
			if len(keep) > 0 && !keep[cell.Name+"."+t] {
				continue
			}
			out = append(out, MatrixCell{
				ID: cell.Name + "." + t, Name: cell.Name, Target: t,
				PatchSets: resolve(ps, cat.DefaultPatchSets),
				Suites:    resolve(ss, cat.DefaultSuites),
				Expect:    cell.Expect.Get(),
			})
		}
	}
	return out
}
