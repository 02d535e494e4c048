package replication

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

func TestChangeValuesDecodeWithPgxsTypeMap(t *testing.T) {
	rel := &Relation{Namespace: "public", Name: "users", Columns: []Column{
		{Name: "id", TypeOID: pgtype.Int4OID},
		{Name: "username", TypeOID: pgtype.VarcharOID},
		{Name: "created_at", TypeOID: pgtype.TimestampOID},
		{Name: "is_a_dog", TypeOID: pgtype.BoolOID},
		{Name: "note", TypeOID: pgtype.TextOID},
		{Name: "custom", TypeOID: 999999},
	}}
	text := func(s string) *pglogrepl.TupleDataColumn {
		return &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Length: uint32(len(s)), Data: []byte(s)}
	}
	c := &Change{Op: Insert, Relation: rel, types: pgtype.NewMap(), tuple: &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
		text("42"), text(`jtr "quoted" 🐕`), text("2021-01-01 00:00:00.123456"), text("t"),
		{DataType: pglogrepl.TupleDataTypeNull}, text("(1,2)"),
	}}}
	want := []any{int32(42), `jtr "quoted" 🐕`, time.Date(2021, 1, 1, 0, 0, 0, 123456000, time.UTC), true, nil, "(1,2)"}
	for i, w := range want {
		got, err := c.Value(i)
		if err != nil {
			t.Fatalf("column %d: %v", i, err)
		}
		if tm, ok := w.(time.Time); ok {
			if g, ok := got.(time.Time); !ok || !g.Equal(tm) {
				t.Errorf("column %d = %v, want %v", i, got, w)
			}
			continue
		}
		if got != w {
			t.Errorf("column %d = %#v, want %#v", i, got, w)
		}
	}
	if _, err := c.Value(6); err == nil {
		t.Error("a column past the tuple decodes without error")
	}
}

func TestAnUnchangedTOASTValueIsAnErrorNotAnEmptyValue(t *testing.T) {
	c := &Change{Op: Update, Relation: &Relation{Columns: []Column{{Name: "big", TypeOID: pgtype.TextOID}}}, types: pgtype.NewMap(),
		tuple: &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{{DataType: pglogrepl.TupleDataTypeToast}}}}
	if _, err := c.Value(0); err == nil {
		t.Fatal("want an error for an unchanged TOAST value")
	}
}

func TestServerErrorsThatNeedAnOperatorMapToSentinels(t *testing.T) {
	tests := []struct {
		name                  string
		code, message, detail string
		want                  error
	}{
		{"slot held by another process", "55006", `replication slot "s" is active for PID 1`, "", ErrSlotActive},
		{"slot missing", "42704", `replication slot "s" does not exist`, "", ErrSlotMissing},
		{"slot invalidated, in English", "55000", `can no longer get changes from replication slot "s"`,
			"This slot has been invalidated because it exceeded the maximum reserved size.", ErrSlotUnusable},
		{"slot invalidated, on a localized server", "55000", `kann keine Änderungen mehr aus Replikations-Slot »s« lesen`, "", ErrSlotUnusable},
		{"another error", "42P01", "relation does not exist", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := classify(&pgconn.PgError{Code: tc.code, Message: tc.message, Detail: tc.detail})
			for _, sentinel := range []error{ErrSlotActive, ErrSlotMissing, ErrSlotLost, ErrSlotUnusable} {
				if got, want := errors.Is(err, sentinel), sentinel == tc.want; got != want {
					t.Errorf("errors.Is(classify(…), %v) = %v, want %v", sentinel, got, want)
				}
			}
		})
	}
}
