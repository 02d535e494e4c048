package projection

import (
	"bytes"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/userstream/userstream/envelope"
)

// Validator compiles the JSON Schema of an event type (schema/<type>.json)
// and returns a function that checks an event value against it, formats
// included. Consumers' tests and ours use it to hold events to the contract.
func Validator(eventType string) (func(value []byte) error, error) {
	name := "schema/" + eventType + ".json"
	f, err := envelope.Schemas.Open(name)
	if err != nil {
		return nil, fmt.Errorf("no schema for %s: %w", eventType, err)
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	s, err := c.Compile(name)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	return func(value []byte) error {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
		if err != nil {
			return fmt.Errorf("event value is not JSON: %w", err)
		}
		return s.Validate(inst)
	}, nil
}
