package shard

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/config"
)

func cells(n int) []config.MatrixCell {
	var out []config.MatrixCell
	for i := 0; i < n; i++ {
		t := "x86_64"
		if i%2 == 0 {
			t = "i386-highmem"
		}
		ps := []string{"all", fmt.Sprintf("m%d", i/2)}
		out = append(out, config.MatrixCell{ID: fmt.Sprintf("c%d.%s", i/2, t), Name: fmt.Sprintf("c%d", i/2), Target: t, PatchSets: ps, Suites: []string{"s"}})
	}
	return out
}

func oneTest(config.MatrixCell) []string { return []string{"s/t"} }

func TestPack(t *testing.T) {
	cs := cells(6)
	d := Durations{Boot: map[string]float64{}, Test: map[string]float64{
		"c0.i386-highmem s/t": 500, "c0.x86_64 s/t": 400, "c1.i386-highmem s/t": 300, "c1.x86_64 s/t": 200, "c2.i386-highmem s/t": 100,
	}}
	for _, c := range cs {
		d.Boot[c.ID] = 10
	}
	p, err := Make("n.yaml", cs, 3, d, oneTest, time.Minute, DefaultDefaults)
	if err != nil {
		t.Fatal(err)
	}
	// c2.x86_64 is new: 10 + 60 + 30 = 100... its boot is known, its test not.
	if e := p.Estimates["c2.x86_64"]; e.Seconds != 100 || e.From != "default" {
		t.Errorf("estimate of a new test: %+v", e)
	}
	var got [][]string
	for _, s := range p.Shards {
		got = append(got, s.Cells)
	}
	// LPT: 510→1, 410→2, 310→3, 210→3 (310<410), 110→2 (410<510, 410<520), 110 (c2.x86_64, id order after c2.i386)→1.
	want := [][]string{{"c0.i386-highmem", "c2.x86_64"}, {"c0.x86_64", "c2.i386-highmem"}, {"c1.i386-highmem", "c1.x86_64"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("shards %v, want %v", got, want)
	}
	if len(p.Builds) != 6 {
		t.Errorf("%d builds", len(p.Builds))
	}
	// Deterministic: the same inputs, the same plan.
	q, _ := Make("n.yaml", cs, 3, d, oneTest, time.Minute, DefaultDefaults)
	if !reflect.DeepEqual(p, q) {
		t.Error("two plans of the same inputs differ")
	}
}

func TestLimits(t *testing.T) {
	cs := cells(600)
	p, err := Make("n.yaml", cs, 1000, Durations{}, oneTest, time.Second, DefaultDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Shards) != MaxJobs || len(p.BuildMatrix().Include) != MaxJobs || len(p.TestMatrix().Include) != MaxJobs {
		t.Errorf("shards %d builds %d: over GitHub's limit", len(p.Shards), len(p.Builds))
	}
	n := 0
	for _, s := range p.Shards {
		n += len(s.Cells)
	}
	if n != 600 {
		t.Errorf("%d cells in shards, want 600", n)
	}
	p, _ = Make("n.yaml", cells(3), 8, Durations{}, oneTest, time.Second, DefaultDefaults)
	if len(p.Shards) != 3 {
		t.Errorf("8 shards of 3 cells: %d shards", len(p.Shards))
	}
	// Two cells of one kernel: one build.
	two := []config.MatrixCell{{ID: "a.x86_64", Target: "x86_64", PatchSets: []string{"cow"}}, {ID: "b.x86_64", Target: "x86_64", PatchSets: []string{"cow"}}}
	p, _ = Make("n.yaml", two, 2, Durations{}, oneTest, time.Second, DefaultDefaults)
	if len(p.Builds) != 1 || !reflect.DeepEqual(p.Builds[0].Cells, []string{"a.x86_64", "b.x86_64"}) {
		t.Errorf("builds %+v", p.Builds)
	}
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		s    string
		i, n int
		ok   bool
	}{{"1/2", 1, 2, true}, {"2/2", 2, 2, true}, {"3/2", 0, 0, false}, {"0/2", 0, 0, false}, {"1/2x", 0, 0, false}, {"a", 0, 0, false}} {
		i, n, err := ParseSpec(tc.s)
		if (err == nil) != tc.ok || i != tc.i || n != tc.n {
			t.Errorf("ParseSpec(%q) = %d %d %v", tc.s, i, n, err)
		}
	}
}
