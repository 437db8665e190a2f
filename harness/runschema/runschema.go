// Package runschema holds the JSON Schema of results.json
// (kharness.run/v1) and checks records against it, so that a record
// history imports, or a tool outside kharness reads, is known to have
// the shape the docs promise.
package runschema

import (
	"bytes"
	_ "embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSON is the schema itself, kharness.run.v1.schema.json.
//
//go:embed kharness.run.v1.schema.json
var JSON []byte

// URL is the schema's $id.
const URL = "https://github.com/kharness/kharness/harness/runschema/kharness.run.v1.schema.json"

// compiled is the schema, compiled once: it never changes at run time.
var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSON))
	if err != nil {
		return nil, fmt.Errorf("run schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(URL, doc); err != nil {
		return nil, fmt.Errorf("run schema: %w", err)
	}
	return c.Compile(URL)
})

// Validate checks a results.json against the schema.
func Validate(data []byte) error {
	s, err := compiled()
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("does not match schema kharness.run/v1: %w", err)
	}
	return nil
}
