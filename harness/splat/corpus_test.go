package splat

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The corpus: every testdata/*.log is a console or kernel log with its
// expectations in a header, then a blank line, then the log as captured:
//
//	TITLE: BUG: kernel NULL pointer dereference in lkdtm_EXCEPTION   (Most's title; "none" for a clean log)
//	KIND: oops                                                       (Most's kind; "none")
//	FATAL: true                                                      (Most's Fatal)
//	BLAME: selftest/oops                                             (the test that was running, if any)
//	SOURCE: real                                                     (real: captured from a kharness boot; synthetic: written by hand)
//	TARGET: x86_64                                                   (i386-highmem, x86_64 or x86_64-debug)
//	ORIGIN: kharness run --target x86_64 --suite 'selftest:^oops$'   (how to get it again, for real logs)
//	REPORT: line 154 (text 152-180): oops, fatal: BUG: kernel NULL pointer dereference in lkdtm_EXCEPTION
//	REPORT: line 197 (text 197-198): panic, fatal: Kernel panic - not syncing: Fatal exception
//
// REPORT lines are every report Parse finds, in order: the header's line,
// the first and last log lines of its Text, kind, Fatal and title. Line
// numbers count from the first line after the blank line.
//
// TITLE, KIND, FATAL and REPORT are what the parser says: after a change
// to the rules, `go test ./harness/splat -update` rewrites them (review
// the diff: every change must be one a kernel developer agrees with).
// BLAME, SOURCE, TARGET and ORIGIN are facts about the capture and are
// kept. -capture imports a log from a kharness results directory (see
// HACKING.md, "Add a splat class").
var (
	update  = flag.Bool("update", false, "rewrite the testdata headers from what the parser says")
	capture = flag.String("capture", "", "import a log into testdata: a results cell directory (results/<id>/cells/<cell>)")
	asName  = flag.String("name", "", "with -capture: the testdata file name, without .log")
	kmsgOf  = flag.String("kmsg", "", "with -capture: take this test's (suite/test) kernel log lines from results.json instead of console.log")
)

const corpusDir = "testdata"

var (
	targets      = []string{"i386-highmem", "x86_64", "x86_64-debug"}
	sources      = []string{"real", "synthetic"}
	blameRe      = regexp.MustCompile(`^[\w.-]+/[\w.-]+$`)
	configFlagRe = regexp.MustCompile(` -c \S+`)
	reportR      = regexp.MustCompile(`^line (\d+) \(text (\d+)-(\d+)\): ([\w-]+), (fatal|not fatal): (.+)$`)
)

// corpusFile is one parsed testdata file.
type corpusFile struct {
	name   string
	fields map[string][]string // header key → values, in order
	body   []byte
}

func readCorpusFile(path string) (*corpusFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	head, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%s: no blank line after the header", path)
	}
	f := &corpusFile{name: filepath.Base(path), fields: map[string][]string{}, body: body}
	for i, l := range strings.Split(string(head), "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok || !slices.Contains(headerKeys, k) {
			return nil, fmt.Errorf("%s:%d: not a header line (%s): %q", path, i+1, strings.Join(headerKeys, ", "), l)
		}
		f.fields[k] = append(f.fields[k], v)
	}
	return f, nil
}

// headerKeys in the order they are written.
var headerKeys = []string{"TITLE", "KIND", "FATAL", "BLAME", "SOURCE", "TARGET", "ORIGIN", "REPORT"}

func (f *corpusFile) get(k string) string {
	if v := f.fields[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (f *corpusFile) encode() []byte {
	var b bytes.Buffer
	for _, k := range headerKeys {
		for _, v := range f.fields[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteByte('\n')
	b.Write(f.body)
	return b.Bytes()
}

// parsed sets the header fields that come from the parser.
func (f *corpusFile) parsed() {
	rs := Parse(f.body)
	m, ok := Most(rs)
	if !ok {
		f.fields["TITLE"], f.fields["KIND"], f.fields["FATAL"] = []string{"none"}, []string{"none"}, []string{"false"}
	} else {
		f.fields["TITLE"], f.fields["KIND"], f.fields["FATAL"] = []string{m.Title}, []string{string(m.Kind)}, []string{strconv.FormatBool(m.Fatal)}
	}
	lines := strings.Split(strings.TrimSuffix(string(f.body), "\n"), "\n")
	f.fields["REPORT"] = nil
	for _, r := range rs {
		first, last := textSpan(lines, r)
		fatal := "not fatal"
		if r.Fatal {
			fatal = "fatal"
		}
		f.fields["REPORT"] = append(f.fields["REPORT"],
			fmt.Sprintf("line %d (text %d-%d): %s, %s: %s", r.Line, first, last, r.Kind, fatal, r.Title))
	}
}

// textSpan finds the log lines (1-based) of the first and last line of
// r's Text: Text is the report's lines as logged, cleaned, in order.
func textSpan(lines []string, r Report) (first, last int) {
	tl := strings.Split(r.Text, "\n")
	_, hdr := headerOf(r)
	first, last = r.Line, r.Line
	j := hdr - 1
	for i := r.Line - 1; i >= 1 && j >= 0; i-- {
		if clean(lines[i-1]) == tl[j] {
			first = i
			j--
		}
	}
	j = hdr + 1
	for i := r.Line + 1; i <= len(lines) && j < len(tl); i++ {
		if clean(lines[i-1]) == tl[j] {
			last = i
			j++
		}
	}
	return first, last
}

func corpusFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s: %v", corpusDir, err)
	}
	return files
}

// TestCorpus checks every testdata log against its header.
func TestCorpus(t *testing.T) {
	if *capture != "" {
		if err := captureLog(*capture, *asName, *kmsgOf); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range corpusFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := readCorpusFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if s := f.get("SOURCE"); !slices.Contains(sources, s) {
				t.Errorf("SOURCE %q, want one of %v", s, sources)
			}
			if s := f.get("TARGET"); !slices.Contains(targets, s) {
				t.Errorf("TARGET %q, want one of %v", s, targets)
			}
			if b := f.get("BLAME"); b != "" && !blameRe.MatchString(b) {
				t.Errorf("BLAME %q, want suite/test", b)
			}
			if f.get("SOURCE") == "real" && f.get("ORIGIN") == "" {
				t.Errorf("a real log names its ORIGIN")
			}
			want := &corpusFile{name: f.name, fields: map[string][]string{}, body: f.body}
			for k, v := range f.fields {
				want.fields[k] = v
			}
			want.parsed()
			if *update {
				if err := os.WriteFile(path, want.encode(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, k := range []string{"TITLE", "KIND", "FATAL", "REPORT"} {
				if got, exp := f.fields[k], want.fields[k]; !slices.Equal(got, exp) {
					t.Errorf("%s: the file says\n\t%s\nthe parser says\n\t%s", k, strings.Join(got, "\n\t"), strings.Join(exp, "\n\t"))
				}
			}
			for _, l := range f.fields["REPORT"] {
				if !reportR.MatchString(l) {
					t.Errorf("REPORT %q does not read as %s", l, reportR)
				}
			}
			for _, r := range Parse(f.body) {
				if n := strings.Count(r.Text, "\n") + 1; n > maxLines {
					t.Errorf("%s: Text has %d lines, more than %d", r.Title, n, maxLines)
				}
			}
		})
	}
}

// captureLog writes testdata/<name>.log from a kharness results cell: its
// console.log, or one test's kernel log lines (kmsg) from results.json.
// The parser's fields are filled by the TestCorpus pass that follows.
func captureLog(cellDir, name, kmsgTest string) error {
	if name == "" {
		return fmt.Errorf("-capture needs -name")
	}
	cellDir = filepath.Clean(cellDir)
	runDir := filepath.Dir(filepath.Dir(cellDir))
	data, err := os.ReadFile(filepath.Join(runDir, "results.json"))
	if err != nil {
		return err
	}
	var run struct {
		ID    string `json:"id"`
		Cells []struct {
			ID         string   `json:"id"`
			Target     string   `json:"target"`
			PatchSets  []string `json:"patchsets"`
			Rerun      string   `json:"rerun"`
			Dir        string   `json:"dir"`
			BlameSuite string   `json:"blame_suite"`
			BlameTest  string   `json:"blame_test"`
			Crash      *Report  `json:"crash"`
			Tests      []struct {
				Suite string   `json:"suite"`
				Name  string   `json:"name"`
				Crash string   `json:"crash"`
				Kmsg  []string `json:"kmsg"`
			} `json:"tests"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(data, &run); err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	for _, c := range run.Cells {
		if filepath.Base(c.Dir) != filepath.Base(cellDir) {
			continue
		}
		// The rerun command, without the machine's config path.
		rerun := configFlagRe.ReplaceAllString(c.Rerun, "")
		f := &corpusFile{fields: map[string][]string{
			"SOURCE": {"real"},
			"TARGET": {c.Target},
			"ORIGIN": {fmt.Sprintf("%s (run %s, cell %s)", rerun, run.ID, c.ID)},
		}}
		blame := ""
		if c.BlameTest != "" {
			blame = c.BlameSuite + "/" + c.BlameTest
		}
		if kmsgTest != "" {
			found := false
			for _, tc := range c.Tests {
				if tc.Suite+"/"+tc.Name == kmsgTest {
					f.body = []byte(strings.Join(tc.Kmsg, "\n") + "\n")
					blame, found = kmsgTest, true
					f.fields["ORIGIN"][0] += ", kmsg of " + kmsgTest + " in results.json"
				}
			}
			if !found {
				return fmt.Errorf("no test %s in cell %s", kmsgTest, c.ID)
			}
		} else {
			log, err := os.ReadFile(filepath.Join(cellDir, "console.log"))
			if err != nil {
				return err
			}
			// Only what the parser strips anyway: the CR of CRLF.
			f.body = bytes.ReplaceAll(log, []byte("\r\n"), []byte("\n"))
			if blame == "" && c.Crash != nil {
				// A crash the guest lived through: the test whose kernel log holds it.
				for _, tc := range c.Tests {
					if tc.Crash == c.Crash.Title {
						blame = tc.Suite + "/" + tc.Name
						break
					}
				}
			}
		}
		if blame != "" {
			f.fields["BLAME"] = []string{blame}
		}
		f.parsed()
		return os.WriteFile(filepath.Join(corpusDir, name+".log"), f.encode(), 0o644)
	}
	return fmt.Errorf("no cell %s in %s", filepath.Base(cellDir), runDir)
}
