// Package progress shows what a long stage is doing while it does it: on a
// terminal one live line per running stage (github.com/vbauerster/mpb),
// elsewhere (CI, a log file) a plain line per running stage every few
// seconds. A kernel build that is silent for seven minutes and a guest
// whose tests appear with no count of how many remain are what it is for.
//
// Stages report through a Task: how much is done of how much (objects
// compiled, tests finished; 0 total when unknown), a short detail (the
// running test), and at the end a closing line. Lines written to the
// Tracker itself go above the live lines.
package progress

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Tracker holds the running tasks of one kharness invocation.
type Tracker struct {
	mu    sync.Mutex
	out   io.Writer
	bars  *mpb.Progress // nil when not on a terminal
	tasks map[*Task]bool
	every time.Duration
	stop  chan struct{}
	done  chan struct{}
	now   func() time.Time
}

// Options configure a Tracker.
type Options struct {
	// Live draws one updating line per task (out is a terminal);
	// otherwise each running task is printed every Every.
	Live  bool
	Every time.Duration
}

// New starts a tracker writing to out.
func New(out io.Writer, o Options) *Tracker {
	t := &Tracker{out: out, tasks: map[*Task]bool{}, every: o.Every, stop: make(chan struct{}), done: make(chan struct{}), now: time.Now}
	if t.every <= 0 {
		t.every = 30 * time.Second
	}
	if o.Live {
		t.bars = mpb.New(mpb.WithOutput(out), mpb.WithWidth(24), mpb.WithRefreshRate(250*time.Millisecond), mpb.WithAutoRefresh())
		close(t.done)
		return t
	}
	go t.periodic()
	return t
}

// Write prints a line above the live lines (or as it is).
func (t *Tracker) Write(b []byte) (int, error) {
	if t.bars != nil {
		return t.bars.Write(b)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.Write(b)
}

// periodic prints the running tasks every t.every when there is no
// terminal to draw on.
func (t *Tracker) periodic() {
	defer close(t.done)
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.mu.Lock()
			var lines []string
			for task := range t.tasks {
				lines = append(lines, task.Line())
			}
			t.mu.Unlock()
			sort.Strings(lines)
			for _, l := range lines {
				t.Write([]byte(l + "\n"))
			}
		}
	}
}

// Close stops the tracker; running tasks are abandoned.
func (t *Tracker) Close() {
	t.mu.Lock()
	tasks := make([]*Task, 0, len(t.tasks))
	for task := range t.tasks {
		tasks = append(tasks, task)
	}
	t.mu.Unlock()
	for _, task := range tasks {
		task.end("")
	}
	if t.bars != nil {
		t.bars.Wait()
		return
	}
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}

// Task is one running stage.
type Task struct {
	t      *Tracker
	name   string
	unit   string
	start  time.Time
	bar    *mpb.Bar
	mu     sync.Mutex
	done   int64
	total  int64
	detail string
	// eta, when set, predicts the stage's whole duration (from an earlier
	// run); used when the total is unknown or the rate is uneven.
	eta   time.Duration
	ended bool
}

// Start begins a task: name is what the line starts with ("[x86_64]
// build"), total what done counts up to (0: unknown) in unit. A nil
// Tracker gives a nil Task, and a nil Task ignores every call, so stages
// report the same way with or without anyone watching.
func (t *Tracker) Start(name string, total int64, unit string) *Task {
	if t == nil {
		return nil
	}
	task := &Task{t: t, name: name, unit: unit, start: t.now(), total: total}
	if t.bars != nil {
		text := decor.Any(func(decor.Statistics) string { return task.Line() })
		if total > 0 {
			task.bar = t.bars.AddBar(total, mpb.PrependDecorators(text), mpb.BarRemoveOnComplete())
		} else {
			task.bar = t.bars.AddSpinner(0, mpb.PrependDecorators(text), mpb.BarRemoveOnComplete())
		}
	}
	t.mu.Lock()
	t.tasks[task] = true
	t.mu.Unlock()
	return task
}

// Set records progress: done of the total, and a detail.
func (task *Task) Set(done int64, detail string) {
	if task == nil {
		return
	}
	task.mu.Lock()
	task.done, task.detail = done, detail
	total := task.total
	task.mu.Unlock()
	if task.bar != nil && total > 0 {
		task.bar.SetCurrent(min(done, total))
	}
}

// SetTotal changes what done counts up to (it became known).
func (task *Task) SetTotal(total int64) {
	if task == nil {
		return
	}
	task.mu.Lock()
	task.total = total
	task.mu.Unlock()
	if task.bar != nil && total > 0 {
		task.bar.SetTotal(total, false)
	}
}

// Expect sets the duration an earlier run of this stage took, for the ETA.
func (task *Task) Expect(d time.Duration) {
	if task == nil {
		return
	}
	task.mu.Lock()
	task.eta = d
	task.mu.Unlock()
}

// Line is the task's status line.
func (task *Task) Line() string {
	task.mu.Lock()
	defer task.mu.Unlock()
	el := task.t.now().Sub(task.start)
	var b strings.Builder
	b.WriteString(task.name)
	switch {
	case task.total > 0:
		pct := 100 * float64(task.done) / float64(task.total)
		fmt.Fprintf(&b, " %d/%d %s (%.0f%%)", task.done, task.total, task.unit, min(pct, 100))
	case task.done > 0:
		fmt.Fprintf(&b, " %d %s", task.done, task.unit)
	}
	fmt.Fprintf(&b, " %s", roundDur(el))
	if left, ok := task.remaining(el); ok {
		fmt.Fprintf(&b, ", ETA %s", roundDur(left))
	}
	if task.detail != "" {
		b.WriteString(" — " + task.detail)
	}
	return b.String()
}

// remaining estimates the time left: from the rate so far when the total
// is known and a tenth is done, else from an earlier run's duration.
func (task *Task) remaining(el time.Duration) (time.Duration, bool) {
	if task.total > 0 && task.done*10 >= task.total && task.done < task.total {
		rate := float64(el) / float64(task.done)
		return time.Duration(rate * float64(task.total-task.done)), true
	}
	if task.eta > 0 && el < task.eta {
		return task.eta - el, true
	}
	return 0, false
}

// Done ends the task with a closing line (none when msg is empty).
func (task *Task) Done(msg string) { task.end(msg) }

func (task *Task) end(msg string) {
	if task == nil {
		return
	}
	task.mu.Lock()
	if task.ended {
		task.mu.Unlock()
		return
	}
	task.ended = true
	task.mu.Unlock()
	task.t.mu.Lock()
	delete(task.t.tasks, task)
	task.t.mu.Unlock()
	if task.bar != nil {
		task.bar.Abort(true)
		task.bar.Wait()
	}
	if msg != "" {
		task.t.Write([]byte(msg + "\n"))
	}
}

func roundDur(d time.Duration) string { return d.Round(time.Second).String() }
