package report

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/go-analyze/charts"

	"github.com/kharness/kharness/harness/history"
	"github.com/kharness/kharness/harness/outcome"
)

// MetricTrend is a trend of suite metrics: every (cell, test) that
// records one of the metrics is a series.
type MetricTrend struct {
	ID, Title, Unit string
	Metrics         []string
}

// MetricTrends are the suites' measurements the report plots.
var MetricTrends = []MetricTrend{
	{"umcg-vs-futex", "UMCG vs futex hand-offs (umcg/throughput)", "context switches/s", []string{"umcg_switches_per_s", "futex_switches_per_s"}},
	{"highmem", "highmem pages mapped (kmaplocal)", "pages", []string{"highmem_pages"}},
	{"faults", "userfaultfd faults handled (uffd/missing-storm)", "faults", []string{"faults"}},
}

func metricNames() []string {
	var out []string
	for _, t := range MetricTrends {
		out = append(out, t.Metrics...)
	}
	return out
}

// maxSeries keeps a chart readable: the series with the most points win.
const maxSeries = 8

type series struct {
	name   string
	values []float64
	points int
}

// charts draws the trends over the window: boot (wall time of each
// cell's boot, suites included), build (kernels built, not cached),
// suite durations (sum over cells) and the metric trends.
func trends(window []history.RunInfo, cells []history.CellInfo, obs map[history.Key][]history.Obs, metrics []history.Metric) ([]Chart, error) {
	idx := map[string]int{}
	var labels []string
	for i, r := range window {
		idx[r.ID] = i
		labels = append(labels, shortRun(r.ID))
	}
	null := charts.GetNullValue()
	newSeries := func(name string) *series {
		s := &series{name: name, values: make([]float64, len(window))}
		for i := range s.values {
			s.values[i] = null
		}
		return s
	}
	set := func(m map[string]*series, name string, run string, v float64, add bool) {
		i, ok := idx[run]
		if !ok {
			return
		}
		s := m[name]
		if s == nil {
			s = newSeries(name)
			m[name] = s
		}
		if s.values[i] == null {
			s.values[i] = 0
			s.points++
		}
		if add {
			s.values[i] += v
		} else {
			s.values[i] = v
		}
	}
	boot, build, suites := map[string]*series{}, map[string]*series{}, map[string]*series{}
	for _, c := range cells {
		if c.Outcome == outcome.Infra || c.Outcome == outcome.Interrupted || c.Outcome == outcome.Incomplete {
			continue // the host's failure, not the kernel's time
		}
		if c.BootSeconds > 0 {
			set(boot, c.CellID, c.RunID, c.BootSeconds, false)
		}
		if c.BuildSeconds > 0 && !c.KernelCached {
			set(build, c.CellID, c.RunID, c.BuildSeconds, false)
		}
	}
	for k, os := range obs {
		if k.Suite == history.KernelSuite {
			continue
		}
		for _, o := range os {
			if o.Status != history.Error {
				set(suites, k.Suite, o.Run.ID, float64(o.DurationMS)/1000, true)
			}
		}
	}
	var out []Chart
	add := func(id, title, unit, note string, m map[string]*series) error {
		svg, err := lineSVG(title, unit, labels, m)
		if err != nil {
			return fmt.Errorf("report: chart %s: %w", id, err)
		}
		if len(m) > 0 {
			note = "" // the note explains an empty chart
		}
		out = append(out, Chart{ID: id, Title: title, Note: note, SVG: svg})
		return nil
	}
	if err := add("boot", "boot time per cell (QEMU start to power-off, suites included)", "s", "", boot); err != nil {
		return nil, err
	}
	if err := add("build", "kernel build time (kernels built, not taken from the cache)", "s", "no build in these runs: every kernel came from the cache", build); err != nil {
		return nil, err
	}
	if err := add("suites", "suite durations (sum of test times over every cell)", "s", "", suites); err != nil {
		return nil, err
	}
	for _, mt := range MetricTrends {
		m := map[string]*series{}
		for _, x := range metrics {
			for _, name := range mt.Metrics {
				if x.Name == name {
					set(m, fmt.Sprintf("%s %s/%s %s", x.CellID, x.Suite, x.Test, strings.TrimSuffix(name, "_per_s")), x.RunID, x.Value, false)
				}
			}
		}
		if err := add(mt.ID, mt.Title, mt.Unit, "", m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// shortRun is a run id as an axis label: month-day hour:minute.
func shortRun(id string) string {
	if len(id) >= 13 && id[8] == '-' {
		return id[4:6] + "-" + id[6:8] + " " + id[9:11] + ":" + id[11:13]
	}
	return id
}

// svgText keeps text the SVG renderer writes verbatim (it does not
// escape) from being markup: the report inlines the SVG as HTML.
func svgText(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '<', '>', '&', '"', '\'':
			return '_'
		}
		return r
	}, s)
}

// lineSVG renders one line chart as SVG; a chart with no data says so.
func lineSVG(title, unit string, labels []string, m map[string]*series) (string, error) {
	var ss []*series
	for _, s := range m {
		ss = append(ss, s)
	}
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].points != ss[j].points {
			return ss[i].points > ss[j].points
		}
		return ss[i].name < ss[j].name
	})
	if len(ss) > maxSeries {
		ss = ss[:maxSeries]
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].name < ss[j].name })
	p := charts.NewPainter(charts.PainterOptions{OutputFormat: charts.ChartOutputSVG, Width: 640, Height: 240 + 18*((len(ss)+1)/2)})
	var data [][]float64
	var names []string
	for _, s := range ss {
		data = append(data, s.values)
		names = append(names, svgText(s.name))
	}
	for i := range labels {
		labels[i] = svgText(labels[i])
	}
	title, unit = svgText(title), svgText(unit)
	if len(data) == 0 || len(labels) == 0 {
		// Nothing recorded in the window: an empty chart with the title.
		data, names = [][]float64{make([]float64, max(len(labels), 1))}, []string{"no data in these runs"}
		if len(labels) == 0 {
			labels = []string{"-"}
		}
	}
	opt := charts.NewLineChartOptionWithData(data)
	opt.Title.Text = title
	opt.Title.Subtext = unit
	opt.XAxis.Labels = labels
	opt.Legend.SeriesNames = names
	opt.Legend.Offset = charts.OffsetStr{Top: charts.PositionBottom}
	opt.Padding = charts.NewBoxEqual(16)
	// Durations and counts start at zero: a flat line reads as flat.
	opt.YAxis = []charts.YAxisOption{{Min: charts.Ptr(0.0)}}
	if len(labels) > 8 {
		opt.XAxis.LabelRotation = charts.DegreesToRadians(30)
	}
	opt.ValueFormatter = func(f float64) string {
		switch {
		case math.Abs(f) >= 1e6:
			return fmt.Sprintf("%.1fM", f/1e6)
		case math.Abs(f) >= 1e4:
			return fmt.Sprintf("%.0fk", f/1e3)
		}
		return strconv.FormatFloat(f, 'g', 3, 64)
	}
	if err := p.LineChart(opt); err != nil {
		return "", err
	}
	b, err := p.Bytes()
	if err != nil {
		return "", err
	}
	return string(b), nil
}
