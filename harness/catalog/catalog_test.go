package catalog

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSuites(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		if body != "" {
			os.WriteFile(filepath.Join(dir, name, "suite.yaml"), []byte(body), 0o644)
		}
	}
	write("smoke", "description: x\ntimeout: 2m\n")
	write("selftest", "timeout: 1m\ndefault: false\n")
	write("suite", "") // a library, no manifest
	ss, err := Suites(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := Names(ss, false); !reflect.DeepEqual(got, []string{"selftest", "smoke"}) {
		t.Errorf("all = %v", got)
	}
	if got := Names(ss, true); !reflect.DeepEqual(got, []string{"smoke"}) {
		t.Errorf("default = %v", got)
	}
	if ss[1].Timeout != 2*time.Minute {
		t.Errorf("timeout %v", ss[1].Timeout)
	}
	for body, want := range map[string]string{
		"timeout: 1m\nretries: 3\n": `suite.yaml:2:1: unknown key "retries"`,
		"description: x\n":          "timeout must be set",
		"timeout: soon\n":           "cannot unmarshal",
	} {
		write("bad", body)
		_, err := Suites(dir)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), filepath.Join("bad", "suite.yaml")) {
			t.Errorf("%q: err %v, want %q with the file name", body, err, want)
		}
	}
}

// TestRepoSuites checks the manifests committed in this repository.
func TestRepoSuites(t *testing.T) {
	ss, err := Suites("../../suites")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range ss {
		have[s.Name] = s.InAll()
	}
	if !have["smoke"] {
		t.Errorf("smoke must be a default suite: %v", have)
	}
	if v, ok := have["selftest"]; !ok || v {
		t.Errorf("selftest must exist and stay out of all: %v", have)
	}
}

// TestTestsFromTheRealSuites lists the repository's own suites: the lists
// come from the binaries, and a second call is served from the cache.
func TestTestsFromTheRealSuites(t *testing.T) {
	root, _ := filepath.Abs("../..")
	cacheDir := t.TempDir()
	m, err := Tests(context.Background(), root, "github.com/kharness/kharness", cacheDir, []string{"selftest", "smoke"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m["selftest"], "panic") || !slices.Contains(m["smoke"], "highmem") {
		t.Errorf("lists %v", m)
	}
	files, _ := filepath.Glob(filepath.Join(cacheDir, "catalog", "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache entries %v", files)
	}
	os.WriteFile(files[0], []byte(`{"selftest":["cached"],"smoke":["cached"]}`), 0o644)
	m2, err := Tests(context.Background(), root, "github.com/kharness/kharness", cacheDir, []string{"selftest", "smoke"})
	if err != nil || m2["smoke"][0] != "cached" {
		t.Errorf("second call not served from the cache: %v %v", m2, err)
	}
}
