package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/replication"
)

func TestStatusSaysWhatToDoForEachStateOfTheSlot(t *testing.T) {
	safe := int64(3 << 30)
	base := replication.SlotStatus{Name: "users_cdc", Plugin: "pgoutput", Database: "app", Active: true, ActivePID: 4242,
		WALStatus: "reserved", LagBytes: 1536, SafeWALBytes: &safe, Confirmed: pglogrepl.LSN(0x16B3748), ServerLSN: pglogrepl.LSN(0x16B3D48)}
	with := func(f func(*replication.SlotStatus)) replication.SlotStatus { s := base; f(&s); return s }
	tests := []struct {
		name    string
		st      replication.SlotStatus
		slotErr error
		want    []string
	}{
		{"a healthy slot needs nothing", base, nil,
			[]string{"active, held by pid 4242", "WAL status  reserved", "1.5 KiB (1536 bytes)", "3.0 GiB", "confirmed 0/16B3748", "What to do: nothing"}},
		{"an inactive slot asks for a streamer", with(func(s *replication.SlotStatus) { s.Active, s.ActivePID = false, 0 }), nil,
			[]string{"inactive: no streamer holds it", "What to do: start a streamer"}},
		{"a large lag says the streamer is behind", with(func(s *replication.SlotStatus) { s.LagBytes = 2 << 30 }), nil,
			[]string{"2.0 GiB (2147483648 bytes) behind", "What to do: the streamer is 2.0 GiB"}},
		{"unreserved WAL is urgent", with(func(s *replication.SlotStatus) { s.WALStatus = "unreserved" }), nil,
			[]string{"WAL status  unreserved", "will remove WAL this slot needs", "max_slot_wal_keep_size"}},
		{"a lost slot points at the recovery", with(func(s *replication.SlotStatus) { s.WALStatus = "lost" }), replication.ErrSlotLost,
			[]string{"WAL status  lost", "never streamed", "backfill --missing"}},
		{"a missing slot says when that is fine", replication.SlotStatus{Name: "users_cdc"}, fmt.Errorf("slot: %w", replication.ErrSlotMissing),
			[]string{"slot users_cdc does not exist", "the first run creates the slot", "backfill --missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var text, js bytes.Buffer
			if err := writeStatus(&text, tc.st, tc.slotErr, false); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(text.String(), w) {
					t.Errorf("the summary lacks %q:\n%s", w, text.String())
				}
			}
			if err := writeStatus(&js, tc.st, tc.slotErr, true); err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(js.Bytes(), &got); err != nil {
				t.Fatalf("--json is not JSON: %v\n%s", err, js.String())
			}
			if got["advice"] != adviceFor(tc.st, tc.slotErr != nil && strings.Contains(tc.slotErr.Error(), "does not exist")) || got["slot"] != "users_cdc" {
				t.Errorf("--json = %s", js.String())
			}
		})
	}
}

func TestStatusRunsAgainstARealSlotAsTextAndAsJSON(t *testing.T) {
	t.Parallel()
	dsn, slot := testenv.Postgres(t), testenv.Name(t, "slot")
	e2e.PrepareDatabase(t, dsn, slot)
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, testenv.Bin(t, "streamer"), append([]string{"status", "--database-url", dsn}, args...)...)
		out, err := cmd.Output()
		return string(out), err
	}
	text, err := run("--slot", slot)
	t.Logf("status:\n%s", text)
	if err != nil || !strings.Contains(text, "slot "+slot+" (pgoutput)") || !strings.Contains(text, "inactive") || !strings.Contains(text, "What to do: start a streamer") {
		t.Errorf("status = %v:\n%s", err, text)
	}
	js, err := run("--json", "--slot", slot)
	var got struct {
		Slot      string `json:"slot"`
		Exists    bool   `json:"exists"`
		WALStatus string `json:"wal_status"`
		Confirmed string `json:"confirmed_flush_lsn"`
	}
	if err != nil || json.Unmarshal([]byte(js), &got) != nil || got.Slot != slot || !got.Exists || got.WALStatus != "reserved" || got.Confirmed == "" {
		t.Errorf("status --json = %v:\n%s", err, js)
	}
	missing, err := run("--slot", "no_such_slot")
	if err == nil || !strings.Contains(missing, "does not exist") {
		t.Errorf("status of a missing slot = %v (want a non-zero exit):\n%s", err, missing)
	}
}
