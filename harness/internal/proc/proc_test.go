package proc

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCancelStopsTheGroup: cancelling stops the command and its children
// (a compiler under make), not only the direct child, and a command that
// traps SIGTERM gets to clean up first.
func TestCancelStopsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	cleaned := filepath.Join(dir, "cleaned")
	script := `trap 'touch ` + cleaned + `; exit 1' TERM; sleep 300 & echo $! > ` + pidFile + `; wait`
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := Run(ctx, Cmd{Name: "sh", Args: []string{"-c", script}}); done <- err }()
	var pid int
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
	}
	if pid == 0 {
		t.Fatal("the child never started")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("a cancelled command reported success")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	time.Sleep(1500 * time.Millisecond)
	if syscall.Kill(pid, 0) == nil {
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(st), ") Z ") {
			t.Errorf("grandchild %d (sleep) survived the cancel", pid)
		}
	}
	if _, err := os.Stat(cleaned); err != nil {
		t.Errorf("the command got no SIGTERM to clean up first")
	}
}

func TestMissingTool(t *testing.T) {
	_, err := Run(context.Background(), Cmd{Name: "no-such-tool-kharness"})
	if err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("err = %v", err)
	}
}

func TestStdinReachesTheCommand(t *testing.T) {
	cmd := Command(context.Background(), "cat")
	cmd.Stdin = strings.NewReader("patch data\n")
	out, err := cmd.Output()
	if err != nil || string(out) != "patch data\n" {
		t.Errorf("cat through the reaper: %q %v", out, err)
	}
}
