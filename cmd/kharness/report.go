package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/known"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/report"
)

// reportCmd writes the nightly report from the history index, importing
// the named run directories first.
func reportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var h historyFlags
	h.register(fs)
	out := fs.String("o", "results/report", "directory for index.html and summary.md")
	runs := fs.Int("runs", 20, "runs shown in strips and trends")
	title := fs.String("title", "kharness nightly", "the report's title")
	copyLogs := fs.Bool("copy-logs", false, "copy the shown runs' cell logs into the report directory (to publish it alone)")
	summary := fs.String("summary", "", "also append summary.md here (e.g. $GITHUB_STEP_SUMMARY)")
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	ctx, stop := signalContext(stderr, nil)
	defer stop()
	start := time.Now()
	db, err := history.Open(ctx, h.db)
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	defer db.Close()
	if fs.NArg() > 0 {
		if _, err := db.Import(ctx, fs.Args(), nil); err != nil {
			return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
		}
	}
	ks, err := known.Load(h.known)
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "%w", err))
	}
	d, err := report.Build(ctx, db, ks, report.Options{Title: *title, Runs: *runs, Out: *out, CopyLogs: *copyLogs, KnownPath: h.known})
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	if err := d.Write(*out); err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	if *summary != "" {
		f, err := os.OpenFile(*summary, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			err = d.Markdown(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fail(stderr, outcome.Errorf(outcome.Infra, "summary: %w", err))
		}
	}
	fmt.Fprintf(stdout, "report: %s (%d runs, %d open regression(s), %.2fs)\n", filepath.Join(*out, "index.html"), d.TotalRuns, len(d.Regs), time.Since(start).Seconds())
	return 0
}
