package results

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/kharness/kharness/harness/cache"
	"github.com/kharness/kharness/harness/outcome"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Props    []junitProp `xml:"properties>property,omitempty"`
	Cases    []junitCase `xml:"testcase"`
}

type junitProp struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes one <testsuite> per cell. Test failures are
// <failure>; harness-side failures (patch, build, boot, ...) are <error>
// on a synthetic test named after the stage, so CI shows them too.
func WriteJUnit(path string, r *Run) error {
	top := junitSuites{Name: "kharness " + r.ID}
	for _, c := range r.Cells {
		s := junitSuite{Name: c.ID, Props: []junitProp{
			{"target", c.Target}, {"patchsets", strings.Join(c.PatchSets, ",")},
			{"outcome", string(c.Outcome)}, {"accel", c.Accel},
		}}
		for _, t := range c.Tests {
			jc := junitCase{Name: t.Name, Classname: c.ID + "." + t.Suite, Time: fmt.Sprintf("%.3f", float64(t.DurationMS)/1000)}
			switch t.Outcome {
			case outcome.Pass:
			case outcome.Skip:
				jc.Skipped = &junitMessage{Message: firstLine(t.Message)}
				s.Skipped++
			case outcome.NotRun:
				jc.Skipped = &junitMessage{Message: "not run: " + firstLine(t.Message)}
				s.Skipped++
			default:
				if t.Known != "" {
					// Recorded, not counted: CI shows it skipped, with why.
					jc.Skipped = &junitMessage{Message: fmt.Sprintf("known issue %s (%s): %s", t.Known, t.Outcome, firstLine(t.Message))}
					jc.SystemOut = t.Message
					s.Skipped++
					break
				}
				expected := c.Expect != nil && c.Outcome == outcome.ExpectedFail
				if expected {
					jc.SystemOut = "expected failure (" + string(t.Outcome) + "): " + t.Message
				} else {
					jc.Failure = &junitMessage{Message: firstLine(t.Message), Type: string(t.Outcome),
						Text: t.Message + "\n" + strings.Join(t.Kmsg, "\n")}
					s.Failures++
				}
			}
			s.Cases = append(s.Cases, jc)
		}
		if c.Outcome != outcome.Pass && c.Outcome != outcome.ExpectedFail && c.Stage != "tests" {
			stage := c.Stage
			if stage == "" {
				stage = "cell"
			}
			jc := junitCase{Name: stage, Classname: c.ID + ".kharness", Time: "0"}
			text := c.Reason
			if c.Crash != nil {
				text += "\n\n" + c.Crash.Text
			}
			if c.Reproducer != "" {
				text += "\n\nreproduce: " + c.Reproducer
			}
			jc.Error = &junitMessage{Message: firstLine(c.Reason), Type: string(c.Outcome), Text: text}
			s.Errors++
			s.Cases = append(s.Cases, jc)
		}
		s.Tests = len(s.Cases)
		top.Tests += s.Tests
		top.Failures += s.Failures
		top.Errors += s.Errors
		top.Skipped += s.Skipped
		top.Suites = append(top.Suites, s)
	}
	b, err := xml.MarshalIndent(top, "", "  ")
	if err != nil {
		return err
	}
	return cache.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
