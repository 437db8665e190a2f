package main

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// kmsgReader follows the kernel log from the moment it was opened: the
// parent uses it to quote what the kernel said about a child ("umcg:
// killing task ..."). The guest agent reads /dev/kmsg on its own and
// fails tests on WARN/BUG; every open of /dev/kmsg has its own position,
// so this does not steal its records.
type kmsgReader struct{ fd int }

func openKmsg() (*kmsgReader, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &kmsgReader{fd: fd}, nil
}

// lines returns the messages logged since the last call (or the open).
func (k *kmsgReader) lines() []string {
	if k == nil {
		return nil
	}
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) { // overwritten records: go on
			continue
		}
		if err != nil || n <= 0 {
			return out
		}
		out = append(out, kmsgText(string(buf[:n])))
	}
}

func (k *kmsgReader) close() {
	if k != nil {
		unix.Close(k.fd)
	}
}

// kmsgText strips the "prio,seq,ts,flags;" prefix and continuation lines
// of a /dev/kmsg record.
func kmsgText(rec string) string {
	if i := strings.IndexByte(rec, ';'); i >= 0 {
		rec = rec[i+1:]
	}
	if i := strings.IndexByte(rec, '\n'); i >= 0 {
		rec = rec[:i]
	}
	return rec
}
