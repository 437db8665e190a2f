package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Two pieces of this suite must never enter the Go scheduler. The
// server loop (umcg.Server.loop) (see Server.loop):
// once sysmon has flagged the server goroutine for preemption (it always
// has, after a long umcg_wait in a raw system call), the first call with
// a stack-split prologue parks it, and the runtime lock or P it then
// needs may be held by a worker the kernel descheduled. The guest once
// hung exactly so: u-root built the suite with -gcflags=all=-l, and
// sync/atomic's (*Int32).Store, out of line, preempted the server.
// And forkChild runs in a raw-forked copy of one thread, where the Go
// scheduler would run copies of every other goroutine.
//
// The test builds the umcg suite, for both architectures with the flags
// the initramfs uses (inlining on), and walks the call
// graph from each in the disassembly: no reachable function may call
// runtime.morestack.
func TestNoSchedulerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and disassembles a binary per architecture")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("needs the go tool: %v", err)
	}
	for _, arch := range []string{"386", "amd64"} {
		t.Run(arch, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "umcg")
			build := exec.Command(goTool, "build", "-o", bin, ".")
			// GOFLAGS cleared: the initramfs build sets its own (inlining on).
			build.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOFLAGS=")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build for %s: %v\n%s", arch, err, out)
			}
			dis := exec.Command(goTool, "tool", "objdump", bin)
			out, err := dis.Output()
			if err != nil {
				t.Fatalf("objdump: %v", err)
			}
			g := parseCallGraph(string(out))
			for _, root := range []string{"github.com/kharness/kharness/suites/internal/umcg.(*Server).loop", "main.forkChild"} {
				if _, ok := g.calls[root]; !ok {
					t.Fatalf("no %s in the disassembly", root)
				}
				for _, path := range g.splitting(root) {
					t.Errorf("%s: %s reaches a stack-split prologue: %s", arch, root, strings.Join(path, " -> "))
				}
			}
		})
	}
}

// callGraph is what the disassembly says about each function: whom it
// calls and whether it has a stack-split prologue.
type callGraph struct {
	calls map[string][]string
	split map[string]bool
}

var (
	textRe = regexp.MustCompile(`^TEXT (\S+)\(SB\)`)
	callRe = regexp.MustCompile(`\bCALL (\S+)\(SB\)`)
)

func parseCallGraph(objdump string) *callGraph {
	g := &callGraph{calls: map[string][]string{}, split: map[string]bool{}}
	var cur string
	sc := bufio.NewScanner(strings.NewReader(objdump))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := textRe.FindStringSubmatch(line); m != nil {
			cur = m[1]
			g.calls[cur] = nil
			continue
		}
		m := callRe.FindStringSubmatch(line)
		if m == nil || cur == "" {
			continue
		}
		if strings.HasPrefix(m[1], "runtime.morestack") {
			g.split[cur] = true
			continue
		}
		g.calls[cur] = append(g.calls[cur], m[1])
	}
	return g
}

// terminal are callees the walk does not enter: panics end the process
// (a server that indexes out of range has failed anyway), and the write
// barrier runs only while the garbage collector marks, which the
// scenarios switch off.
func terminal(fn string) bool {
	return strings.HasPrefix(fn, "runtime.panic") || strings.HasPrefix(fn, "runtime.gcWriteBarrier") ||
		strings.HasPrefix(fn, "runtime.goPanic")
}

// splitting returns a call path from root to each reachable function with
// a stack-split prologue.
func (g *callGraph) splitting(root string) [][]string {
	var bad [][]string
	seen := map[string]bool{}
	var walk func(fn string, path []string)
	walk = func(fn string, path []string) {
		if seen[fn] || terminal(fn) {
			return
		}
		seen[fn] = true
		path = append(path, fn)
		if g.split[fn] {
			bad = append(bad, append([]string(nil), path...))
		}
		for _, c := range g.calls[fn] {
			walk(c, path)
		}
	}
	walk(root, nil)
	return bad
}

func TestParseCallGraph(t *testing.T) {
	const dis = `TEXT a.loop(SB) /x.go
  x.go:1	0x1	e8	CALL a.leaf(SB)
  x.go:2	0x2	e8	CALL a.mid(SB)
  x.go:3	0x3	e8	CALL runtime.panicBounds(SB)
TEXT a.leaf(SB) /x.go
  x.go:4	0x4	c3	RET
TEXT a.mid(SB) /x.go
  x.go:5	0x5	e8	CALL a.deep(SB)
TEXT a.deep(SB) /x.go
  x.go:6	0x6	e8	CALL runtime.morestack_noctxt(SB)
TEXT runtime.panicBounds(SB) /p.go
  p.go:1	0x7	e8	CALL runtime.morestack_noctxt(SB)
`
	g := parseCallGraph(dis)
	for _, tc := range []struct {
		root string
		want string
	}{
		{"a.loop", "a.loop -> a.mid -> a.deep"},
		{"a.leaf", ""},
		{"a.deep", "a.deep"},
	} {
		var got []string
		for _, p := range g.splitting(tc.root) {
			got = append(got, strings.Join(p, " -> "))
		}
		if strings.Join(got, "; ") != tc.want {
			t.Errorf("splitting(%s) = %q, want %q", tc.root, got, tc.want)
		}
	}
}
