package projection_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/userstream/userstream/projection"
)

// row is a decoded change for unit tests.
type row []any

func (r row) Value(i int) (any, error) { return r[i], nil }

var usersRelation = projection.Relation{Namespace: "public", Name: "users", Columns: []projection.Column{
	{Name: "id", TypeOID: pgtype.Int4OID},
	{Name: "username", TypeOID: pgtype.VarcharOID},
	{Name: "country_code", TypeOID: pgtype.VarcharOID},
	{Name: "created_at", TypeOID: pgtype.TimestampOID},
}}

func bind(t *testing.T, rel projection.Relation) projection.Binding {
	t.Helper()
	b, err := projection.UserCreated{}.Bind(rel)
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	return b
}

func TestUserCreatedProjectsAnInsertIntoExactlyTheThreeAllowedFields(t *testing.T) {
	b := bind(t, usersRelation)
	ev, ok, err := b.Project(projection.Insert, row{int32(42), "jtr", "BE", time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil || !ok {
		t.Fatalf("project: ok=%v err=%v", ok, err)
	}
	if got, want := string(ev.Value), `{"username":"jtr","country_code":"BE","created_at":"2021-01-01T00:00:00Z"}`; got != want {
		t.Errorf("value %s, want %s", got, want)
	}
	if string(ev.Key) != "42" || ev.Subject != "42" || ev.Type != "user.created.v1" {
		t.Errorf("key %q subject %q type %q", ev.Key, ev.Subject, ev.Type)
	}
	validate(t, ev.Value)
}

func TestAColumnAddedToUsersNeverReachesTheEvent(t *testing.T) {
	// As if the publication were widened to every column, and a column added
	// mid-stream: the new relation message carries more columns.
	wide := usersRelation
	wide.Columns = append([]projection.Column{{Name: "is_a_dog", TypeOID: pgtype.BoolOID}}, wide.Columns...)
	wide.Columns = append(wide.Columns,
		projection.Column{Name: "api_version", TypeOID: pgtype.VarcharOID},
		projection.Column{Name: "favourite_food", TypeOID: pgtype.TextOID})
	b := bind(t, wide)
	ev, ok, err := b.Project(projection.Insert, row{true, int64(7), "rex", "FR", time.Date(2022, 2, 3, 4, 5, 6, 789000, time.UTC), "0.1.0", "bones"})
	if err != nil || !ok {
		t.Fatalf("project: ok=%v err=%v", ok, err)
	}
	var fields map[string]any
	if err := json.Unmarshal(ev.Value, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 3 {
		t.Errorf("event has fields %v, want only username, country_code, created_at", fields)
	}
	for _, leaked := range []string{"is_a_dog", "api_version", "favourite_food", "bones", "0.1.0"} {
		if strings.Contains(string(ev.Value), leaked) {
			t.Errorf("event %s carries %q", ev.Value, leaked)
		}
	}
	if fields["created_at"] != "2022-02-03T04:05:06.000789Z" {
		t.Errorf("created_at %v", fields["created_at"])
	}
	validate(t, ev.Value)
}

func TestBindRefusesARelationThatNoLongerCarriesWhatTheEventNeeds(t *testing.T) {
	without := func(name string) projection.Relation {
		r := projection.Relation{Namespace: "public", Name: "users"}
		for _, c := range usersRelation.Columns {
			if c.Name != name {
				r.Columns = append(r.Columns, c)
			}
		}
		return r
	}
	retyped := func(name string, oid uint32) projection.Relation {
		r := projection.Relation{Namespace: "public", Name: "users"}
		for _, c := range usersRelation.Columns {
			if c.Name == name {
				c.TypeOID = oid
			}
			r.Columns = append(r.Columns, c)
		}
		return r
	}
	tests := []struct {
		name   string
		rel    projection.Relation
		column string
	}{
		{"username dropped", without("username"), "username"},
		{"country_code renamed away", without("country_code"), "country_code"},
		{"created_at dropped", without("created_at"), "created_at"},
		{"id dropped", without("id"), "id"},
		{"created_at became text", retyped("created_at", pgtype.TextOID), "created_at"},
		{"username became an integer", retyped("username", pgtype.Int4OID), "username"},
		{"id became uuid", retyped("id", pgtype.UUIDOID), "id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := projection.UserCreated{}.Bind(tc.rel)
			if !errors.Is(err, projection.ErrSchema) {
				t.Fatalf("err = %v, want ErrSchema", err)
			}
			if !strings.Contains(err.Error(), `"`+tc.column+`"`) {
				t.Errorf("error %q does not name column %q", err, tc.column)
			}
		})
	}
}

func TestUpdatesDeletesAndTruncatesMakeNoEvent(t *testing.T) {
	b := bind(t, usersRelation)
	for _, op := range []projection.Op{projection.Update, projection.Delete, projection.Truncate} {
		if _, ok, err := b.Project(op, row{int32(1), "a", "BE", time.Now()}); ok || err != nil {
			t.Errorf("%s: ok=%v err=%v, want no event", op, ok, err)
		}
	}
}

func TestUnusualUsernamesRoundTripThroughTheEventJSON(t *testing.T) {
	b := bind(t, usersRelation)
	for _, name := range []string{
		`quote"inside`, `back\slash`, "emoji 🐕‍🦺", "مرحبا بالعالم", "שלום\u200f", `<script>&amp;</script>`, "tab\tfree? no: \u2028 line sep", "'; DROP TABLE users; --",
	} {
		ev, ok, err := b.Project(projection.Insert, row{int64(1), name, "BE", time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil || !ok {
			t.Fatalf("%q: ok=%v err=%v", name, ok, err)
		}
		var got struct{ Username string }
		if err := json.Unmarshal(ev.Value, &got); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if got.Username != name {
			t.Errorf("round trip %q → %q", name, got.Username)
		}
		validate(t, ev.Value)
	}
}

func TestARowThatCannotMakeAValidEventIsAPoisonRowNotABrokenEvent(t *testing.T) {
	b := bind(t, usersRelation)
	ts := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		row    row
		column string
	}{
		{"a NULL username", row{int32(1), nil, "BE", ts}, "username"},
		{"an empty username", row{int32(1), "", "BE", ts}, "username"},
		{"a username of 101 characters", row{int32(1), strings.Repeat("é", 101), "BE", ts}, "username"},
		{"a lower-case country code", row{int32(1), "jtr", "be", ts}, "country_code"},
		{"a three-letter country code", row{int32(1), "jtr", "BEL", ts}, "country_code"},
		{"a created_at of infinity", row{int32(1), "jtr", "BE", pgtype.Infinity}, "created_at"},
		{"a created_at in the year 10000", row{int32(1), "jtr", "BE", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "created_at"},
		{"a created_at before Christ", row{int32(1), "jtr", "BE", time.Date(-44, 3, 15, 0, 0, 0, 0, time.UTC)}, "created_at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, ok, err := b.Project(projection.Insert, tc.row)
			if ok || !errors.Is(err, projection.ErrValue) || !strings.Contains(err.Error(), tc.column) {
				t.Fatalf("ok=%v err=%v event=%s, want ErrValue naming %s", ok, err, ev.Value, tc.column)
			}
		})
	}
}

func TestTheYearsAtTheEdgesOfRFC3339StillMakeValidEvents(t *testing.T) {
	b := bind(t, usersRelation)
	for _, ts := range []time.Time{time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)} {
		ev, ok, err := b.Project(projection.Insert, row{int32(1), "jtr", "BE", ts})
		if err != nil || !ok {
			t.Fatalf("%s: ok=%v err=%v", ts, ok, err)
		}
		validate(t, ev.Value)
	}
}

func validate(t *testing.T, value []byte) {
	t.Helper()
	check, err := projection.Validator(projection.UserCreatedType)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(value); err != nil {
		t.Errorf("event %s does not match the schema: %v", value, err)
	}
}

func TestTheSchemaRefusesAnEventThatBreaksTheContract(t *testing.T) {
	check, err := projection.Validator(projection.UserCreatedType)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"username":"jtr","country_code":"BE","created_at":"2021-01-01T00:00:00Z","is_a_dog":false}`,
		`{"username":"jtr","country_code":"BE"}`,
		`{"username":"jtr","country_code":"be","created_at":"2021-01-01T00:00:00Z"}`,
		`{"username":"jtr","country_code":"BE","created_at":"2021-01-01 00:00:00"}`,
		`{"username":"","country_code":"BE","created_at":"2021-01-01T00:00:00Z"}`,
	} {
		if err := check([]byte(bad)); err == nil {
			t.Errorf("schema accepts %s", bad)
		}
	}
}
