package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// threadInfo describes a thread for a hang report: its scheduler state
// letter (R, S, D, ...), where it sleeps in the kernel (wchan, and the
// kernel stack when the kernel exposes it) and its name.
func threadInfo(pid, tid int) string {
	dir := fmt.Sprintf("/proc/%d/task/%d/", pid, tid)
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return fmt.Sprintf("tid %d: gone (%v)", tid, err)
	}
	state := statState(string(stat))
	out := fmt.Sprintf("tid %d sched-state %s", tid, state)
	if state == "R" {
		// Running for good is a spin: in user space or in the kernel?
		u0, s0 := statTimes(string(stat))
		time.Sleep(200 * time.Millisecond)
		if again, err := os.ReadFile(dir + "stat"); err == nil {
			u1, s1 := statTimes(string(again))
			out += fmt.Sprintf(" cpu over 200ms: user %d kernel %d ticks", u1-u0, s1-s0)
		}
		// ptrace cannot stop a thread of its own process: only the
		// parent's post-mortem of a child samples the PC.
		if pid != os.Getpid() {
			out += "; " + pcSamples(tid, 3)
		}
	}
	if w, err := os.ReadFile(dir + "wchan"); err == nil && len(w) > 0 && string(w) != "0" {
		out += " wchan " + string(w)
	}
	if s, err := os.ReadFile(dir + "stack"); err == nil && len(s) > 0 {
		out += " stack [" + strings.Join(strings.Fields(strings.ReplaceAll(string(s), "\n", " <- ")), " ") + "]"
	}
	if s, err := os.ReadFile(dir + "syscall"); err == nil && len(s) > 0 {
		out += " syscall " + strings.Fields(string(s) + " ?")[0]
	}
	return out
}

// spinners describes every thread of pid that is on a CPU (state R): its
// user/kernel split and, from another process, PC samples.
func spinners(pid int) string {
	var tids []int
	for tid, st := range threadStates(pid) {
		if st == "R" {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	var b strings.Builder
	for _, tid := range tids {
		fmt.Fprintf(&b, "  %s\n", threadInfo(pid, tid))
	}
	return b.String()
}

// threadStates maps every thread of pid to its state letter.
func threadStates(pid int) map[int]string {
	out := map[int]string{}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return out
	}
	for _, e := range ents {
		var tid int
		if _, err := fmt.Sscan(e.Name(), &tid); err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
		if err != nil {
			continue
		}
		out[tid] = statState(string(stat))
	}
	return out
}

// statState is the state letter of a /proc/.../stat line, "tid (comm) S
// ...": it follows the last ')' (comm may contain anything).
// statTimes is utime and stime (clock ticks) from a stat line.
func statTimes(stat string) (user, sys uint64) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is the state (field 3); utime and stime are fields 14 and 15.
	if len(f) > 12 {
		fmt.Sscan(f[11], &user)
		fmt.Sscan(f[12], &sys)
	}
	return user, sys
}

func statState(stat string) string {
	if i := strings.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2 : i+3]
	}
	return "?"
}
