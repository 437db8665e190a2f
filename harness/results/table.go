package results

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/kharness/kharness/harness/outcome"
)

// Summary prints the cell × suite table, then one paragraph per failed
// cell with its reason, the splat title and a reproducer.
func Summary(w io.Writer, r *Run) {
	suites := map[string]bool{}
	for _, c := range r.Cells {
		for _, s := range c.Suites {
			name, _, _ := strings.Cut(s, ":")
			suites[name] = true
		}
	}
	var cols []string
	for s := range suites {
		cols = append(cols, s)
	}
	sort.Strings(cols)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CELL\tPATCHSETS\tACCEL\tKERNEL\t%s\tOUTCOME\n", strings.Join(cols, "\t"))
	for _, c := range r.Cells {
		kernel := "-"
		switch {
		case c.KernelCached:
			kernel = "cached"
		case c.BuildSeconds > 0:
			kernel = fmt.Sprintf("built %.0fs", c.BuildSeconds)
		}
		row := []string{c.ID, patchList(c.PatchSets), dash(c.Accel), kernel}
		for _, s := range cols {
			row = append(row, suiteCell(c, s))
		}
		out := string(c.Outcome)
		if c.Expect != nil {
			out += " (expected fail)"
		}
		row = append(row, out)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	Timings(w, r)
	for _, c := range r.Cells {
		if c.Outcome == outcome.Pass || c.Outcome == outcome.ExpectedFail {
			continue
		}
		fmt.Fprintf(w, "\n%s: %s", c.ID, c.Outcome)
		if c.Stage != "" {
			fmt.Fprintf(w, " at stage %s", c.Stage)
		}
		fmt.Fprintln(w)
		if c.Reason != "" {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(c.Reason, "\n", "\n  "))
		}
		if c.BlameTest != "" && c.Crash != nil {
			fmt.Fprintf(w, "  while running %s/%s\n", c.BlameSuite, c.BlameTest)
		}
		for _, t := range c.Tests {
			if t.Outcome != outcome.Pass && t.Outcome != outcome.Skip && t.Known == "" {
				fmt.Fprintf(w, "  %s/%s: %s: %s\n", t.Suite, t.Name, t.Outcome, firstLine(t.Message))
			}
		}
		if c.Reproducer != "" {
			fmt.Fprintf(w, "  reproduce the boot: (cd %s && %s)\n", c.Dir, c.Reproducer)
		}
		if c.Rerun != "" {
			fmt.Fprintf(w, "  rerun the cell: %s\n", c.Rerun)
		}
	}
	fmt.Fprintf(w, "\nrun %s: %s (exit %d) — %s\n", r.ID, r.Outcome, r.Outcome.ExitCode(), r.Outcome.Description())
}

func suiteCell(c *Cell, suite string) string {
	pass, fail, skip, known, total := 0, 0, 0, 0, 0
	worst := outcome.Pass
	for _, t := range c.Tests {
		if t.Suite != suite {
			continue
		}
		total++
		switch {
		case t.Outcome == outcome.Pass:
			pass++
		case t.Outcome == outcome.Skip || t.Outcome == outcome.NotRun:
			skip++
		case t.Known != "":
			known++
		default:
			fail++
			worst = outcome.Worst(worst, t.Outcome)
		}
	}
	listed := false
	for _, s := range c.Suites {
		if n, _, _ := strings.Cut(s, ":"); n == suite {
			listed = true
		}
	}
	crashed := c.Crash != nil && c.BlameSuite == suite && c.Raw != outcome.Pass
	switch {
	case !listed:
		return "-"
	case crashed && c.BlameTest != "":
		return fmt.Sprintf("CRASH in %s (%d/%d passed before)", c.BlameTest, pass, total)
	case crashed:
		return "CRASH"
	case total == 0:
		return "not run"
	case fail > 0:
		return fmt.Sprintf("%s %d/%d", strings.ToUpper(string(worst)), fail, total)
	}
	var extra []string
	if skip > 0 {
		extra = append(extra, fmt.Sprintf("%d skip", skip))
	}
	if known > 0 {
		extra = append(extra, fmt.Sprintf("%d known", known))
	}
	if len(extra) > 0 {
		return fmt.Sprintf("pass %d/%d (%s)", pass, total, strings.Join(extra, ", "))
	}
	return fmt.Sprintf("pass %d/%d", pass, total)
}

func patchList(p []string) string {
	if len(p) == 0 {
		return "(none)"
	}
	s := strings.Join(p, "+")
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// stageOrder is the pipeline's order, for the timings table.
var stageOrder = []string{"source", "patch", "kconfig", "build", "initramfs", "boot"}

// Timings prints the seconds each cell spent in each stage, and in each
// suite inside the boot (a dash: cached or not reached).
func Timings(w io.Writer, r *Run) {
	suites := map[string]bool{}
	for _, c := range r.Cells {
		for k := range c.Timings {
			if strings.HasPrefix(k, "suite ") {
				suites[k] = true
			}
		}
	}
	if len(suites) == 0 && !anyTimings(r) {
		return
	}
	var cols []string
	cols = append(cols, stageOrder...)
	var ss []string
	for s := range suites {
		ss = append(ss, s)
	}
	sort.Strings(ss)
	cols = append(cols, ss...)
	fmt.Fprintln(w, "\nstage times (s):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"CELL"}
	for _, c := range cols {
		head = append(head, strings.TrimPrefix(c, "suite "))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, c := range r.Cells {
		row := []string{c.ID}
		for _, col := range cols {
			if v, ok := c.Timings[col]; ok && v >= 0.05 {
				row = append(row, fmt.Sprintf("%.1f", v))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

func anyTimings(r *Run) bool {
	for _, c := range r.Cells {
		if len(c.Timings) > 0 {
			return true
		}
	}
	return false
}
