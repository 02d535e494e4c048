package streamer

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/replication"
)

// A failover slot is only as good as the standby's copy of it: the primary
// must not send a logical consumer WAL that the standby has not flushed
// (synchronized_standby_slots), or after a failover Kafka holds users the
// new primary never received, and the ids they had are handed out again.
// And a synchronized_standby_slots naming a slot that is gone (a promoted
// standby that inherited its primary's setting) makes every logical
// walsender wait forever. The streamer says so at each session start; it
// cannot set either itself.

// keepOnStandbys turns failover on for a slot made without it (before
// PostgreSQL 17, before an upgrade, or before this setting), on 17+. A
// failure only costs the failover: it is logged, not fatal.
func (s *Streamer) keepOnStandbys(ctx context.Context, conn *pgx.Conn, target replication.Target, st replication.SlotStatus) {
	if s.cfg.DisableSlotFailover || st.Failover || replication.ServerMajor(conn.PgConn()) < replication.FailoverSlotsSince {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := replication.EnableFailover(actx, target, s.cfg.Slot); err != nil {
		s.log.Warn().Err(err).Str("slot", s.cfg.Slot).Msg("could not make the slot a failover slot: after a failover it will be missing on the new primary")
		return
	}
	s.log.Info().Str("slot", s.cfg.Slot).Msg("the slot is now a failover slot: standbys with slot sync keep a copy")
}

// checkStandbySlots warns about a primary whose standbys are not waited
// for, and about one that waits for a standby slot it will never see, on
// PostgreSQL 17+ (before 17 there is neither setting nor failover).
func (s *Streamer) checkStandbySlots(ctx context.Context, conn *pgx.Conn) {
	if s.cfg.DisableSlotFailover || replication.ServerMajor(conn.PgConn()) < replication.FailoverSlotsSince {
		return
	}
	setting, standbys, err := replication.StandbySlots(ctx, conn)
	if err != nil {
		s.log.Warn().Err(err).Msg("could not read synchronized_standby_slots")
		return
	}
	if strings.TrimSpace(setting) == "" {
		if standbys > 0 {
			s.log.Warn().Int("physical_slots", standbys).Msg("synchronized_standby_slots is empty on a primary with standbys: the streamer may send users a standby has not received, and after a failover to it the new primary hands their ids out again (consumers deduplicating on ce_id then drop the new users). Set it to the standbys' physical slots (docs/operations.md, Failover)")
		}
		return
	}
	for _, name := range strings.Split(setting, ",") {
		name = strings.TrimSpace(name)
		physical, active, err := replication.PhysicalSlot(ctx, conn, name)
		switch {
		case err == nil && !physical:
			s.log.Error().Str("synchronized_standby_slot", name).Msg("synchronized_standby_slots names a slot that is not a physical slot of this server (a promoted standby that kept its primary's setting?): PostgreSQL makes the stream wait for it forever. Set synchronized_standby_slots to this server's standbys' physical slots, or empty it (docs/operations.md, Failover)")
		case err == nil && !active:
			s.log.Warn().Str("synchronized_standby_slot", name).Msg("the standby of a slot in synchronized_standby_slots is not connected: the stream waits for it to come back")
		}
	}
}
