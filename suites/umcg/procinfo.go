package main

import (
	"fmt"
	"os"
	"strings"
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
	out := fmt.Sprintf("tid %d sched-state %s", tid, statState(string(stat)))
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
func statState(stat string) string {
	if i := strings.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2 : i+3]
	}
	return "?"
}
