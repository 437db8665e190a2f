package run

import (
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/boot"
	"github.com/kharness/kharness/harness/catalog"
	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/target"
)

func TestBootSpec(t *testing.T) {
	cfg, err := config.Parse("/p/kharness.yaml", []byte("duration: 20s\ncmdline: [loglevel=7]\n"), config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Cfg: cfg, Suites: map[string]catalog.Suite{"smoke": {Name: "smoke", Timeout: time.Minute}}}
	tg, _ := target.Lookup("i386-highmem")
	k := &Kernel{Image: "/k", Config: []byte("CONFIG_PREEMPT=y\n"), ConfigSHA: strings.Repeat("a", 64)}
	c := config.MatrixCell{ID: "x", Target: tg.Name, Suites: []string{"smoke", "selftest:panic"}}
	tests := []struct {
		accel     boot.Accel
		boot      time.Duration
		smokeWant string
	}{
		{boot.KVM, 30 * time.Second, "smoke@2m0s"},   // 1m × (20s/10s)
		{boot.TCG, 150 * time.Second, "smoke@10m0s"}, // and × tcg_scale 5
	}
	for _, tc := range tests {
		s := p.BootSpec(c, tg, k, "/i", tc.accel, "/d")
		args := strings.Join(s.Cmdline, " ")
		for _, w := range []string{"kharness.suites=" + tc.smokeWant + ",selftest:panic@", "kharness.preempt=full",
			"kharness.config_sha256=aaaaaaaaaaaaaaaa", "kharness.cpus=2", "kharness.duration=20s", "loglevel=7"} {
			if !strings.Contains(args, w) {
				t.Errorf("%s: cmdline lacks %q: %s", tc.accel, w, args)
			}
		}
		if s.Boot != tc.boot {
			t.Errorf("%s: boot deadline %s, want %s", tc.accel, s.Boot, tc.boot)
		}
		if s.Overall <= s.Boot {
			t.Errorf("%s: overall %s not above boot %s", tc.accel, s.Overall, s.Boot)
		}
	}
}
