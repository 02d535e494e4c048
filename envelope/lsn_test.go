package envelope_test

import (
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/envelope"
)

func TestAppendLSNPrintsWhatPostgreSQLAndPglogreplPrint(t *testing.T) {
	for _, lsn := range []pglogrepl.LSN{0, 1, 0x16B3748, 0xFFFFFFFF, 0x1_00000000, 0xABCDEF01_23456789, ^pglogrepl.LSN(0)} {
		if got, want := string(envelope.AppendLSN([]byte("x"), uint64(lsn))), "x"+lsn.String(); got != want {
			t.Errorf("AppendLSN(%d) = %q, want %q", uint64(lsn), got, want)
		}
	}
}

func TestAReaderGetsBackTheAttributesAStreamedEventWasWrittenWith(t *testing.T) {
	e := envelope.NewEncoder()
	source := []byte(envelope.SourceOf("73", "app db", "public", "users"))
	hs := e.Streamed("user.created.v1", "42", source, 0x16B3748, []byte("2026-12-05T07:00:00.123456Z"), []byte("0/16B3800"))
	var a envelope.Attributes
	for _, h := range hs {
		a.Set(h.Key, h.Value)
	}
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	if a.ID != "user.created.v1:42" || a.Type != "user.created.v1" || a.Subject != "42" || a.LSN != "0/16B3748" ||
		a.Source != "postgresql://73/app%20db/public.users" || a.Time.Nanosecond() != 123456000 {
		t.Fatalf("read back %+v", a)
	}
}

func TestARecordWithoutAnIDOrWithABadTimeIsNoEvent(t *testing.T) {
	var a envelope.Attributes
	a.Set(envelope.Type, []byte("user.created.v1"))
	a.Set(envelope.Time, []byte("2026-12-05T07:00:00Z"))
	if err := a.Check(); err != envelope.ErrMissing {
		t.Fatalf("without ce_id: %v", err)
	}
	a.Set(envelope.ID, []byte("user.created.v1:1"))
	a.Set(envelope.Time, []byte("yesterday"))
	if err := a.Check(); err != envelope.ErrTime {
		t.Fatalf("with a bad ce_time: %v", err)
	}
}
