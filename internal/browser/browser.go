// Package browser drives a real headless Chromium (Debian's chromium,
// through the DevTools protocol with chromedp) for tests that must see a
// page as people do: every request it makes, every request that failed,
// every console error and uncaught exception, the DOM after scripts, and
// a screenshot.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Path finds the browser: $KHARNESS_CHROMIUM, then chromium on the PATH.
func Path() (string, error) {
	if p := os.Getenv("KHARNESS_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no chromium on the PATH (kharness doctor --install installs Debian's)")
}

// Browser is one headless Chromium with a fresh profile.
type Browser struct {
	ctx    context.Context
	cancel []context.CancelFunc

	mu       sync.Mutex
	requests []string
	failed   []string
	errors   []string
}

// Open starts Chromium with a fresh profile under profileDir and the
// flags that work in this project's containers (no sandbox as root, no
// GPU, no background traffic of its own).
func Open(ctx context.Context, profileDir string) (*Browser, error) {
	path, err := Path()
	if err != nil {
		return nil, err
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profileDir),
		chromedp.WindowSize(1400, 1000),
	}
	b := &Browser{}
	actx, c1 := chromedp.NewExecAllocator(ctx, opts...)
	bctx, c2 := chromedp.NewContext(actx)
	b.ctx, b.cancel = bctx, []context.CancelFunc{c2, c1}
	listen := func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *network.EventLoadingFailed:
			b.failed = append(b.failed, fmt.Sprintf("%s: %s", e.RequestID, e.ErrorText))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				msg := ""
				for _, a := range e.Args {
					msg += fmt.Sprintf(" %v", a.Value)
				}
				b.errors = append(b.errors, "console.error:"+msg)
			}
		case *runtime.EventExceptionThrown:
			b.errors = append(b.errors, fmt.Sprintf("exception: %s (%s:%d)", e.ExceptionDetails.Text, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber))
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				b.errors = append(b.errors, fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	}
	err = chromedp.Listen(bctx, listen)
	if err == nil {
		_, err = chromedp.Call(bctx, network.Enable, network.EnableParams{})
	}
	if err == nil {
		_, err = chromedp.Call(bctx, cdplog.Enable, cdp.Empty{})
	}
	if err == nil {
		_, err = chromedp.Call(bctx, runtime.Enable, cdp.Empty{})
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return b, nil
}

// Load navigates to url and waits for the document and a quiet moment
// (late requests and console errors are caught too).
func (b *Browser) Load(url string) error {
	err := chromedp.Do(b.ctx, chromedp.Navigate(url), chromedp.WaitReady("body"), chromedp.Sleep(500*time.Millisecond))
	if err != nil {
		return fmt.Errorf("load %s: %w", url, err)
	}
	return nil
}

// Eval evaluates a JavaScript expression in b's page into a T.
func Eval[T any](b *Browser, js string) (T, error) {
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		return v, fmt.Errorf("eval %q: %w", js, err)
	}
	return v, nil
}

// Screenshot writes a PNG of the whole page.
func (b *Browser) Screenshot(path string) error {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

// Requests are the URLs the page asked for, in order.
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...)
}

// Failed are the requests that failed.
func (b *Browser) Failed() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.failed...)
}

// Errors are the console errors, uncaught exceptions and error log
// entries (a blocked resource, a CSP violation) seen so far.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// Close stops the browser.
func (b *Browser) Close() {
	for _, c := range b.cancel {
		c()
	}
}
