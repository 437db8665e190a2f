package initramfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKeyTracksInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module x\n")
	write("suites/smoke/main.go", "package main\n")
	base := Request{ModuleDir: dir, GOARCH: "386", Suites: []string{"a", "smoke"}}
	k0, err := Key(base)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func() Request
		same   bool
	}{
		{"unchanged", func() Request { return base }, true},
		{"suite order does not matter", func() Request {
			r := base
			r.Suites = []string{"smoke", "a"}
			return r
		}, true},
		{"test file ignored", func() Request { write("suites/smoke/main_test.go", "package main\n"); return base }, true},
		{"testdata ignored", func() Request { write("suites/smoke/testdata/x.go", "x"); return base }, true},
		{"other arch", func() Request { r := base; r.GOARCH = "amd64"; return r }, false},
		{"more suites", func() Request { r := base; r.Suites = []string{"a", "smoke", "x"}; return r }, false},
		{"source edit", func() Request { write("suites/smoke/main.go", "package main\n// edit\n"); return base }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Key(tc.change())
			if err != nil {
				t.Fatal(err)
			}
			if (k == k0) != tc.same {
				t.Errorf("key changed=%v, want changed=%v", k != k0, !tc.same)
			}
		})
	}
}
