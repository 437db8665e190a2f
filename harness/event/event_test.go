package event

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRoundTripAndNoise(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.now = func() time.Time { return time.Unix(100, 0) }
	want := []Event{
		{Type: Hello, Info: map[string]string{"release": "6.12.117"}},
		{Type: TestEnd, Suite: "smoke", Test: "cpus", Result: Pass, Metrics: map[string]float64{"cpus": 2}, Kmsg: []string{"a"}},
		{Type: Done},
	}
	for _, e := range want {
		if err := w.Emit(e); err != nil {
			t.Fatal(err)
		}
	}
	// What a serial line adds: CRs, NULs after reset, junk and a cut line.
	stream := "\x00\x00junk before\r\n" + strings.ReplaceAll(buf.String(), "\n", "\r\n") + `{"type":"test-st`
	r := NewReader(strings.NewReader(stream))
	var garbage []string
	r.Garbage = func(l string) { garbage = append(garbage, l) }
	var got []Event
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e.Time = time.Time{}
		got = append(got, e)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if len(garbage) != 2 {
		t.Errorf("garbage = %q, want the junk line and the cut line", garbage)
	}
}

// TestOversizeLineSkipped: a line past MaxLine is dropped and reported,
// and the events after it are still read; memory stays bounded.
func TestOversizeLineSkipped(t *testing.T) {
	big := strings.Repeat("x", MaxLine+100)
	stream := `{"type":"hello"}` + "\n" + big + "\n" + `{"type":"done"}` + "\n"
	r := NewReader(strings.NewReader(stream))
	var over []int
	var raw int
	r.Oversize = func(n int) { over = append(over, n) }
	r.Raw = func([]byte) { raw++ }
	var types []Type
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, e.Type)
	}
	if !reflect.DeepEqual(types, []Type{Hello, Done}) {
		t.Errorf("events %v, want hello and done", types)
	}
	if len(over) != 1 || over[0] != MaxLine+101 {
		t.Errorf("oversize reports %v, want one of %d bytes", over, MaxLine+101)
	}
	if raw != 2 {
		t.Errorf("raw lines %d, want 2", raw)
	}
}

// TestBeat: beats come while running, none after stop returns, none at
// all with a zero period; stop may be called twice.
func TestBeat(t *testing.T) {
	var n atomic.Int64
	stop := Beat(5*time.Millisecond, func() { n.Add(1) })
	time.Sleep(60 * time.Millisecond)
	stop()
	got := n.Load()
	if got == 0 {
		t.Fatal("no beat in 60ms at a 5ms period")
	}
	time.Sleep(30 * time.Millisecond)
	if n.Load() != got {
		t.Errorf("beats after stop: %d, then %d", got, n.Load())
	}
	stop()
	var m atomic.Int64
	stop0 := Beat(0, func() { m.Add(1) })
	time.Sleep(20 * time.Millisecond)
	stop0()
	if m.Load() != 0 {
		t.Errorf("%d beats with period 0", m.Load())
	}
}
