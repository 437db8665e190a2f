package devloop

import (
	"context"
	"fmt"
	"strings"

	"github.com/kharness/kharness/harness/config"
	"github.com/kharness/kharness/harness/internal/git"
	"github.com/kharness/kharness/harness/outcome"
	"github.com/kharness/kharness/harness/results"
	"github.com/kharness/kharness/harness/run"
)

// GitRange walks the commits of a kernel repository, A..B along the first
// parent: position 0 is A, position i the i-th commit after it. Each is
// built from the repository's one work tree with the cell's patch sets
// stacked on it, so a step rebuilds what the commit touched.
type GitRange struct {
	p        *run.Pipeline
	cell     config.MatrixCell
	repo     string
	commits  []string // commits[0] = A
	subjects []string
}

// LoadGitRange lists from..to in repo.
func LoadGitRange(ctx context.Context, p *run.Pipeline, c config.MatrixCell, repo, from, to string) (*GitRange, error) {
	out, err := git.Run(ctx, repo, git.Opts{}, "rev-list", "--reverse", "--first-parent", "--format=%H %s", "--no-commit-header", from+".."+to)
	if err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "git range %s..%s in %s: %w", from, to, repo, err)
	}
	base, err := git.Run(ctx, repo, git.Opts{}, "rev-parse", "--verify", from+"^{commit}")
	if err != nil {
		return nil, outcome.Errorf(outcome.ConfigError, "git range: %s: %w", from, err)
	}
	g := &GitRange{p: p, cell: c, repo: repo, commits: []string{strings.TrimSpace(base)}, subjects: []string{from}}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		id, subj, _ := strings.Cut(l, " ")
		g.commits, g.subjects = append(g.commits, id), append(g.subjects, subj)
	}
	if len(g.commits) < 2 {
		return nil, outcome.Errorf(outcome.ConfigError, "git range %s..%s in %s has no commits", from, to, repo)
	}
	return g, nil
}

// Len is the number of commits after A.
func (g *GitRange) Len() int { return len(g.commits) - 1 }

// Name says which commit position i is.
func (g *GitRange) Name(i int) string { return fmt.Sprintf("%.12s %s", g.commits[i], g.subjects[i]) }

// Label names the range.
func (g *GitRange) Label() string {
	return fmt.Sprintf("%.12s..%.12s", g.commits[0], g.commits[len(g.commits)-1])
}

// Base is the cell the commits are built in.
func (g *GitRange) Base() config.MatrixCell { return g.cell }

// Pipeline runs the steps.
func (g *GitRange) Pipeline() *run.Pipeline { return g.p }

// Subject is commit i's.
func (g *GitRange) Subject(i int) (string, string) { return g.subjects[i], g.commits[i] }

// Kernel builds commit i with the cell's patch sets.
func (g *GitRange) Kernel(ctx context.Context, i int, c config.MatrixCell, dir string) (*run.Kernel, error) {
	return g.p.WithSource(g.repo+"@"+g.commits[i]).Kernel(ctx, c, dir)
}

// Run builds commit i and runs the cell's suites on it.
func (g *GitRange) Run(ctx context.Context, i int, store *results.Store, rc *results.Cell) (string, error) {
	return runWalk(ctx, g, i, store, rc)
}
