package runschema

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/splat"
)

// TestRealRecords checks results.json files captured from real runs
// (testdata/*.json; cmd/kharness and harness/history use them too).
func TestRealRecords(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/runs/*/results.json")
	if len(files) == 0 {
		t.Fatal("no captured results.json under testdata/runs")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// full is a run with every field set, as results marshals it.
func full() *results.Run {
	sha := strings.Repeat("ab", 32)
	return &results.Run{Schema: results.Schema, ID: "20261203-020000-123", PID: 123, Host: "h", Config: "nightly.yaml",
		Source: "debian:linux-source-6.12", Started: time.Now().UTC(), Finished: time.Now().UTC(), Outcome: outcome.TestFail,
		ExitCode: 1, Reason: "r", Shard: &results.Shard{Index: 1, Count: 2, Matrix: []string{"a.x86_64"}},
		Cells: []*results.Cell{{ID: "a.x86_64", Name: "a", Target: "x86_64", PatchSets: []string{"cow"}, Suites: []string{"uffd"},
			Expect:     &outcome.Expectation{Fail: []string{"uffd:fdinfo"}, Outcome: []outcome.Outcome{outcome.TestFail}, Crash: "c", Reason: "r"},
			PatchStack: sha, SourceID: "s", Outcome: outcome.Mismatch, Raw: outcome.TestFail, Stage: "tests", Reason: "r",
			KernelVersion: "6.12.118", KernelKey: sha, KernelCached: true, BuildSeconds: 1, BuildWarnings: []string{"w"},
			Initramfs: "i", InitrdCached: true, Accel: "tcg", AccelReason: "r", BootSeconds: 2, FirstEventSeconds: 1,
			GuestInfo: map[string]string{"k": "v"}, Crash: &splat.Report{Kind: "oops", Title: "t", Text: "x", Line: 1},
			Crashes: []splat.Report{{Kind: "oops", Title: "t"}}, BlameSuite: "uffd", BlameTest: "fdinfo", Watchdog: true,
			Reproducer: "q", Rerun: "k", Dir: "cells/a.x86_64", KconfigSHA: sha, Notes: []string{"n"},
			SuiteRuns: []*results.SuiteRun{{Name: "uffd", Declared: []string{"fdinfo"}, Started: true, Ended: true, Result: "fail", Message: "m", DurationMS: 5}},
			Tests: []*results.Test{{Suite: "uffd", Name: "fdinfo", Outcome: outcome.TestFail, Message: "m", DurationMS: 3,
				Metrics: map[string]float64{"faults": 2}, Kmsg: []string{"k"}, Crash: "c", HostBlamed: true, Iterations: 4,
				Retry: &results.Retry{Outcome: outcome.TestFail, Message: "m", Crash: "c", DurationMS: 3, Dir: "cells/a.x86_64/retry"}}}}}}
}

func TestSynthetic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(m map[string]any)
		valid bool
	}{
		{"full", func(map[string]any) {}, true},
		{"empty run", func(m map[string]any) { m["cells"] = []any{}; delete(m, "shard") }, true},
		{"unknown outcome", func(m map[string]any) { m["outcome"] = "green" }, false},
		{"unknown field", func(m map[string]any) { m["colour"] = "red" }, false},
		{"other schema", func(m map[string]any) { m["schema"] = "kharness.run/v2" }, false},
		{"missing id", func(m map[string]any) { delete(m, "id") }, false},
		{"test without name", func(m map[string]any) {
			delete(cell(m)["tests"].([]any)[0].(map[string]any), "name")
		}, false},
		{"cell outcome as test outcome", func(m map[string]any) {
			cell(m)["tests"].([]any)[0].(map[string]any)["outcome"] = "xfail"
		}, false},
		{"short patch stack", func(m map[string]any) { cell(m)["patch_stack"] = "abc" }, false},
		{"bad date", func(m map[string]any) { m["started"] = "yesterday" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(full())
			var m map[string]any
			json.Unmarshal(b, &m)
			tc.edit(m)
			b, _ = json.Marshal(m)
			err := Validate(b)
			if (err == nil) != tc.valid {
				t.Errorf("valid=%v, err=%v", tc.valid, err)
			}
		})
	}
}

func cell(m map[string]any) map[string]any { return m["cells"].([]any)[0].(map[string]any) }

// TestSchemaCoversTypes keeps the schema in step with the Go types: every
// JSON field of results.Run and what it holds has a property in the
// schema, and every property a field; the outcome enum is outcome.All().
func TestSchemaCoversTypes(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal(JSON, &s); err != nil {
		t.Fatal(err)
	}
	defs := s["$defs"].(map[string]any)
	props := func(def map[string]any) []string {
		var out []string
		for k := range def["properties"].(map[string]any) {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	for _, tc := range []struct {
		def map[string]any
		typ reflect.Type
	}{
		{s, reflect.TypeOf(results.Run{})},
		{defs["cell"].(map[string]any), reflect.TypeOf(results.Cell{})},
		{defs["test"].(map[string]any), reflect.TypeOf(results.Test{})},
		{defs["suite_run"].(map[string]any), reflect.TypeOf(results.SuiteRun{})},
		{defs["retry"].(map[string]any), reflect.TypeOf(results.Retry{})},
		{defs["shard"].(map[string]any), reflect.TypeOf(results.Shard{})},
		{defs["expect"].(map[string]any), reflect.TypeOf(outcome.Expectation{})},
		{defs["splat"].(map[string]any), reflect.TypeOf(splat.Report{})},
	} {
		var fields []string
		for i := 0; i < tc.typ.NumField(); i++ {
			f := tc.typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			fields = append(fields, name)
		}
		sort.Strings(fields)
		if got := props(tc.def); !reflect.DeepEqual(got, fields) {
			t.Errorf("%s: schema properties %v, Go fields %v", tc.typ, got, fields)
		}
	}
	var enum []string
	for _, v := range defs["outcome"].(map[string]any)["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	var all []string
	for _, o := range outcome.All() {
		all = append(all, string(o))
	}
	sort.Strings(enum)
	sort.Strings(all)
	if !reflect.DeepEqual(enum, all) {
		t.Errorf("outcome enum %v, outcome.All() %v", enum, all)
	}
}
