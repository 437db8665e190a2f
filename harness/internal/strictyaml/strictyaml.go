// Package strictyaml decodes YAML into tagged structs the way every
// kharness file wants it: unknown keys, duplicate keys and wrong types are
// errors with file:line:col, every problem is reported at once (not only
// the first), and the position of each decoded value is kept so that a
// later validation can point at it too. kharness.yaml, suite manifests and
// known-issue files all go through it.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"
)

// Pos is a place in a config file, kept for every decoded value so that
// validation errors can point at the exact line and column.
type Pos struct {
	File   string
	Line   int
	Column int
	Flag   string // the command-line flag the value came from, if any
}

func (p Pos) String() string {
	if p.Flag != "" {
		return p.Flag
	}
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Positions maps a dotted value path ("cells[1].targets[0]") to where it
// was written.
type Positions map[string]Pos

// Decode strictly decodes data, read from file, into v (a pointer to a
// struct) and returns where each value was written.
func Decode(file string, data []byte, v any) (Positions, error) {
	pos := Positions{}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return pos, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	d := &decoder{file: file, pos: pos}
	if root.Kind != 0 {
		d.decode("", &root, reflect.ValueOf(v).Elem())
	}
	return pos, d.errs.ErrorOrNil()
}

// decoder decodes a YAML node tree into tagged structs, rejecting unknown
// keys and wrong types with file:line:col, and collecting every problem
// instead of stopping at the first.
type decoder struct {
	file string
	pos  Positions
	errs *multierror.Error
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = multierror.Append(d.errs, fmt.Errorf("%s:%d:%d: %s", d.file, n.Line, n.Column, fmt.Sprintf(format, args...)))
}

func (d *decoder) at(path string, n *yaml.Node) {
	d.pos[path] = Pos{File: d.file, Line: n.Line, Column: n.Column}
}

func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.at(path, n)
	if sf, ok := v.Addr().Interface().(ScalarForm); ok && n.Kind == yaml.ScalarNode {
		if err := sf.FromScalar(n.Value); err != nil {
			d.errorf(n, "%s: %v", path, err)
		}
		return
	}
	if v.Kind() == reflect.Struct && !implementsUnmarshaler(v) {
		d.decodeStruct(path, n, v)
		if sf, ok := v.Addr().Interface().(ScalarForm); ok && n.Kind == yaml.MappingNode {
			sf.FromMapping()
		}
		return
	}
	if v.Kind() == reflect.Slice && !implementsUnmarshaler(v) && v.Type().Elem().Kind() == reflect.Struct {
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "%s: expected a list, got %s", path, kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", path, i), c, s.Index(i))
		}
		v.Set(s)
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		var te *yaml.TypeError
		msg := err.Error()
		if errors.As(err, &te) {
			msg = strings.Join(te.Errors, "; ")
		}
		d.errorf(n, "%s: %s", path, stripLinePrefix(msg))
		return
	}
	if n.Kind == yaml.SequenceNode {
		for i, c := range n.Content {
			d.at(fmt.Sprintf("%s[%d]", path, i), c)
		}
	}
}

func (d *decoder) decodeStruct(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping, got %s", orTop(path), kindName(n))
		return
	}
	fields := map[string]reflect.Value{}
	var names []string
	var collect func(v reflect.Value)
	collect = func(v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")
			if len(tag) > 1 && tag[1] == "inline" && t.Field(i).Type.Kind() == reflect.Struct {
				collect(v.Field(i))
				continue
			}
			if tag[0] == "" || tag[0] == "-" {
				continue
			}
			fields[tag[0]] = v.Field(i)
			names = append(names, tag[0])
		}
	}
	collect(v)
	sort.Strings(names)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fv, ok := fields[k.Value]
		if !ok {
			d.errorf(k, "unknown key %q in %s (allowed: %s)", k.Value, orTop(path), strings.Join(names, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "duplicate key %q in %s", k.Value, orTop(path))
			continue
		}
		seen[k.Value] = true
		d.decode(join(path, k.Value), val, fv)
	}
}

// ScalarForm is a struct that may also be written as a single word (e.g.
// `expect: fail` for `expect: {}`); the mapping form is decoded strictly.
type ScalarForm interface {
	FromScalar(word string) error
	FromMapping() // called after the mapping form was decoded
}

func implementsUnmarshaler(v reflect.Value) bool {
	_, ok := v.Addr().Interface().(yaml.Unmarshaler)
	return ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// stripLinePrefix drops yaml.v3's own "line N: " since we print file:line:col.
func stripLinePrefix(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		if i := strings.Index(msg, ": "); i > 0 {
			return msg[i+2:]
		}
	}
	return msg
}
