package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIErrors covers the paths that end before any stage runs: each
// must exit with its documented code and say what and where.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	root, _ := filepath.Abs("../..")
	dirs := "dirs:\n  patches: " + root + "/patches\n  kconfigs: " + root + "/kconfigs\n  suites: " + root + "/suites\n  module: " + root + "\n"
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no command", nil, 2, []string{"usage: kharness"}},
		{"unknown command", []string{"frob"}, 2, []string{`unknown command "frob"`}},
		{"help lists exit codes", []string{"help"}, 0, []string{"kernel-crash", "patch-failed", "130"}},
		{"missing config", []string{"run", "-c", filepath.Join(dir, "nope.yaml")}, 2, []string{"nope.yaml", "no such file"}},
		{"unknown key", []string{"run", "-c", write("a.yaml", dirs+"sorce: x\n")}, 2, []string{"a.yaml:6:1: unknown key \"sorce\""}},
		{"all validation errors at once", []string{"run", "-c", write("b.yaml", dirs+"targets: [arm64]\nsuites: [nosuch]\n")}, 2,
			[]string{`b.yaml:6:11: unknown target "arm64"`, `b.yaml:7:10: unknown suite "nosuch"`}},
		{"flag names unknown suite", []string{"build", "-c", write("c.yaml", dirs), "--suite", "ghost"}, 2, []string{`unknown suite "ghost"`}},
		{"stray argument", []string{"run", "-c", write("d.yaml", dirs), "extra"}, 2, []string{"unexpected arguments"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := realMain(tc.args, &out, &errb)
			all := out.String() + errb.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}
