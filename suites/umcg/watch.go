package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kharness/kharness/suites/internal/umcg"
)

// watch is the watchdog, run by the coordinator between its other
// chores. A hang is:
//   - a running or registering worker whose progress counter stood still
//     for the stall limit (it names the worker, its state and its
//     thread's kernel state), or
//   - a server asleep in umcg_wait (state exactly RUNNABLE: the kernel
//     cleared COND_WAIT) while its runnable list is not empty, seen over
//     300 ms without the server looping: the lost wakeup of race R2.
//
// errHang marks a watchdog verdict: no progress.
var errHang = errors.New("hang")

func (sc *sched) watch(now time.Time) error {
	for _, k := range sc.workers() {
		ph := k.phase.Load()
		if ph != phRunning && ph != phRegistering {
			k.mark = progressMark{}
			continue
		}
		v := k.progress.Load() + 1<<40*uint64(ph)
		if k.mark.at.IsZero() || k.mark.v != v {
			k.mark = progressMark{v: v, at: now}
			continue
		}
		if now.Sub(k.mark.at) > sc.p.Stall {
			return fmt.Errorf("%w: worker %d (server %d) made no progress for %s, phase %s, last op %s: %s\n%s",
				errHang, k.id, k.srv.s.ID, now.Sub(k.mark.at).Round(time.Millisecond), phaseNames[ph], opName(int(k.lastOp.Load())),
				k.w.T.Snapshot(), sc.dump())
		}
	}
	for _, c := range sc.srvs {
		s := c.s
		if e := c.err.Load(); e != nil {
			return fmt.Errorf("server %d: %v\n%s", s.ID, *e, sc.dump())
		}
		if s.Exited() && s.Live() > 0 {
			return fmt.Errorf("server %d left with %d workers still to run\n%s", s.ID, s.Live(), sc.dump())
		}
		if s.Exited() || !s.Registered() {
			continue
		}
		loops := s.Stats.Loops.Load()
		asleepWithWork := s.T.State() == umcg.StateRunnable && s.T.RunnableWorkers() != 0
		switch {
		case !asleepWithWork || loops != c.loops:
			c.r2 = time.Time{}
		case c.r2.IsZero():
			c.r2 = now
		case now.Sub(c.r2) > 300*time.Millisecond:
			return fmt.Errorf("lost wakeup (R2): server %d asleep in umcg_wait (state RUNNABLE) for %s with workers on its runnable list\n%s",
				s.ID, now.Sub(c.r2).Round(time.Millisecond), sc.dump())
		}
		c.loops = loops
	}
	return nil
}

