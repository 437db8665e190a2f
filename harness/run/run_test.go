package run

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/catalog"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/guest"
	"github.com/kharness/kharness/harness/target"
)

// TestBootSpec: what the guest is told comes from the cell, the kernel and
// the planned deadlines, and survives the kernel command line.
func TestBootSpec(t *testing.T) {
	cfg, err := config.Parse("/p/kharness.yaml", []byte("duration: 20s\ncmdline: [loglevel=7]\n"), config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Cfg: cfg, Suites: map[string]catalog.Suite{"smoke": {Name: "smoke", Timeout: time.Minute}},
		Catalog: config.Catalog{Tests: map[string][]string{"smoke": {"a", "b"}, "selftest": {"panic", "pass"}}}}
	tg, _ := target.Lookup("i386-highmem")
	k := &Kernel{Image: "/k", Config: []byte("CONFIG_PREEMPT=y\n"), ConfigSHA: strings.Repeat("a", 64)}
	c := config.MatrixCell{ID: "x", Target: tg.Name, Suites: []string{"smoke", "selftest:panic"}, PatchSets: []string{"cow", "umcg"}}
	tests := []struct {
		accel boot.Accel
		boot  time.Duration
		smoke time.Duration
		scale float64
	}{
		{boot.KVM, 30 * time.Second, time.Minute + 2*(20*time.Second+30*time.Second), 1},
		{boot.TCG, 150 * time.Second, 5*time.Minute + 2*(20*time.Second+150*time.Second), 5},
	}
	for _, tc := range tests {
		s := p.BootSpec(c, tg, k, "/i", tc.accel, "/d")
		args := strings.Join(boot.Args(s, "stdio", "null"), " ")
		if !strings.Contains(args, "loglevel=7") {
			t.Errorf("%s: the config's cmdline is lost: %s", tc.accel, args)
		}
		i := strings.Index(args, "-append ")
		g, err := guest.Parse(args[i+len("-append "):])
		if err != nil {
			t.Fatal(err)
		}
		if g.Preempt != "full" || g.ConfigSHA != strings.Repeat("a", 16) || g.CPUs != 2 || g.Duration != 20*time.Second ||
			g.Scale != tc.scale || g.EventPort != "ttyS1" || !g.Applied("umcg") {
			t.Errorf("%s: guest args %+v", tc.accel, g)
		}
		if len(g.Suites) != 2 || g.Suites[0].Deadline != tc.smoke || g.Suites[1].Tests != "panic" {
			t.Errorf("%s: suites %+v, want smoke's deadline %s", tc.accel, g.Suites, tc.smoke)
		}
		if s.Boot != tc.boot {
			t.Errorf("%s: boot deadline %s, want %s", tc.accel, s.Boot, tc.boot)
		}
		if s.Overall <= s.Boot {
			t.Errorf("%s: overall %s not above boot %s", tc.accel, s.Overall, s.Boot)
		}
	}
}

func TestPrintable(t *testing.T) {
	in := "uffd/wake: \x1b[2J\x1b]0;pwned\x07fail\r\n\tdone\x9b\u009b[31m"
	if got, want := Printable(in), "uffd/wake: ^[2J^]0;pwnedfail\n\tdone[31m"; got != want {
		t.Errorf("Printable = %q, want %q", got, want)
	}
}

// TestRepositoryFragmentsAgree: the repository's own fragments merge
// without a same-level conflict for every target and patch set.
func TestRepositoryFragmentsAgree(t *testing.T) {
	root, _ := filepath.Abs("../..")
	cfg, err := config.Parse(filepath.Join(root, "kharness.yaml"), nil, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	ss, err := catalog.Suites(filepath.Join(root, "suites"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Cfg: cfg, Suites: map[string]catalog.Suite{}}
	for _, s := range ss {
		p.Suites[s.Name] = s
	}
	for _, tg := range target.Names() {
		frags, err := p.fragments(config.MatrixCell{Target: tg, PatchSets: []string{"cow", "kmap-local", "umcg"}})
		if err != nil {
			t.Errorf("%s: %v", tg, err)
			continue
		}
		if len(frags) < 3 {
			t.Errorf("%s: only %d fragments found", tg, len(frags))
		}
	}
}
