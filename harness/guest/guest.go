// Package guest is the contract between the host and the guest agent: the
// kharness.* kernel command-line parameters. The host encodes them, the
// agent and the suites parse them, and no key is spelled anywhere else, so
// a parameter added on one side cannot be forgotten on the other.
package guest

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// prefix starts every kharness parameter on the kernel command line.
const prefix = "kharness."

// The parameter keys (without the prefix).
const (
	keyMode      = "mode"
	keySuites    = "suites"
	keyDuration  = "duration"
	keyIntensity = "intensity"
	keyCPUs      = "cpus"
	keyPreempt   = "preempt"
	keyConfigSHA = "config_sha256"
	keyPatchSets = "patchsets"
	keyEvents    = "events"
	keyHeartbeat = "heartbeat"
	keyTestLimit = "test_deadline"
	keyScale     = "scale"
)

// Modes of the agent.
const (
	ModeRun   = "run"   // run the suites, stream events, power off
	ModeShell = "shell" // a shell on the console (kharness boot)
)

// Suite is one suite to run: its name, an optional test regexp and the
// deadline the agent enforces in the guest.
type Suite struct {
	Name     string
	Tests    string // regexp over test names; "" runs them all
	Deadline time.Duration
}

// Spec is "name[:regexp]", as written in kharness.yaml and on the
// command line.
func (s Suite) Spec() string {
	if s.Tests == "" {
		return s.Name
	}
	return s.Name + ":" + s.Tests
}

// ParseSuiteSpec splits "name[:regexp]".
func ParseSuiteSpec(spec string) Suite {
	name, tests, _ := strings.Cut(spec, ":")
	return Suite{Name: name, Tests: tests}
}

// BootArgs is everything the host tells the guest.
type BootArgs struct {
	Mode      string
	Suites    []Suite
	Duration  time.Duration // each stress test's running time
	Intensity int
	CPUs      int    // CPUs the guest must see
	Preempt   string // preemption model the host configured (PreemptModel)
	ConfigSHA string // prefix of the sha256 of the .config the host built
	// PatchSets are the patch sets applied to the kernel, in order: a
	// suite whose patch set is applied must fail, not skip, when the
	// feature it adds is missing.
	PatchSets []string
	// EventPort is the guest device the agent writes events to.
	EventPort string
	// Heartbeat is how often a running test reports progress.
	Heartbeat time.Duration
	// TestDeadline bounds one test: the agent stops a suite whose test
	// runs longer, so a hang is caught in minutes, not at the suite's end.
	TestDeadline time.Duration
	// Scale is the accelerator's slowness (1 under KVM, timeouts.tcg_scale
	// under TCG): the suites' own watchdogs multiply their limits by it.
	Scale float64
}

// Defaults the agent falls back to when a parameter is absent (a
// hand-made command line).
const (
	DefaultDuration  = 10 * time.Second
	DefaultDeadline  = 5 * time.Minute
	DefaultEventPort = "ttyS1"
	DefaultHeartbeat = 2 * time.Second
)

// Encode returns the kernel command-line words. Values are escaped so
// that regexps with spaces, commas or '@' survive the trip.
func (b BootArgs) Encode() []string {
	var out []string
	add := func(k, v string) {
		if v != "" {
			out = append(out, prefix+k+"="+v)
		}
	}
	add(keyMode, b.Mode)
	var ss []string
	for _, s := range b.Suites {
		e := esc(s.Name)
		if s.Tests != "" {
			e += ":" + esc(s.Tests)
		}
		if s.Deadline > 0 {
			e += "@" + s.Deadline.String()
		}
		ss = append(ss, e)
	}
	add(keySuites, strings.Join(ss, ","))
	if b.Duration > 0 {
		add(keyDuration, b.Duration.String())
	}
	if b.Intensity > 0 {
		add(keyIntensity, strconv.Itoa(b.Intensity))
	}
	if b.CPUs > 0 {
		add(keyCPUs, strconv.Itoa(b.CPUs))
	}
	add(keyPreempt, b.Preempt)
	add(keyConfigSHA, b.ConfigSHA)
	var ps []string
	for _, p := range b.PatchSets {
		ps = append(ps, esc(p))
	}
	add(keyPatchSets, strings.Join(ps, ","))
	add(keyEvents, b.EventPort)
	if b.Heartbeat > 0 {
		add(keyHeartbeat, b.Heartbeat.String())
	}
	if b.TestDeadline > 0 {
		add(keyTestLimit, b.TestDeadline.String())
	}
	if b.Scale > 0 {
		add(keyScale, strconv.FormatFloat(b.Scale, 'g', -1, 64))
	}
	return out
}

func esc(s string) string { return url.QueryEscape(s) }

