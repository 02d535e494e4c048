package eventfile_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/eventfile"
)

func userCreated(t *testing.T) *eventfile.Schema {
	t.Helper()
	all, err := eventfile.Contracts(envelope.Schemas)
	if err != nil {
		t.Fatal(err)
	}
	s := all["user.created.v1"]
	if s == nil {
		t.Fatalf("no user.created.v1 among %v", all)
	}
	return s
}

func rec(i int) eventfile.Record {
	return eventfile.Record{
		Partition: 2, Offset: int64(i), Key: []byte(fmt.Sprint(i)),
		Value:  []byte(fmt.Sprintf(`{"username":"user-%d","country_code":"BE","created_at":"2024-05-06T07:08:09.123456Z"}`, i)),
		CEID:   fmt.Sprintf("%d@0/16B%04X", i, i),
		CETime: time.Date(2024, 5, 6, 7, 8, 9, 654321000, time.UTC), CESource: "postgresql://1/userstream/public.users",
		CEType: "user.created.v1", LSN: fmt.Sprintf("0/16B%04X", i),
	}
}

func write(t *testing.T, s *eventfile.Schema, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := s.NewWriter(&buf, 100, "")
	for i := 0; i < n; i++ {
		row, err := s.Row(rec(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(row, 100); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTheColumnsAreTheContractsFieldsAndTheEnvelope(t *testing.T) {
	got := strings.Join(userCreated(t).Columns(), ",")
	for _, want := range []string{"username", "country_code", "created_at", "ce_id", "ce_time", "ce_source", "ce_type", "kafka_key", "kafka_partition", "kafka_offset", "lsn"} {
		if !strings.Contains(","+got+",", ","+want+",") {
			t.Errorf("columns %s lack %s", got, want)
		}
	}
}

func TestTheSameRecordsMakeTheSameBytes(t *testing.T) {
	s := userCreated(t)
	a, b := write(t, s, 250), write(t, s, 250)
	if !bytes.Equal(a, b) {
		t.Fatalf("two writes of the same 250 records differ (%d and %d bytes)", len(a), len(b))
	}
}

func TestAFileReadsBackWithMicrosecondUTCTimestampsAndZstd(t *testing.T) {
	s := userCreated(t)
	data := write(t, s, 250)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.NumRows() != 250 {
		t.Fatalf("%d rows, want 250", f.NumRows())
	}
	if n := len(f.RowGroups()); n != 3 {
		t.Errorf("%d row groups for 250 rows at 100 per group, want 3", n)
	}
	for _, name := range []string{"created_at", "ce_time"} {
		leaf, ok := f.Schema().Lookup(name)
		if !ok {
			t.Fatalf("no column %s", name)
		}
		ts, ok := leaf.Node.Type().LogicalType().Value.(*format.TimestampType)
		if !ok {
			t.Fatalf("%s is %v, want a TIMESTAMP", name, leaf.Node.Type())
		}
		if _, micros := ts.Unit.Value.(*format.MicroSeconds); !micros || !ts.IsAdjustedToUTC {
			t.Errorf("%s is %v, want a UTC TIMESTAMP in microseconds", name, leaf.Node.Type())
		}
	}
	for _, cc := range f.Metadata().RowGroups[0].Columns {
		if cc.MetaData.Codec.String() != "ZSTD" {
			t.Errorf("column %v compressed with %s, want ZSTD", cc.MetaData.PathInSchema, cc.MetaData.Codec)
		}
	}
	type row struct {
		Username  string    `parquet:"username"`
		CreatedAt time.Time `parquet:"created_at,timestamp(microsecond)"`
		CEID      string    `parquet:"ce_id"`
		Offset    int64     `parquet:"kafka_offset"`
		LSN       *string   `parquet:"lsn,optional"`
	}
	rows, err := parquet.Read[row](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got, want := rows[7], rec(7)
	if got.Username != "user-7" || got.CEID != want.CEID || got.Offset != 7 || got.LSN == nil || *got.LSN != want.LSN ||
		!got.CreatedAt.Equal(time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)) {
		t.Errorf("row 7 read back as %+v", got)
	}
}

func TestEscapedStringsAreStoredDecodedAndPlainOnesAsTheyAre(t *testing.T) {
	s := userCreated(t)
	var buf bytes.Buffer
	w := s.NewWriter(&buf, 0, "")
	for i, name := range []string{`plain-\u00e9`, `quote\"d`, `plain-é`} {
		r := rec(i)
		r.Value = []byte(`{"username":"` + name + `","country_code":"BE","created_at":"2024-05-06T07:08:09Z"}`)
		row, err := s.Row(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(row, 100); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Username string `parquet:"username"`
	}
	rows, err := parquet.Read[row](bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"plain-é", `quote"d`, "plain-é"} {
		if rows[i].Username != want {
			t.Errorf("row %d: %q, want %q", i, rows[i].Username, want)
		}
	}
}

func TestARecordThatBreaksTheContractIsRefusedWithoutItsContent(t *testing.T) {
	s := userCreated(t)
	cases := []struct {
		name  string
		value string
		edit  func(*eventfile.Record)
		want  string
	}{
		{name: "a value that is not JSON", value: `secret-bones`, want: "not a JSON object"},
		{name: "a missing required field", value: `{"username":"secret-bones","country_code":"BE"}`, want: `"created_at" is missing`},
		{name: "a field outside the contract", value: `{"username":"secret-bones","country_code":"BE","created_at":"2024-05-06T07:08:09Z","is_a_dog":true}`, want: `"is_a_dog" is not in`},
		{name: "a timestamp that is not RFC 3339", value: `{"username":"secret-bones","country_code":"BE","created_at":"yesterday"}`, want: `"created_at": want an RFC 3339`},
		{name: "a timestamp finer than a microsecond", value: `{"username":"secret-bones","country_code":"BE","created_at":"2024-05-06T07:08:09.1234567Z"}`, want: "finer than a microsecond"},
		{name: "a number where a string belongs", value: `{"username":7,"country_code":"BE","created_at":"2024-05-06T07:08:09Z"}`, want: `"username": want a string`},
		{name: "trailing bytes after the object", value: `{"username":"secret-bones","country_code":"BE","created_at":"2024-05-06T07:08:09Z"} {}`, want: "not a JSON object"},
		{name: "no ce_id", edit: func(r *eventfile.Record) { r.CEID = "" }, want: "no ce_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rec(1)
			if c.value != "" {
				r.Value = []byte(c.value)
			}
			if c.edit != nil {
				c.edit(&r)
			}
			_, err := s.Row(r)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secret-bones") {
				t.Errorf("the error leaks the value: %v", err)
			}
		})
	}
}

func TestANewContractVersionWithANewFieldAddsANullableColumn(t *testing.T) {
	v2 := []byte(`{"type":"object","required":["username"],"properties":{"username":{"type":"string"},"plan":{"type":"string"},"seats":{"type":"integer"}}}`)
	s, err := eventfile.FromContract("user.created.v2", v2)
	if err != nil {
		t.Fatal(err)
	}
	r := rec(1)
	r.CEType, r.Value = "user.created.v2", []byte(`{"username":"u","seats":3}`)
	if _, err := s.Row(r); err != nil {
		t.Fatalf("a v2 event without the optional plan: %v", err)
	}
	if cols := strings.Join(s.Columns(), ","); !strings.Contains(cols, "plan") || !strings.Contains(cols, "seats") {
		t.Errorf("columns %s lack the new fields", cols)
	}
}
