package event

import (
	"bytes"
	"io"
	"reflect"
	"strings"
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
