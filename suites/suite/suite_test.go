package suite

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kharness/kharness/harness/event"
)

// TestRunDeclaresAndBeats: a suite declares the tests -run selects (the
// regexp anchored like the host's), sends a heartbeat with its loop count
// while a test runs, and none after the test's end.
func TestRunDeclaresAndBeats(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EventsFDEnv, strconv.Itoa(int(w.Fd())))
	tests := []Test{
		{Name: "fork", Run: func(t *T) {
			for t.Running() {
				time.Sleep(time.Millisecond)
			}
		}},
		{Name: "fork-tearing", Run: func(t *T) { t.Errorf("must not run") }},
	}
	done := make(chan int, 1)
	go func() {
		done <- run("cow", []string{"-run=fork", "-duration=350ms", "-heartbeat=100ms"}, tests)
		w.Close()
	}()
	var buf bytes.Buffer
	io.Copy(&buf, r)
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
	rd := event.NewReader(&buf)
	var evs []event.Event
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		evs = append(evs, e)
	}
	if len(evs) == 0 || evs[0].Type != event.SuiteStart || strings.Join(evs[0].Tests, ",") != "fork" {
		t.Fatalf("first event %+v, want a suite-start declaring only fork", evs)
	}
	beats, ended := 0, false
	for _, e := range evs {
		switch e.Type {
		case event.Progress:
			if ended {
				t.Errorf("a heartbeat after the test's end")
			}
			if e.Iterations <= 0 {
				t.Errorf("heartbeat without iterations: %+v", e)
			}
			beats++
		case event.TestEnd:
			ended = true
			if e.Test != "fork" || e.Result != event.Pass {
				t.Errorf("test end %+v", e)
			}
		}
	}
	if beats < 2 {
		t.Errorf("%d heartbeats in a 350 ms test at 100 ms", beats)
	}
}
