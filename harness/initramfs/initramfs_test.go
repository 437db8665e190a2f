package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestKeyTracksInputs builds a throwaway module shaped like this one and
// checks which edits change the image key.
func TestKeyTracksInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module "+Module+"\n\ngo 1.22\n")
	write("go.sum", "")
	write("initramfs/agent/main.go", "package main\n\nimport _ \""+Module+"/lib\"\n\nfunc main() {}\n")
	write("lib/lib.go", "package lib\n")
	write("lib/lib_386.go", "package lib\n\nconst X = 1\n")
	write("suites/a/main.go", "package main\n\nfunc main() {}\n")
	write("suites/smoke/main.go", "package main\n\nfunc main() {}\n")
	write("harness/host/host.go", "package host\n")
	ctx := context.Background()
	base := Request{ModuleDir: dir, GOARCH: "386", Suites: []string{"a", "smoke"}}
	k0, err := Key(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func() Request
		same   bool
	}{
		{"unchanged", func() Request { return base }, true},
		{"suite order does not matter", func() Request { r := base; r.Suites = []string{"smoke", "a"}; return r }, true},
		{"host code is not in the image", func() Request { write("harness/host/host.go", "package host\n// edit\n"); return base }, true},
		{"test file ignored", func() Request { write("suites/smoke/main_test.go", "package main\n"); return base }, true},
		{"other arch", func() Request { r := base; r.GOARCH = "amd64"; return r }, false},
		{"more suites", func() Request { r := base; r.Suites = []string{"a"}; return r }, false},
		{"suite edit", func() Request {
			write("suites/smoke/main.go", "package main\n\nfunc main() {}\n// edit\n")
			return base
		}, false},
		{"library edit for this arch", func() Request { write("lib/lib_386.go", "package lib\n\nconst X = 2\n"); return base }, false},
		{"go.sum edit", func() Request { write("go.sum", "x v1 h1:x\n"); return base }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.change()
			k, err := Key(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if (k == k0) != tc.same {
				t.Errorf("key changed=%v, want changed=%v", k != k0, !tc.same)
			}
			k0 = k
		})
	}
}
