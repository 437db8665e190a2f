// Package catalog finds what a run can choose from on disk: the suites
// (directories under suites/ with a suite.yaml manifest) and the patch
// sets. Manifests are decoded strictly, like kharness.yaml.
package catalog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"gopkg.in/yaml.v3"
)

// Suite is a suite's manifest.
type Suite struct {
	Name        string `yaml:"-"`
	Dir         string `yaml:"-"`
	Description string `yaml:"description"`
	// Timeout is the suite's deadline in the guest at the default 10s
	// duration under KVM; the harness scales it.
	Timeout time.Duration `yaml:"timeout"`
	// Default false keeps a suite (e.g. the harness's own selftest) out of "all".
	Default *bool `yaml:"default"`
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
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if s.Timeout <= 0 {
			return nil, fmt.Errorf("%s: timeout must be set and positive", p)
		}
		s.Name, s.Dir = e.Name(), filepath.Join(dir, e.Name())
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
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
