// Package kmsg follows the kernel log from the moment it is opened, so a
// suite can quote what the kernel said while a test ran. Every open of
// /dev/kmsg has its own position: this does not steal the records the
// guest agent reads for the host's splat classifier.
package kmsg

import (
	"errors"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Reader reads /dev/kmsg from where it stood at Open. A nil Reader reads
// nothing (a guest without /dev/kmsg).
type Reader struct{ fd int }

// Open opens /dev/kmsg at its end.
func Open() (*Reader, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Reader{fd: fd}, nil
}

// Lines returns the messages logged since the last call (or Open),
// waiting up to wait for the first one.
func (r *Reader) Lines(wait time.Duration) []string {
	if r == nil {
		return nil
	}
	if wait > 0 {
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		// An error or a timeout both mean: read what is there.
		_, _ = unix.Poll(fds, int(wait/time.Millisecond))
	}
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(r.fd, buf)
		if errors.Is(err, unix.EPIPE) { // overwritten records: go on
			continue
		}
		if err != nil || n <= 0 {
			return out
		}
		out = append(out, Text(string(buf[:n])))
	}
}

// Close closes the reader.
func (r *Reader) Close() {
	if r != nil {
		unix.Close(r.fd)
	}
}

// Text strips a /dev/kmsg record's "prio,seq,ts,flags;" prefix and its
// continuation (key=value) lines.
func Text(rec string) string {
	if i := strings.IndexByte(rec, ';'); i >= 0 {
		rec = rec[i+1:]
	}
	rec, _, _ = strings.Cut(rec, "\n")
	return rec
}
