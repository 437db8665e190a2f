package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Every UMCG scenario runs in a child process (the suite binary run again
// with childArg): a kernel that kills a worker with SIGKILL, a worker
// that execs, a scheduler wedged in the kernel take down only that child,
// and the test can say what happened. The child reports to the test on
// its stdout, one JSON record per line.

// record is one line of the child's report.
type record struct {
	Kind string  `json:"k"`           // see the rec* constants
	Msg  string  `json:"m,omitempty"` // log and error text, metric name
	Val  float64 `json:"v,omitempty"` // metric value
	// arena / task records, for the parent's post-mortem of a hung child
	Addr uint64 `json:"a,omitempty"`
	N    int    `json:"n,omitempty"`
	Slot int    `json:"s,omitempty"`
	TID  int    `json:"t,omitempty"`
	ID   int    `json:"i,omitempty"`
}

// Record kinds.
const (
	recLog    = "log"
	recError  = "error"
	recMetric = "metric"
	recSkip   = "skip"
	recArena  = "arena" // Addr = slot 0, N = slots
	recTask   = "task"  // Slot, TID, ID, Msg = role ("server" or "worker")
	recDone   = "done"  // the scenario ran to its end (errors or not)
	// recHang: the child's watchdog fired; it waits a few seconds before
	// dumping its goroutines so that the parent can sample the PCs of
	// its spinning threads (ptrace cannot stop a thread of one's own
	// process).
	recHang = "hang"
)

// reporter writes records; safe for concurrent use, but never to be used
// from a UMCG thread (a write can block on the pipe, and the mutex could
// be held by a descheduled worker).
type reporter struct {
	mu  sync.Mutex
	w   io.Writer
	err bool
}

func (r *reporter) emit(rec record) {
	b, _ := json.Marshal(rec)
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.Kind == recError {
		r.err = true
	}
	r.w.Write(append(b, '\n'))
}

func (r *reporter) Logf(format string, args ...any) {
	r.emit(record{Kind: recLog, Msg: fmt.Sprintf(format, args...)})
}

func (r *reporter) Errorf(format string, args ...any) {
	r.emit(record{Kind: recError, Msg: fmt.Sprintf(format, args...)})
}

func (r *reporter) Skipf(format string, args ...any) {
	r.emit(record{Kind: recSkip, Msg: fmt.Sprintf(format, args...)})
}

func (r *reporter) Metric(name string, v float64) {
	r.emit(record{Kind: recMetric, Msg: name, Val: v})
}

// Failed reports whether an error was emitted.
func (r *reporter) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// sink is what the parent does with the child's records (a suite.T).
type sink interface {
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Metric(name string, v float64)
}

// childReport is what the parent learned from a child's output. relay
// fills it while the child runs; read it under mu (or after relay ended).
type childReport struct {
	mu     sync.Mutex
	Errors int
	Skip   string
	Done   bool
	Arena  record
	Tasks  []record
	Raw    []string // lines that were no records (a Go panic, say)
	// onHang runs (outside mu, on the relay goroutine) when the child
	// announces a hang.
	onHang func()
}

// relay reads the child's records from r until EOF and hands them to s
// as they come, keeping what the parent needs in rep.
func relay(r io.Reader, s sink, prefix string, rep *childReport) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rec, ok := parseRecord(line)
		rep.mu.Lock()
		if !ok {
			if len(rep.Raw) < 200 {
				rep.Raw = append(rep.Raw, line)
			}
			rep.mu.Unlock()
			s.Logf("%s%s", prefix, line)
			continue
		}
		switch rec.Kind {
		case recLog:
			s.Logf("%s%s", prefix, rec.Msg)
		case recError:
			rep.Errors++
			s.Errorf("%s%s", prefix, rec.Msg)
		case recMetric:
			s.Metric(rec.Msg, rec.Val)
		case recSkip:
			rep.Skip = rec.Msg
		case recArena:
			rep.Arena = rec
		case recTask:
			rep.Tasks = append(rep.Tasks, rec)
		case recDone:
			rep.Done = true
		}
		onHang := rep.onHang
		rep.mu.Unlock()
		if rec.Kind == recHang && onHang != nil {
			onHang()
		}
	}
}

// parseRecord decodes one line; false for anything that is not a record.
func parseRecord(line string) (record, bool) {
	if !strings.HasPrefix(line, "{") {
		return record{}, false
	}
	var rec record
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Kind == "" {
		return record{}, false
	}
	return rec, true
}
