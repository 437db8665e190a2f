package uffd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// HandleFunc resolves one message (normally a page fault) of a Handler's
// descriptor. It runs on one of the handler's goroutines and may block —
// delaying a resolution on purpose is how tests keep a faulting thread
// asleep — while the other goroutines serve other faults. An error is
// recorded and the handler goes on: stopping would leave the faulting
// threads blocked for ever.
type HandleFunc func(ctx context.Context, m Msg) error

// Handler runs a fixed pool of goroutines that read one userfaultfd and
// resolve its messages with a HandleFunc.
type Handler struct {
	fd      *FD
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	handled atomic.Uint64
	mu      sync.Mutex
	errs    []error
	dropped int
}

// maxErrs bounds the errors a Handler keeps; a broken callback in a
// stress loop must not eat the guest's memory.
const maxErrs = 16

// Serve starts workers goroutines serving f until ctx is done or Stop is
// called. It switches f to O_NONBLOCK (see ReadMsgs).
func Serve(ctx context.Context, f *FD, workers int, fn HandleFunc) (*Handler, error) {
	if workers < 1 {
		workers = 1
	}
	if f.flags&unix.O_NONBLOCK == 0 {
		if err := f.SetNonblock(true); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &Handler{fd: f, cancel: cancel}
	for i := 0; i < workers; i++ {
		h.wg.Add(1)
		go h.loop(ctx, fn)
	}
	return h, nil
}

func (h *Handler) loop(ctx context.Context, fn HandleFunc) {
	defer h.wg.Done()
	var msgs [1]Msg
	for {
		_, err := h.fd.ReadMsgs(ctx, msgs[:])
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			h.record(err)
			return // the descriptor is unusable (closed, not handshaken)
		}
		if err := fn(ctx, msgs[0]); err != nil {
			h.record(fmt.Errorf("%v: %w", msgs[0], err))
		}
		h.handled.Add(1)
	}
}

func (h *Handler) record(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.errs) < maxErrs {
		h.errs = append(h.errs, err)
	} else {
		h.dropped++
	}
}

// Handled is the number of messages passed to the HandleFunc so far.
func (h *Handler) Handled() uint64 { return h.handled.Load() }

// Err returns the errors recorded so far, joined, or nil.
func (h *Handler) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	errs := append([]error(nil), h.errs...)
	if h.dropped > 0 {
		errs = append(errs, fmt.Errorf("uffd handler: %d more errors", h.dropped))
	}
	return errors.Join(errs...)
}

// Stop stops the goroutines, waits for them (a HandleFunc in progress is
// finished first) and returns Err. It does not close the descriptor.
func (h *Handler) Stop() error {
	h.cancel()
	h.wg.Wait()
	return h.Err()
}
