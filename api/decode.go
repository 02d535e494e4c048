package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/biter777/countries"

	"github.com/userstream/userstream/userdb"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 64 << 10

const (
	maxUsernameChars = 100
	// seedTimeLayout is the article's format, taken as UTC.
	seedTimeLayout = "2006-01-02 15:04:05"
)

var knownFields = []string{"username", "country_code", "created_at", "is_a_dog"}

// checkContentType accepts application/json with any parameters.
func checkContentType(header string) error {
	if header == "" {
		return &Error{Code: CodeUnsupportedMedia, Detail: "Content-Type must be application/json"}
	}
	mt, _, err := mime.ParseMediaType(header)
	if err != nil || mt != "application/json" {
		return &Error{Code: CodeUnsupportedMedia, Detail: "Content-Type must be application/json"}
	}
	return nil
}

// decodeNewUser parses and validates a POST /users body: exactly one JSON
// object, no unknown or repeated fields, every field checked and every bad
// one named in the error.
func decodeNewUser(body []byte) (userdb.NewUser, error) {
	fields, err := objectFields(body)
	if err != nil {
		return userdb.NewUser{}, err
	}
	var (
		u      userdb.NewUser
		params []InvalidParam
	)
	bad := func(name, reason string) { params = append(params, InvalidParam{Name: name, Reason: reason}) }

	for _, f := range fields.order {
		if !slices.Contains(knownFields, f) {
			bad(f, "unknown field")
		}
	}
	for _, name := range fields.repeated {
		bad(name, "given more than once")
	}

	if raw, ok := fields.values["username"]; !ok {
		bad("username", "required")
	} else if s, reason := decodeString(raw); reason != "" {
		bad("username", reason)
	} else if reason := checkUsername(s); reason != "" {
		bad("username", reason)
	} else {
		u.Username = s
	}

	if raw, ok := fields.values["country_code"]; !ok {
		bad("country_code", "required")
	} else if s, reason := decodeString(raw); reason != "" {
		bad("country_code", reason)
	} else if code, reason := checkCountry(s); reason != "" {
		bad("country_code", reason)
	} else {
		u.CountryCode = code
	}

	if raw, ok := fields.values["created_at"]; !ok {
		bad("created_at", "required")
	} else if s, reason := decodeString(raw); reason != "" {
		bad("created_at", reason)
	} else if t, reason := parseCreatedAt(s); reason != "" {
		bad("created_at", reason)
	} else {
		u.CreatedAt = t
	}

	if raw, ok := fields.values["is_a_dog"]; ok {
		switch string(raw) {
		case "true":
			u.IsADog = true
		case "false":
		default:
			bad("is_a_dog", "must be true or false")
		}
	}

	if len(params) > 0 {
		return userdb.NewUser{}, &Error{Code: CodeInvalid, Detail: "the request has invalid fields", Params: params}
	}
	return u, nil
}

type objectFieldSet struct {
	order    []string
	values   map[string]json.RawMessage
	repeated []string
}

// objectFields splits a JSON object into its raw members, refusing anything
// that is not exactly one object.
func objectFields(body []byte) (objectFieldSet, error) {
	invalid := func(detail string) error { return &Error{Code: CodeInvalid, Detail: detail} }
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return objectFieldSet{}, invalid("the body is empty; send a JSON object")
	}
	if !json.Valid(trimmed) {
		var v any
		if err := json.Unmarshal(trimmed, &v); err != nil {
			if se, ok := err.(*json.SyntaxError); ok {
				return objectFieldSet{}, invalid(fmt.Sprintf("malformed JSON at byte %d", se.Offset))
			}
		}
		return objectFieldSet{}, invalid("malformed JSON, or more than one JSON value")
	}
	if trimmed[0] != '{' {
		return objectFieldSet{}, invalid("the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil { // the opening brace
		return objectFieldSet{}, invalid("malformed JSON")
	}
	fs := objectFieldSet{values: map[string]json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return objectFieldSet{}, invalid("malformed JSON")
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return objectFieldSet{}, invalid("malformed JSON")
		}
		if _, dup := fs.values[key]; dup {
			fs.repeated = append(fs.repeated, key)
			continue
		}
		fs.order = append(fs.order, key)
		fs.values[key] = raw
	}
	return fs, nil
}

// decodeString returns the string in raw, or why it is not one. encoding/json
// replaces invalid UTF-8 and lone surrogates with U+FFFD silently, so both
// are checked here.
func decodeString(raw json.RawMessage) (string, string) {
	if len(raw) == 0 || raw[0] != '"' {
		if string(raw) == "null" {
			return "", "must be a string, not null"
		}
		return "", "must be a string"
	}
	if !utf8.Valid(raw) {
		return "", "must be valid UTF-8"
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", "must be a string"
	}
	if strings.ContainsRune(s, utf8.RuneError) {
		return "", "must be valid UTF-8 (no lone surrogates or replacement characters)"
	}
	return s, ""
}

func checkUsername(s string) string {
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0:
		return "must not be empty"
	case n > maxUsernameChars:
		return fmt.Sprintf("must be at most %d characters", maxUsernameChars)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "must not contain control characters"
		}
	}
	return ""
}

// checkCountry accepts an assigned ISO 3166-1 alpha-2 code in any case and
// returns it in upper case.
func checkCountry(s string) (string, string) {
	code := strings.ToUpper(s)
	if len(code) != 2 || code[0] < 'A' || code[0] > 'Z' || code[1] < 'A' || code[1] > 'Z' {
		return "", "must be a two-letter ISO 3166-1 alpha-2 code"
	}
	// ByName also resolves names and aliases (UK → GB): only a code that is
	// its own alpha-2 is accepted.
	if c := countries.ByName(code); !c.IsValid() || c.Alpha2() != code {
		return "", "is not an ISO 3166-1 alpha-2 country code"
	}
	return code, ""
}

// parseCreatedAt accepts "YYYY-MM-DD HH:MM:SS" as UTC and RFC 3339 converted
// to UTC; a date that does not exist (2021-02-30) is refused by time.Parse.
func parseCreatedAt(s string) (time.Time, string) {
	t, err := time.Parse(seedTimeLayout, s)
	if err != nil {
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	if err != nil {
		return time.Time{}, `must be "YYYY-MM-DD HH:MM:SS" (UTC) or RFC 3339, and a real date and time`
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, "must be between years 1 and 9999"
	}
	// PostgreSQL's timestamp keeps microseconds.
	return t.Truncate(time.Microsecond), ""
}
