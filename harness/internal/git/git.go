// Package git is the one way kharness runs git: with the environment
// scrubbed (GIT_DIR and friends from a hook or a shell would point git at
// another repository, a localised git would defeat the parsing of its
// messages), a fixed identity and dates (the same tarball always yields the
// same commit), no hooks, no background gc, and as a proc child (its own
// process group, dead with kharness).
package git

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kharness/kharness/harness/internal/proc"
)

// The identity and date of every commit kharness makes.
const (
	Name  = "kharness"
	Email = "kharness@localhost"
	Date  = "946684800 +0000" // 2000-01-01T00:00:00Z
)

// Opts are the optional parts of a git command.
type Opts struct {
	Stdin []byte
	Env   []string  // on top of the scrubbed environment (e.g. an author)
	Log   io.Writer // receives the output as it comes, too
}

// Env is the scrubbed environment git runs with in dir.
func Env(dir string) []string {
	keep := map[string]bool{"GIT_EXEC_PATH": true, "GIT_CONFIG_GLOBAL": true, "GIT_CONFIG_SYSTEM": true, "GIT_CONFIG_NOSYSTEM": true}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GIT_") && !keep[k] && !strings.HasPrefix(k, "GIT_TRACE"):
		case k == "LANG" || k == "LANGUAGE" || strings.HasPrefix(k, "LC_"):
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "LC_ALL=C", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME="+Name, "GIT_AUTHOR_EMAIL="+Email, "GIT_AUTHOR_DATE="+Date,
		"GIT_COMMITTER_NAME="+Name, "GIT_COMMITTER_EMAIL="+Email, "GIT_COMMITTER_DATE="+Date)
	if dir != "" {
		env = append(env, "GIT_CEILING_DIRECTORIES="+filepath.Dir(dir))
	}
	return env
}

// Run runs git in dir (none when empty) and returns its combined output as
// written. A failure is a *proc.Error carrying the output (errors.As finds
// the *exec.ExitError of a git that ran and said no).
func Run(ctx context.Context, dir string, o Opts, args ...string) (string, error) {
	full := append([]string{
		"-c", "user.name=" + Name, "-c", "user.email=" + Email,
		"-c", "commit.gpgSign=false", "-c", "core.hooksPath=/dev/null", "-c", "core.autocrlf=false",
		"-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "advice.detachedHead=false",
	}, args...)
	if dir != "" {
		full = append([]string{"-C", dir}, full...)
	}
	cmd := proc.Command(ctx, "git", full...)
	cmd.Env = append(Env(dir), o.Env...)
	if o.Stdin != nil {
		cmd.Stdin = bytes.NewReader(o.Stdin)
	}
	var out bytes.Buffer
	var w io.Writer = &out
	if o.Log != nil {
		w = io.MultiWriter(&out, o.Log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	s := out.String()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return s, &proc.Error{Cmd: "git " + strings.Join(args, " "), Err: err, Output: s}
	}
	return s, nil
}