// Parse reads the kharness parameters from a kernel command line. Other
// words are ignored; a malformed kharness value is an error naming it.
func Parse(cmdline string) (BootArgs, error) {
	b := BootArgs{Mode: ModeRun, Duration: DefaultDuration, Intensity: 1, EventPort: DefaultEventPort,
		Heartbeat: DefaultHeartbeat, Scale: 1}
	var errs []string
	bad := func(k, v string, err error) { errs = append(errs, fmt.Sprintf("%s%s=%s: %v", prefix, k, v, err)) }
	for _, w := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(w, "=")
		if !ok || !strings.HasPrefix(k, prefix) {
			continue
		}
		k = strings.TrimPrefix(k, prefix)
		switch k {
		case keyMode:
			if v != ModeRun && v != ModeShell {
				bad(k, v, fmt.Errorf("want %s or %s", ModeRun, ModeShell))
			}
			b.Mode = v
		case keySuites:
			for _, e := range strings.Split(v, ",") {
				if e == "" {
					continue
				}
				s, err := parseSuite(e)
				if err != nil {
					bad(k, e, err)
					continue
				}
				b.Suites = append(b.Suites, s)
			}
		case keyDuration, keyHeartbeat, keyTestLimit:
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				bad(k, v, fmt.Errorf("not a positive duration"))
				continue
			}
			switch k {
			case keyDuration:
				b.Duration = d
			case keyHeartbeat:
				b.Heartbeat = d
			default:
				b.TestDeadline = d
			}
		case keyScale:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 1 {
				bad(k, v, fmt.Errorf("not a number >= 1"))
				continue
			}
			b.Scale = f
		case keyIntensity, keyCPUs:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				bad(k, v, fmt.Errorf("not a positive integer"))
				continue
			}
			if k == keyIntensity {
				b.Intensity = n
			} else {
				b.CPUs = n
			}
		case keyPreempt:
			b.Preempt = v
		case keyConfigSHA:
			b.ConfigSHA = v
		case keyPatchSets:
			for _, p := range strings.Split(v, ",") {
				if u, err := url.QueryUnescape(p); err == nil && u != "" {
					b.PatchSets = append(b.PatchSets, u)
				}
			}
		case keyEvents:
			b.EventPort = v
		default:
			errs = append(errs, fmt.Sprintf("unknown parameter %s%s", prefix, k))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return b, fmt.Errorf("kernel command line: %s", strings.Join(errs, "; "))
	}
	return b, nil
}

func parseSuite(e string) (Suite, error) {
	var s Suite
	if i := strings.LastIndex(e, "@"); i >= 0 {
		d, err := time.ParseDuration(e[i+1:])
		if err != nil || d <= 0 {
			return s, fmt.Errorf("bad deadline %q", e[i+1:])
		}
		s.Deadline, e = d, e[:i]
	}
	name, tests, _ := strings.Cut(e, ":")
	var err error
	if s.Name, err = url.QueryUnescape(name); err != nil {
		return s, err
	}
	if s.Tests, err = url.QueryUnescape(tests); err != nil {
		return s, err
	}
	if s.Name == "" {
		return s, fmt.Errorf("empty suite name")
	}
	return s, nil
}

// Read parses /proc/cmdline (in the guest).
func Read() (BootArgs, error) {
	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return Parse("")
	}
	return Parse(string(data))
}

// Applied reports whether patch set name is applied to the running kernel.
func (b BootArgs) Applied(name string) bool {
	for _, p := range b.PatchSets {
		if p == name {
			return true
		}
	}
	return false
}

// PreemptModel names a kernel configuration's preemption model the way
// both sides compare it: none, voluntary, full or rt.
func PreemptModel(cfg map[string]string) string {
	switch {
	case cfg["CONFIG_PREEMPT_RT"] == "y":
		return "rt"
	case cfg["CONFIG_PREEMPT"] == "y":
		return "full"
	case cfg["CONFIG_PREEMPT_VOLUNTARY"] == "y":
		return "voluntary"
	}
	return "none"
}

// KselftestDir is where a kselftest suite's programs and plan are in the
// guest's file system.
func KselftestDir(suite string) string { return "/kselftest/" + suite }

// KselftestPlanFile is the plan's name in KselftestDir.
const KselftestPlanFile = "plan.json"

// KselftestPlan tells the agent how to run a kselftest suite's programs:
// arguments already expanded, timeouts already scaled for the machine.
type KselftestPlan struct {
	Programs []KselftestProgram `json:"programs"`
	// Sysctl is set before the programs run and restored after
	// ("vm.nr_hugepages": "16"): what the tests need of the machine.
	Sysctl map[string]string `json:"sysctl,omitempty"`
}

// KselftestProgram is one program of the plan.
type KselftestProgram struct {
	Name    string        `json:"name"`
	Args    []string      `json:"args,omitempty"`
	Timeout time.Duration `json:"timeout"`
	// Format is how it reports: "ktap", or "uffd-unit" (6.12's
	// uffd-unit-tests: "Testing X... done|skipped [..]|failed [..]").
	Format string `json:"format"`
}
