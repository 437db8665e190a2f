package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/merge"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
)

// mergeCmd merges shard run directories into one run under -o and exits
// with that run's code, as the unsharded run would have.
func mergeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("o", "results", "results directory the merged run goes in")
	id := fs.String("id", "", "the merged run's id (default: first start and a digest of the shards)")
	if err := fs.Parse(args); err != nil {
		return outcome.ConfigError.ExitCode()
	}
	if fs.NArg() == 0 {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "merge: name the shards' run directories"))
	}
	parts, err := merge.Read(fs.Args())
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.ConfigError, "%w", err))
	}
	if *id == "" {
		*id = merge.ID(parts)
	}
	r, dir, err := merge.Write(parts, *root, *id)
	if err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	if err := cache.Symlink(r.ID, filepath.Join(*root, "latest")); err != nil {
		return fail(stderr, outcome.Errorf(outcome.Infra, "%w", err))
	}
	results.Summary(stdout, r)
	fmt.Fprintf(stdout, "merged %d shard(s): %s\n", len(parts), dir)
	return r.Outcome.ExitCode()
}
