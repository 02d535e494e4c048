package envelope

import (
	"errors"
	"time"
)

// Attributes are the headers a reader of events needs, as text.
type Attributes struct {
	ID, Type, Source, Subject, LSN string
	Time                           time.Time
	time                           string
}

// Set takes one header; a reader calls it for each header of a record and
// then Check. Headers it does not know are ignored.
func (a *Attributes) Set(key string, value []byte) {
	switch key {
	case ID:
		a.ID = string(value)
	case Time:
		a.time = string(value)
	case Source:
		a.Source = string(value)
	case Type:
		a.Type = string(value)
	case Subject:
		a.Subject = string(value)
	case LSN:
		a.LSN = string(value)
	}
}

// ErrMissing and ErrTime say what is wrong with a record's headers; they
// name headers, never a value.
var (
	ErrMissing = errors.New("record lacks a " + ID + ", " + Type + " or " + Time + " header")
	ErrTime    = errors.New(Time + " header is not RFC 3339")
)

// Check fails on a record that is not an event (a required header missing)
// or whose time does not parse, and sets Time.
func (a *Attributes) Check() error {
	if a.ID == "" || a.Type == "" || a.time == "" {
		return ErrMissing
	}
	t, err := time.Parse(time.RFC3339Nano, a.time)
	if err != nil {
		return ErrTime
	}
	a.Time = t
	return nil
}
