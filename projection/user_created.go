package projection

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// UserCreated projects inserts into public.users into user.created.v1
// events. The event is built from an allowlist: a struct of exactly the
// three analytical fields, so is_a_dog, api_version and any column added
// later can never reach it, even if the publication were widened.
type UserCreated struct{}

// UserCreatedType is the event's CloudEvents type.
const UserCreatedType = "user.created.v1"

// userCreatedValue is the whole event value: the analytical contract.
type userCreatedValue struct {
	Username    string `json:"username"`
	CountryCode string `json:"country_code"`
	CreatedAt   string `json:"created_at"` // RFC 3339, UTC
}

var (
	integerTypes   = []uint32{pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID}
	textTypes      = []uint32{pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID}
	timestampTypes = []uint32{pgtype.TimestampOID, pgtype.TimestamptzOID}
)

// Table is public.users.
func (UserCreated) Table() (string, string) { return "public", "users" }

// Bind finds id, username, country_code and created_at among the replicated
// columns.
func (UserCreated) Bind(rel Relation) (Binding, error) {
	var b userCreatedBinding
	for _, c := range []struct {
		name  string
		types []uint32
		dst   *int
	}{
		{"id", integerTypes, &b.id},
		{"username", textTypes, &b.username},
		{"country_code", textTypes, &b.countryCode},
		{"created_at", timestampTypes, &b.createdAt},
	} {
		i, err := column(rel, c.name, c.types)
		if err != nil {
			return nil, fmt.Errorf("bind %s to %s.%s: %w", UserCreatedType, rel.Namespace, rel.Name, err)
		}
		*c.dst = i
	}
	return b, nil
}

type userCreatedBinding struct {
	id, username, countryCode, createdAt int
}

func (b userCreatedBinding) Project(op Op, row Row) (Event, bool, error) {
	if op != Insert {
		return Event{}, false, nil
	}
	id, err := integer(row, b.id, "id")
	if err != nil {
		return Event{}, false, err
	}
	var v userCreatedValue
	if v.Username, err = text(row, b.username, "username"); err != nil {
		return Event{}, false, err
	}
	if v.CountryCode, err = text(row, b.countryCode, "country_code"); err != nil {
		return Event{}, false, err
	}
	if err := checkContract(v); err != nil {
		return Event{}, false, err
	}
	createdAt, err := timestamp(row, b.createdAt, "created_at")
	if err != nil {
		return Event{}, false, err
	}
	v.CreatedAt = createdAt.UTC().Format(time.RFC3339Nano)
	value, err := json.Marshal(v)
	if err != nil {
		return Event{}, false, fmt.Errorf("encode %s: %w", UserCreatedType, err)
	}
	subject := strconv.FormatInt(id, 10)
	return Event{Type: UserCreatedType, Subject: subject, Key: []byte(subject), Value: value, OccurredAt: createdAt.UTC()}, true, nil
}

// SourceColumns are the users columns the event is built from: the
// publication's column list, so nothing else leaves PostgreSQL.
func (UserCreated) SourceColumns() []string {
	return []string{"id", "username", "country_code", "created_at"}
}

// checkContract refuses the values the JSON Schema refuses, cheaply: a row
// written around the API's validation must become a dead letter, never an
// event that breaks the contract.
func checkContract(v userCreatedValue) error {
	if n := utf8.RuneCountInString(v.Username); n < 1 || n > 100 {
		return fmt.Errorf("%w: column \"username\" has %d characters, the contract allows 1 to 100", ErrValue, n)
	}
	if c := v.CountryCode; len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
		return fmt.Errorf("%w: column \"country_code\" is not two upper-case letters", ErrValue)
	}
	return nil
}
