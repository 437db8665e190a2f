package main

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// thread is a goroutine locked to its own OS thread for its whole life,
// so that a fault message's thread id can be matched to it and a thread
// blocked in the kernel is never shared with other goroutines. The OS
// thread exits with the goroutine (it is never unlocked).
type thread struct {
	name string
	tid  atomic.Int32
	done chan struct{}
	err  error // valid once done is closed
}

// start runs fn on a new thread; the end of the test waits for it.
func (c *tcase) start(name string, fn func() error) *thread {
	th := &thread{name: name, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(th.done)
		defer func() {
			if r := recover(); r != nil {
				th.err = fmt.Errorf("panic: %v", r)
			}
		}()
		runtime.LockOSThread()
		th.tid.Store(int32(unix.Gettid()))
		close(ready)
		th.err = fn()
	}()
	<-ready
	c.mu.Lock()
	c.threads = append(c.threads, th)
	c.mu.Unlock()
	return th
}

// wait reports whether the thread finished within d.
func (th *thread) wait(d time.Duration) bool {
	select {
	case <-th.done:
		return true
	case <-time.After(d):
		return false
	}
}

// finished reports whether the thread has finished, without waiting.
func (th *thread) finished() bool {
	select {
	case <-th.done:
		return true
	default:
		return false
	}
}

// await waits for th to finish and checks its error; a thread still
// blocked after waitDone ends the test.
func (c *tcase) await(th *thread, why string) {
	if !th.wait(waitDone) {
		c.Fatalf("%s (tid %d) still blocked %s after %s", th.name, th.tid.Load(), waitDone, why)
	}
	if th.err != nil {
		c.Errorf("%s: %v", th.name, th.err)
	}
}

// stillBlocked checks, after waitBlocked, that none of ths has finished:
// why says what must not have released them.
func (c *tcase) stillBlocked(why string, ths ...*thread) bool {
	time.Sleep(waitBlocked)
	ok := true
	for _, th := range ths {
		if th.finished() {
			c.Errorf("%s finished (err %v) after %s; it must stay blocked", th.name, th.err, why)
			ok = false
		}
	}
	return ok
}
