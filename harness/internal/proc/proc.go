// Package proc runs host tools (git, make, tar, go) as process groups, so
// that cancelling a context takes down make's children and compilers too,
// and keeps the tail of their output for error messages.
//
// Nothing outlives kharness: each command runs under a small sh that gets
// SIGTERM when kharness dies, even by SIGKILL (PR_SET_PDEATHSIG), and
// then kills its whole process group — make, gcc, cc1, go build's
// compilers — not only its direct child.
package proc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Cmd describes one command.
type Cmd struct {
	Dir  string
	Env  []string // added to the inherited environment
	Log  io.Writer
	Name string
	Args []string
}

// Error is a failed command with the tail of its output.
type Error struct {
	Cmd    string
	Err    error
	Output string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	if t := strings.TrimSpace(e.Output); t != "" {
		msg += "\n" + t
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// tail keeps the last n bytes written.
type tail struct {
	buf []byte
	n   int
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
	return len(p), nil
}

// Run runs c and returns its combined output (stdout+stderr).
func Run(ctx context.Context, c Cmd) ([]byte, error) {
	var out bytes.Buffer
	var w io.Writer = &out
	if c.Log != nil {
		w = io.MultiWriter(&out, c.Log)
	}
	err := start(ctx, c, w)
	return out.Bytes(), err
}

// Stream runs c writing output only to c.Log, keeping 4 KiB for errors;
// for long builds whose logs go to disk.
func Stream(ctx context.Context, c Cmd) error {
	return start(ctx, c, c.Log)
}

func start(ctx context.Context, c Cmd, w io.Writer) error {
	t := &tail{n: 4096}
	var sink io.Writer = t
	if w != nil {
		sink = io.MultiWriter(w, t)
	}
	cmd := Command(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(cmd.Environ(), c.Env...)
	}
	cmd.Stdout = sink
	cmd.Stderr = sink
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return &Error{Cmd: c.Name + " " + strings.Join(c.Args, " "), Err: err, Output: string(t.buf)}
	}
	return nil
}

// Output runs c and returns trimmed stdout+stderr.
func Output(ctx context.Context, c Cmd) (string, error) {
	out, err := Run(ctx, c)
	return strings.TrimSpace(string(out)), err
}

// reaper runs "$@" in the background of a shell that stops its own process
// group when told to (its parent, kharness, died, or the context ended) and
// otherwise passes the command's exit status on. The group gets SIGTERM
// first, so that make deletes the target it was writing, then SIGKILL.
// The command keeps the shell's stdin (a background job would get
// /dev/null).
const reaper = `trap 'trap "" TERM HUP INT; kill -TERM 0; sleep 1; kill -KILL 0' TERM HUP INT; exec 3<&0; "$@" <&3 3<&- & exec 3<&-; wait $!`

// Command is exec.CommandContext for a host tool, with the guarantees of
// this package: its own process group, killed whole when ctx is done or
// when kharness dies. A missing tool is reported as exec would.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path, err := exec.LookPath(name)
	if err != nil {
		cmd := exec.CommandContext(ctx, name, args...) // Start reports the lookup error
		return cmd
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", reaper, "sh", path}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
