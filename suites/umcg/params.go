package main

import (
	"encoding/json"
	"fmt"
	"time"
)

// childArg in argv[1] makes the suite binary run one scenario as a child
// (argv[2] is its params as JSON) instead of the suite.
const childArg = "umcg-scenario"

// execProbeArg in argv[1] is what a worker execs: the new image checks
// that it is no UMCG task any more and exits with execProbeOK.
const execProbeArg = "umcg-exec-probe"

// params are everything a scenario child needs.
type params struct {
	Scenario string        `json:"scenario"`
	Dur      time.Duration `json:"dur"`  // how long the stress part runs
	Seed     int64         `json:"seed"` // base of every worker's random stream
	Servers  int           `json:"servers"`
	Workers  int           `json:"workers"` // per server
	Solo     bool          `json:"solo"`    // one more server with a single worker (lost wakeups hang it)
	Tick     time.Duration `json:"tick"`    // server umcg_wait timeout while a worker runs
	Preempt  bool          `json:"preempt"`
	Signals  bool          `json:"signals"` // a signaller storms servers and workers
	Ops      string        `json:"ops"`     // the worker op mix (see ops.go)
	Forks    bool          `json:"forks"`   // a non-UMCG thread forks while workers block
	Stall    time.Duration `json:"stall"`   // watchdog: no progress for this long is a hang
}

func (p params) encode() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // a plain struct: cannot fail
	}
	return string(b)
}

func decodeParams(s string) (params, error) {
	var p params
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return p, fmt.Errorf("scenario params %q: %w", s, err)
	}
	return p, nil
}

// threads is how many UMCG threads the scenario runs at most.
func (p params) threads() int {
	n := p.Servers * (1 + p.Workers)
	if p.Solo {
		n += 2
	}
	return n
}
