package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/pgdsn"
	"github.com/userstream/userstream/replication"
)

// lagWarnBytes is the lag past which status says the streamer is behind: the
// threshold of the UserstreamSlotLagHigh alert in deploy/prometheus/alerts.yml.
const lagWarnBytes = 1 << 30

// status prints the slot's state: a summary with what to do by default,
// JSON with --json (for scripts). It fails when the slot is missing or lost.
func (m *Main) status(ctx context.Context, args []string) error {
	asJSON := false
	var rest []string
	for _, a := range args {
		if a == "--json" || a == "-json" {
			asJSON = true
			continue
		}
		rest = append(rest, a)
	}
	c, err := parseConfig("status", rest)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.databaseURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", pgdsn.Describe(c.databaseURL), err)
	}
	defer conn.Close(context.Background())
	st, err := replication.Slot(ctx, conn, c.slot)
	if err != nil && !errors.Is(err, replication.ErrSlotLost) && !errors.Is(err, replication.ErrSlotMissing) {
		return err
	}
	if errors.Is(err, replication.ErrSlotMissing) {
		st.Name = c.slot
	}
	if werr := writeStatus(os.Stdout, st, err, asJSON); werr != nil {
		return werr
	}
	return err
}

// writeStatus renders a slot's status; slotErr is ErrSlotMissing or
// ErrSlotLost (wrapped) or nil.
func writeStatus(w io.Writer, st replication.SlotStatus, slotErr error, asJSON bool) error {
	missing := errors.Is(slotErr, replication.ErrSlotMissing)
	advice := adviceFor(st, missing)
	if asJSON {
		out := struct {
			replication.SlotStatus
			Exists    bool   `json:"exists"`
			Restart   string `json:"restart_lsn"`
			Confirmed string `json:"confirmed_flush_lsn"`
			Server    string `json:"server_wal_lsn"`
			Advice    string `json:"advice"`
		}{st, !missing, st.RestartLSN.String(), st.Confirmed.String(), st.ServerLSN.String(), advice}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	var b strings.Builder
	if missing {
		fmt.Fprintf(&b, "slot %s does not exist\n", st.Name)
	} else {
		fmt.Fprintf(&b, "slot %s (%s) on database %s\n", st.Name, st.Plugin, st.Database)
		held := "inactive: no streamer holds it"
		if st.Active {
			held = fmt.Sprintf("active, held by pid %d", st.ActivePID)
		}
		fmt.Fprintf(&b, "  streamer    %s\n", held)
		fmt.Fprintf(&b, "  WAL status  %s\n", st.WALStatus)
		fmt.Fprintf(&b, "  lag         %s behind the server's WAL\n", bytesText(st.LagBytes))
		if st.SafeWALBytes != nil {
			fmt.Fprintf(&b, "  safe WAL    %s left before PostgreSQL may remove WAL this slot needs\n", bytesText(*st.SafeWALBytes))
		}
		fmt.Fprintf(&b, "  positions   confirmed %s, restart %s, server %s\n", st.Confirmed, st.RestartLSN, st.ServerLSN)
		failover := "no: after a failover it is missing on the new primary (PostgreSQL 17+ and SLOT_FAILOVER make it one)"
		if st.Failover {
			failover = "yes: a standby with slot sync keeps a copy"
		}
		if st.Synced {
			failover += "; this server's copy was synced from a primary"
		}
		fmt.Fprintf(&b, "  failover    %s\n", failover)
	}
	fmt.Fprintf(&b, "\nWhat to do: %s\n", advice)
	_, err := io.WriteString(w, b.String())
	return err
}

// adviceFor says what an operator should do, the most urgent matter first.
func adviceFor(st replication.SlotStatus, missing bool) string {
	switch {
	case missing:
		return "if the streamer never ran against this database, start it: the first run creates the slot. If the slot existed before, it was dropped or lost in a failover and rows committed since were not streamed: see \"A lost slot\" in docs/operations.md (stop every streamer; start one with CREATE_SLOT=true once; then streamer backfill --missing)."
	case st.WALStatus == "lost":
		return "PostgreSQL removed WAL this slot needed: the changes in it were never streamed. Stop every streamer and follow \"A lost slot\" in docs/operations.md (start one streamer with CREATE_SLOT=true once, then streamer backfill --missing)."
	case st.WALStatus == "unreserved":
		return "PostgreSQL will remove WAL this slot needs at the next checkpoint, and then events are lost. Make the streamer catch up now (is it running? does it reach Kafka? see its /readyz and log), or raise max_slot_wal_keep_size."
	case !st.Active:
		return "start a streamer (or find out why it stopped: its log says); until one holds the slot, PostgreSQL keeps all WAL from the slot's position."
	case st.WALStatus == "extended" || st.LagBytes > lagWarnBytes:
		return fmt.Sprintf("the streamer is %s behind; run status again: if the lag does not shrink, check Kafka's health and the streamer's log and metrics (userstream_streamer_commit_to_ack_seconds, delivery errors).", bytesText(st.LagBytes))
	default:
		return "nothing: a streamer holds the slot and keeps up."
	}
}

// bytesText is a byte count for people: 1.5 MiB (1572864 bytes).
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s (%d bytes)", v, suffix, n)
}