// dump describes every server and worker: what their structs say, what
// the library and the workers counted, and where their threads are.
func (sc *sched) dump() string {
	var b strings.Builder
	for _, c := range sc.srvs {
		s := c.s
		st := &s.Stats
		list, lerr := sc.a.ListSlots(s.T.RunnableWorkers())
		var names []string
		for _, i := range list {
			if w := s.Worker(i); w != nil {
				names = append(names, fmt.Sprint(w.ID))
			} else {
				names = append(names, fmt.Sprintf("slot%d?", i))
			}
		}
		ls := "[" + strings.Join(names, " ") + "]"
		if lerr != nil {
			ls += " " + lerr.Error()
		}
		fmt.Fprintf(&b, "  server %d tid %d: %s; runnable list %s; loops %d waits %d switches %d requeues %d eagain %d eintr %d timeouts %d preempts %d queue %d current %d live %d exited %v; %s\n",
			s.ID, s.TID(), s.T.Snapshot(), ls, st.Loops.Load(), st.Waits.Load(), st.Switches.Load(), st.Requeues.Load(),
			st.EAGAIN.Load(), st.EINTR.Load(), st.Timeouts.Load(), st.Preempts.Load(), st.QueueLen.Load(), st.Current.Load(),
			s.Live(), s.Exited(), threadInfo(sc.pid, s.TID()))
		// What the server saw go wrong often explains the hang.
		vs, total := s.Violations()
		for i, v := range vs {
			if i == 4 {
				fmt.Fprintf(&b, "    ... %d violations in all\n", total)
				break
			}
			fmt.Fprintf(&b, "    violation: %s\n", v)
		}
	}
	for _, k := range sc.workers() {
		ph := k.phase.Load()
		fmt.Fprintf(&b, "  worker %d (server %d) tid %d phase %s progress %d last op %s departed %v: %s",
			k.id, k.srv.s.ID, k.w.TID(), phaseNames[ph], k.progress.Load(), opName(int(k.lastOp.Load())), k.w.Departed(), k.w.T.Snapshot())
		if ph == phRunning || ph == phRegistering {
			fmt.Fprintf(&b, "; %s", threadInfo(sc.pid, k.w.TID()))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// check reports everything the run recorded: server violations, worker
// invariant breaks and fatal errors, and the pin balance now that every
// task has left; and the run's metrics.
func (sc *sched) check() {
	r := sc.r
	for _, c := range sc.srvs {
		if e := c.err.Load(); e != nil {
			r.Errorf("server %d: %v", c.s.ID, *e)
		}
		vs, total := c.s.Violations()
		for _, v := range vs {
			r.Errorf("server %d: %s", c.s.ID, v)
		}
		if int(total) > len(vs) {
			r.Errorf("server %d: %d more violations", c.s.ID, int(total)-len(vs))
		}
	}
	var ops [nOps]uint64
	var blocks, progress, yieldEAGAIN, rejoins, forks uint64
	for _, k := range sc.all() {
		if e := k.fatalErr.Load(); e != nil {
			r.Errorf("worker %d: %v", k.id, *e)
		}
		evs, total := k.ev.list()
		for _, e := range evs {
			r.Errorf("worker %d: %s", k.id, e)
		}
		if int(total) > len(evs) {
			r.Errorf("worker %d: %d more broken invariants", k.id, int(total)-len(evs))
		}
		for i := range ops {
			ops[i] += k.ops[i].Load()
		}
		blocks += k.blocks.Load()
		progress += k.progress.Load()
		yieldEAGAIN += k.yieldEAGAIN.Load()
		rejoins += k.rejoins.Load()
		forks += k.forks.Load()
	}
	var sum umcgTotals
	for _, c := range sc.srvs {
		sum.add(&c.s.Stats)
	}
	// Checked below: worker_rounds, blocks, switches. server_eintr is
	// checked by the signal storm (scenarioMix); requeues, rejoins and
	// worker_forks are measurements here (lifecycle checks its own).
	r.Metric("worker_rounds", float64(progress))
	r.Metric("blocks", float64(blocks))
	r.Metric("switches", float64(sum.switches))
	r.Metric("server_eintr", float64(sum.eintr))
	r.Metric("requeues", float64(sum.requeues))
	if rejoins > 0 {
		r.Metric("rejoins", float64(rejoins))
	}
	if forks > 0 {
		r.Metric("worker_forks", float64(forks))
	}
	var parts []string
	for i, n := range ops {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", opName(i), n))
		}
	}
	sort.Strings(parts)
	r.Logf("ops: %s; blocks seen %d, yield EAGAIN %d; servers: loops %d switches %d requeues %d eagain %d eintr %d timeouts %d preempts %d",
		strings.Join(parts, " "), blocks, yieldEAGAIN, sum.loops, sum.switches, sum.requeues, sum.eagain, sum.eintr, sum.timeouts, sum.preempts)
	for _, e := range runFloors(progress, blocks, ops[opPipeBlock]+ops[opR3], sum.switches) {
		r.Errorf("%s", e)
	}
	sc.checkPins(blocks)
}

// runFloors checks a run's counts against what its ops guarantee: some
// worker completed a round; a worker only runs after a server switched
// to it (the kernel consumed a next_tid, marking it TID_RUNNING); an op
// that must block (mustBlock of them ran) makes the kernel note a block.
func runFloors(progress, blocks, mustBlock, switches uint64) []string {
	var errs []string
	if progress == 0 {
		errs = append(errs, "no worker completed a single round")
	}
	if progress > 0 && switches == 0 {
		errs = append(errs, fmt.Sprintf("workers completed %d rounds, yet no server saw the kernel consume a next_tid (switches=0: next_tid never came back with UMCG_TID_RUNNING)", progress))
	}
	if mustBlock > 0 && blocks == 0 {
		errs = append(errs, fmt.Sprintf("%d ops that must block ran, yet no worker saw its blocked_ts move (blocks=0)", mustBlock))
	}
	return errs
}

// checkPins: with every task unregistered (the threads may still exist)
// the pins the kernel took for UMCG must all be gone; and since a worker
// that blocks was armed with pins at its system call or fault entry,
// blocks (the run's count) mean pins were taken.
func (sc *sched) checkPins(blocks uint64) {
	if !sc.pinsOK {
		return
	}
	excess, taken, err := pinLeak(sc.base, 2*time.Second)
	if err != nil {
		sc.r.Errorf("pins: %v", err)
		return
	}
	// pins_max_held is bounded below (transient pins); pins_taken_child
	// is floored by the blocks.
	sc.r.Metric("pins_max_held", float64(sc.maxHeld))
	sc.r.Metric("pins_taken_child", float64(taken))
	if excess != 0 {
		sc.r.Errorf("pin leak: every UMCG task left, yet %d more pages are pinned than before the run (%d pins taken)", excess, taken)
	}
	if blocks > 0 && taken == 0 {
		sc.r.Errorf("workers blocked %d times, yet nr_foll_pin_acquired did not move: the block notification writes through pages pinned at system call or fault entry", blocks)
	}
	if limit := int64(2 * (sc.p.threads() + maxWorkers)); sc.maxHeld > limit {
		sc.r.Errorf("pins are not transient: up to %d pages held at once during the run, more than 2 per task (%d)", sc.maxHeld, limit)
	}
}

// umcgTotals sums server counters.
type umcgTotals struct {
	loops, switches, requeues, eagain, eintr, timeouts, preempts, kickErrs uint64
}

func (t *umcgTotals) add(s *umcg.ServerStats) {
	t.loops += s.Loops.Load()
	t.switches += s.Switches.Load()
	t.requeues += s.Requeues.Load()
	t.eagain += s.EAGAIN.Load()
	t.eintr += s.EINTR.Load()
	t.timeouts += s.Timeouts.Load()
	t.preempts += s.Preempts.Load()
	t.kickErrs += s.KickErrs.Load()
}
