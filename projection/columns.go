package projection

import (
	"fmt"
	"slices"
	"time"
)

// column returns the position of a needed column, or an ErrSchema that names
// it and says what is wrong.
func column(rel Relation, name string, types []uint32) (int, error) {
	for i, c := range rel.Columns {
		if c.Name != name {
			continue
		}
		if !slices.Contains(types, c.TypeOID) {
			return 0, fmt.Errorf("%w: column %q has type oid %d, the event needs one of %v", ErrSchema, name, c.TypeOID, types)
		}
		return i, nil
	}
	return 0, fmt.Errorf("%w: column %q is not replicated (dropped, renamed, or missing from the publication's column list)", ErrSchema, name)
}

// The value helpers name the column in every error and never quote the
// value: row contents must not reach logs.

func integer(row Row, i int, name string) (int64, error) {
	v, err := row.Value(i)
	if err != nil {
		return 0, fmt.Errorf("decode column %q: %w", name, err)
	}
	switch n := v.(type) {
	case int16:
		return int64(n), nil
	case int32:
		return int64(n), nil
	case int64:
		return n, nil
	case nil:
		return 0, fmt.Errorf("%w: column %q is NULL", ErrValue, name)
	}
	return 0, fmt.Errorf("%w: column %q decoded as %T, want an integer", ErrSchema, name, v)
}

func text(row Row, i int, name string) (string, error) {
	v, err := row.Value(i)
	if err != nil {
		return "", fmt.Errorf("decode column %q: %w", name, err)
	}
	switch s := v.(type) {
	case string:
		return s, nil
	case nil:
		return "", fmt.Errorf("%w: column %q is NULL", ErrValue, name)
	}
	return "", fmt.Errorf("%w: column %q decoded as %T, want text", ErrSchema, name, v)
}

func timestamp(row Row, i int, name string) (time.Time, error) {
	v, err := row.Value(i)
	if err != nil {
		return time.Time{}, fmt.Errorf("decode column %q: %w", name, err)
	}
	switch t := v.(type) {
	case time.Time:
		// RFC 3339 has four-digit years from 0000: anything else would make
		// an event that breaks its JSON Schema.
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return time.Time{}, fmt.Errorf("%w: column %q is outside RFC 3339's years 0000-9999", ErrValue, name)
		}
		return t, nil
	case nil:
		return time.Time{}, fmt.Errorf("%w: column %q is NULL", ErrValue, name)
	}
	return time.Time{}, fmt.Errorf("%w: column %q decoded as %T (infinite?), want a finite timestamp", ErrValue, name, v)
}
