package report

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"io"
	"os"
	"path/filepath"
	"text/template"

	"github.com/kharness/kharness/harness/cache"
)

//go:embed templates
var templates embed.FS

// marks are the Markdown summary's status marks.
var marks = map[string]string{"pass": "✅", "fail": "❌", "xfail": "☑️", "error": "⚠️", "miss": "⏸️", "skip": "⏭️", "none": ""}

func htmlTemplate() (*htmltemplate.Template, error) {
	// The charts are SVG this package rendered from numbers and from
	// names stripped of markup characters (svgText), so they are trusted
	// as HTML.
	return htmltemplate.New("index.html.tmpl").Funcs(htmltemplate.FuncMap{
		"svg": func(s string) htmltemplate.HTML { return htmltemplate.HTML(s) },
	}).ParseFS(templates, "templates/index.html.tmpl")
}

// HTML writes index.html.
func (d *Data) HTML(w io.Writer) error {
	t, err := htmlTemplate()
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return t.Execute(w, d)
}

// Markdown writes summary.md.
func (d *Data) Markdown(w io.Writer) error {
	t, err := template.New("summary.md.tmpl").Funcs(template.FuncMap{
		"mark": func(css string) string { return marks[css] },
	}).ParseFS(templates, "templates/summary.md.tmpl")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return t.Execute(w, d)
}

// Write writes dir/index.html and dir/summary.md.
func (d *Data) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var h, m bytes.Buffer
	if err := d.HTML(&h); err != nil {
		return fmt.Errorf("report: index.html: %w", err)
	}
	if err := d.Markdown(&m); err != nil {
		return fmt.Errorf("report: summary.md: %w", err)
	}
	if err := cache.WriteFile(filepath.Join(dir, "index.html"), h.Bytes()); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := cache.WriteFile(filepath.Join(dir, "summary.md"), m.Bytes()); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
