package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestPlainLines: without a terminal, each running task is printed every
// period with its count, percentage, elapsed time and detail.
func TestPlainLines(t *testing.T) {
	var out syncBuf
	tr := New(&out, Options{Every: 50 * time.Millisecond})
	build := tr.Start("[x86_64] build", 2000, "objects")
	build.Set(500, "")
	tests := tr.Start("[x86_64] boot", 0, "tests")
	tests.SetTotal(57)
	tests.Set(12, "umcg/throughput 14s")
	time.Sleep(180 * time.Millisecond)
	build.Done("[x86_64] build: done")
	tr.Close()
	s := out.String()
	for _, w := range []string{"[x86_64] build 500/2000 objects (25%)", "ETA", "[x86_64] boot 12/57 tests (21%)", "— umcg/throughput 14s", "[x86_64] build: done"} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q:\n%s", w, s)
		}
	}
	if n := strings.Count(s, "[x86_64] build 500/2000"); n < 2 {
		t.Errorf("the build line was printed %d times in 180 ms at a 50 ms period", n)
	}
}

func TestLineETAFromAnEarlierRun(t *testing.T) {
	tr := New(&bytes.Buffer{}, Options{Every: time.Hour})
	defer tr.Close()
	now := time.Unix(1000, 0)
	tr.now = func() time.Time { return now }
	task := tr.Start("[i386] build", 0, "objects")
	task.Expect(7 * time.Minute)
	now = now.Add(2 * time.Minute)
	task.Set(300, "")
	if got, want := task.Line(), "[i386] build 300 objects 2m0s, ETA 5m0s"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

// TestLive: on a terminal the tracker draws and lines still come through.
func TestLive(t *testing.T) {
	var out syncBuf
	tr := New(&out, Options{Live: true})
	task := tr.Start("[x86_64] initramfs", 0, "")
	tr.Write([]byte("[x86_64] a log line\n"))
	time.Sleep(300 * time.Millisecond)
	task.Done("[x86_64] initramfs: done")
	tr.Close()
	if s := out.String(); !strings.Contains(s, "a log line") || !strings.Contains(s, "initramfs: done") || !strings.Contains(s, "[x86_64] initramfs") {
		t.Errorf("live output:\n%q", s)
	}
}
