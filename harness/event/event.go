// Package event is the wire format between the guest agent and the host:
// one JSON object per line on a serial port of its own, never mixed with
// the kernel console, and closed by a Done sentinel so the host can tell a
// finished guest from one that died.
package event

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Type says what an Event reports.
type Type string

// Event types, in the order a healthy guest emits them.
const (
	Hello      Type = "hello"       // agent is up: kernel release, arch, CPUs
	SuiteStart Type = "suite-start" // a suite binary was started
	TestStart  Type = "test-start"
	Progress   Type = "progress"  // heartbeat of a running test: Iterations so far
	TestEnd    Type = "test-end"  // carries Result, Message, Kmsg, Metrics
	Log        Type = "log"       // free-form line from the agent or a suite
	SuiteEnd   Type = "suite-end" // carries Result for the suite process itself
	Done       Type = "done"      // sentinel: everything was sent, the guest powers off
)

// Result of a test or suite as the guest sees it.
type Result string

// Guest-side results. The host may still turn a pass into a crash when the
// console shows a splat.
const (
	Pass    Result = "pass"
	Fail    Result = "fail"
	Skip    Result = "skip"
	Crash   Result = "crash"   // the kernel log shows a splat during the test
	Timeout Result = "timeout" // the suite outran its deadline and was killed
)

// Event is one line of the stream.
type Event struct {
	Type    Type      `json:"type"`
	Time    time.Time `json:"time"`
	Suite   string    `json:"suite,omitempty"`
	Test    string    `json:"test,omitempty"`
	Result  Result    `json:"result,omitempty"`
	Message string    `json:"message,omitempty"`
	// Duration of the test or suite in milliseconds.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Kmsg holds the kernel log lines produced while the test ran.
	Kmsg []string `json:"kmsg,omitempty"`
	// Metrics are numbers a test wants in the results (pages, events, rates).
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Info carries Hello's facts (kernel release, machine, cpus, cmdline).
	Info map[string]string `json:"info,omitempty"`
	// Tests are the tests a suite declares for this run (SuiteStart):
	// each must report, or the host counts it as never reported.
	Tests []string `json:"tests,omitempty"`
	// Iterations is a running test's loop count so far (Progress).
	Iterations int64 `json:"iterations,omitempty"`
}

// Writer emits events as JSON lines, one write per event; it is safe for
// concurrent use (a test's heartbeat and its end may race).
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	enc *json.Encoder
	now func() time.Time
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, enc: json.NewEncoder(w), now: time.Now}
}

// Emit writes e, stamping its time when unset.
func (w *Writer) Emit(e Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = w.now().UTC()
	}
	if err := w.enc.Encode(e); err != nil {
		return fmt.Errorf("emit %s event: %w", e.Type, err)
	}
	return nil
}

// MaxLine bounds one event line. A longer line (a runaway message, a
// stream gone wrong) is dropped whole and reported through Oversize; the
// lines after it are read as usual.
const MaxLine = 4 << 20

// Reader decodes an event stream line by line. Lines that are not events
// (serial noise, a half line cut by a crash) are reported through Garbage
// instead of aborting the stream, and memory stays bounded by MaxLine.
type Reader struct {
	br *bufio.Reader
	// Raw, when set, receives every complete line as read (to keep the
	// raw stream on disk); it cannot stop the reading.
	Raw func(line []byte)
	// Garbage receives undecodable lines; nil drops them.
	Garbage func(line string)
	// Oversize is told the length of each line dropped for exceeding MaxLine.
	Oversize func(n int)
	max      int
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64*1024), max: MaxLine}
}

// line returns the next line without its newline; over-long lines are
// skipped (and reported) here.
func (r *Reader) line() ([]byte, error) {
	var buf []byte
	dropped := 0
	for {
		frag, err := r.br.ReadSlice('\n')
		switch {
		case dropped > 0:
			dropped += len(frag)
		case len(buf)+len(frag) > r.max:
			dropped = len(buf) + len(frag)
			buf = nil
		default:
			buf = append(buf, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if dropped > 0 {
			if r.Oversize != nil {
				r.Oversize(dropped)
			}
			if err != nil {
				return nil, err
			}
			dropped = 0
			continue
		}
		if err != nil && len(buf) == 0 {
			return nil, err
		}
		return bytes.TrimSuffix(buf, []byte("\n")), nil
	}
}

// Next returns the next event, or io.EOF at the end of the stream.
func (r *Reader) Next() (Event, error) {
	for {
		line, err := r.line()
		if err != nil {
			if err == io.EOF {
				return Event{}, io.EOF
			}
			return Event{}, fmt.Errorf("read event stream: %w", err)
		}
		if r.Raw != nil {
			r.Raw(line)
		}
		// A tty may turn \n into \r\n and a reset may leave NULs.
		for len(line) > 0 && (line[0] == 0 || line[0] == '\r') {
			line = line[1:]
		}
		for len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil || e.Type == "" {
			if r.Garbage != nil {
				r.Garbage(string(line))
			}
			continue
		}
		return e, nil
	}
}

// Beat calls beat every period until the returned stop is called; stop
// returns once no call is running, so no heartbeat follows a test's end.
// A period <= 0 never beats. Both the suites and the agent's selftest
// runner keep the host's no-output watchdog fed this way while a test is
// silent for minutes.
func Beat(period time.Duration, beat func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if period <= 0 {
			return
		}
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				beat()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}
