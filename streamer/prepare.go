package streamer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/pgdsn"
	"github.com/userstream/userstream/kafkasink"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// plan is what prepare decided: where the session starts, and which tables,
// by relation id, the events are made from.
type plan struct {
	start pglogrepl.LSN
	// checkedAt is the WAL position read before the publication was found
	// as the events need it: the guard's first safe position.
	checkedAt pglogrepl.LSN
	tables    map[uint32]published
	fresh     bool               // the slot was created just now
	target    replication.Target // the server every connection of the session reaches
}

// published is a projected table as a passing publication check found it.
type published struct {
	pr          projection.Projector
	fingerprint string
}

// prepare checks the slot and the publication and decides where to start.
// It creates them only on the first run (nothing was ever streamed to the
// topic) or when told to (CreateSlot): anywhere else a missing slot or
// publication means changes were lost, and that needs an operator.
func (s *Streamer) prepare(ctx context.Context, startLSN pglogrepl.LSN) (plan, error) {
	conn, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
	s.postgresOK.Store(err == nil)
	if err != nil {
		return plan{}, fmt.Errorf("%w: connect: %w", errBeforeStart, err)
	}
	defer conn.Close(context.Background())
	target := replication.PinnedTo(s.cfg.DatabaseURL, conn)
	var standby bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	if standby {
		// Retried: a failover may promote it. A standby's synced slot cannot
		// be read before that.
		return plan{}, fmt.Errorf("%w: %s is a standby (in recovery): the streamer reads the primary, and waits for this server to be promoted; to follow failovers, give DATABASE_URL every host with target_session_attrs=read-write",
			errBeforeStart, pgdsn.Describe(s.cfg.DatabaseURL))
	}

	st, err := replication.Slot(ctx, conn, s.cfg.Slot)
	slotMissing := errors.Is(err, replication.ErrSlotMissing)
	if err == nil || errors.Is(err, replication.ErrSlotLost) {
		s.metrics.observeSlot(st)
	}
	switch {
	case errors.Is(err, replication.ErrSlotLost):
		return plan{}, permanent(slotLostError(s.cfg.Slot, err))
	case err != nil && !slotMissing:
		return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
	case err == nil && st.Active:
		// Checked first, so a standby's once-a-second retry stays cheap;
		// START_REPLICATION checks again.
		return plan{}, fmt.Errorf("slot %s held by pid %d: %w", s.cfg.Slot, st.ActivePID, replication.ErrSlotActive)
	}
	if err == nil {
		var db string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
		}
		if st.Database != db {
			return plan{}, permanent(fmt.Errorf("slot %s belongs to database %q, not %q: set REPLICATION_SLOT to a slot of this database, or DATABASE_URL to that database", s.cfg.Slot, st.Database, db))
		}
	}

	checkedAt, err := replication.CurrentWAL(ctx, conn)
	if err != nil {
		return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	tables, missingPubs, err := s.checkPublications(ctx, conn)
	if err != nil {
		return plan{}, err
	}
	interrupted, fresh := false, false
	if slotMissing || len(missingPubs) > 0 || s.cfg.Snapshot == SnapshotInitial {
		// One process at a time decides about creating: two first runs
		// started together would otherwise each make a slot and record a
		// boundary, and the one recorded could be the other's.
		var locked bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext('userstream:first-run:' || $1))", s.cfg.Slot).Scan(&locked); err != nil {
			return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
		}
		if !locked {
			return plan{}, fmt.Errorf("another streamer is preparing slot %s: %w", s.cfg.Slot, replication.ErrSlotActive)
		}
	}
	// The progress topic holds this slot's snapshot and publication records:
	// one read for both.
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	records, err := kafkasink.LastValues(kctx, s.cfg.Kafka.Properties, s.cfg.Kafka.ProgressTopic)
	cancel()
	if err != nil {
		return plan{}, retryable(fmt.Errorf("read the progress topic: %w", err))
	}
	// A former primary back after a failover is refused before anything
	// is made or fenced; the timeline is recorded once the slot is settled.
	server, err := replication.Identify(ctx, target)
	if err != nil {
		return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	newTimeline, err := s.checkTimeline(target, server.SystemID, server.Timeline, records[string(s.timelineKey())])
	if err != nil {
		return plan{}, err
	}
	if s.cfg.Snapshot == SnapshotInitial {
		if interrupted, err = s.redoInterruptedFirstRun(ctx, conn, slotMissing, records[string(s.snapshotKey())]); err != nil {
			return plan{}, err
		}
		slotMissing = slotMissing || interrupted
	}
	if slotMissing || len(missingPubs) > 0 {
		first := interrupted // nothing was streamed before a first run's snapshot was recorded
		if !interrupted {
			if first, err = s.mayCreate(ctx, slotMissing, missingPubs); err != nil {
				return plan{}, err
			}
		}
		for _, spec := range missingPubs {
			if err := replication.CreatePublication(ctx, conn, spec); err != nil {
				return plan{}, permanent(err)
			}
			s.log.Info().Str("publication", spec.Name).Str("table", spec.Table).Msg("created publication")
		}
		if tables, missingPubs, err = s.checkPublications(ctx, conn); err != nil {
			return plan{}, err
		}
		if len(missingPubs) > 0 {
			return plan{}, fmt.Errorf("%w: publication %s vanished right after it was created", errBeforeStart, s.cfg.Publication)
		}
		if slotMissing {
			if err := s.createSlot(ctx, conn, target, first); err != nil {
				return plan{}, err
			}
		}
		fresh = slotMissing
		s.createdSlot.Store(slotMissing)
		if st, err = replication.Slot(ctx, conn, s.cfg.Slot); err != nil {
			return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
		}
	} else if s.cfg.CreateSlot && !s.createdSlot.Load() {
		return plan{}, permanent(fmt.Errorf("CREATE_SLOT is set but slot %s exists: it is for one start after a lost slot; remove it, or a slot lost later would be recreated from now without a stop", s.cfg.Slot))
	}
	if err := s.checkFingerprint(ctx, tables, fresh, records[string(s.fingerprintKey())]); err != nil {
		return plan{}, err
	}
	s.keepOnStandbys(ctx, conn, target, st)
	s.checkStandbySlots(ctx, conn)
	if newTimeline {
		if err := s.recordTimeline(ctx, server.SystemID, server.Timeline); err != nil {
			return plan{}, err
		}
	}

	start := st.Confirmed
	if startLSN != 0 {
		if startLSN < st.Confirmed {
			return plan{}, permanent(fmt.Errorf("start LSN %s is behind slot %s's confirmed position %s: PostgreSQL cannot replay behind a slot's confirmed position (the WAL before it may be gone); start at or after %s, or omit START_LSN to resume from the slot",
				startLSN, s.cfg.Slot, st.Confirmed, st.Confirmed))
		}
		if startLSN > checkedAt {
			return plan{}, permanent(fmt.Errorf("start LSN %s is beyond the server's current WAL position %s: every insert until the WAL reached it would be skipped; give a position at or before %s",
				startLSN, checkedAt, checkedAt))
		}
		start = startLSN
	}
	return plan{start: start, checkedAt: max(checkedAt, start), tables: tables, fresh: fresh, target: target}, nil
}

// checkPublications checks each projected table's publication completely.
// It returns the tables' relation ids, and the publications that do not
// exist; a publication that exists but differs is a permanent error whose
// message holds the SQL that fixes it.
func (s *Streamer) checkPublications(ctx context.Context, conn *pgx.Conn) (map[uint32]published, []replication.PublicationSpec, error) {
	tables := map[uint32]published{}
	var missing []replication.PublicationSpec
	for _, pr := range s.cfg.Projectors {
		spec := s.publicationSpec(pr)
		pt, err := replication.CheckPublication(ctx, conn, spec)
		switch {
		case errors.Is(err, replication.ErrPublicationMissing):
			missing = append(missing, spec)
		case errors.Is(err, replication.ErrPublication):
			return nil, nil, permanent(publicationError(err))
		case err != nil:
			return nil, nil, fmt.Errorf("%w: %w", errBeforeStart, err)
		default:
			tables[pt.OID] = published{pr: pr, fingerprint: pt.Fingerprint}
		}
	}
	return tables, missing, nil
}

// publicationSpec derives a projected table's publication from its
// projector: the column list is exactly what the events are built from.
func (s *Streamer) publicationSpec(pr projection.Projector) replication.PublicationSpec {
	ns, name := pr.Table()
	return replication.PublicationSpec{Name: s.cfg.Publication, Table: ns + "." + name, Columns: pr.SourceColumns()}
}

// mayCreate allows creating a missing slot or publication on the first run
// only: when neither the topic nor the dead-letter topic ever held a record.
// It reports whether this is the first run.
func (s *Streamer) mayCreate(ctx context.Context, slotMissing bool, missingPubs []replication.PublicationSpec) (bool, error) {
	sink, err := s.newSink(s.plainKafka())
	if err != nil {
		return false, permanent(err)
	}
	defer sink.Close()
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	streamed, err := sink.HasRecords(kctx, s.cfg.Kafka.Topic, s.cfg.Kafka.DeadLetterTopic, s.cfg.Kafka.ProgressTopic)
	s.kafkaOK.Store(err == nil)
	if err != nil {
		return false, retryable(fmt.Errorf("find out whether this is the first run: %w", err))
	}
	// CREATE_SLOT allows one creation: a process that made the slot and
	// finds it missing again (a second loss, a failover without slot sync)
	// stops like any other, or it would skip that gap without a word.
	if !streamed || (s.cfg.CreateSlot && !s.createdSlot.Load()) {
		return !streamed, nil
	}
	what, dropSlot := fmt.Sprintf("replication slot %s does not exist", s.cfg.Slot), ""
	if !slotMissing {
		what = fmt.Sprintf("publication %s does not exist", missingPubs[0].Name)
		// The slot cannot decode past the point where the publication was
		// dropped, even once it is made again.
		dropSlot = " `streamer drop-slot --yes`;"
	}
	return false, permanent(fmt.Errorf("%s, but topic %s already holds events: it was dropped, lost in a failover or a restore, or this is the wrong database. Rows committed since the last streamed position were NOT streamed, and a new slot would start from now. To recover without a gap: stop every streamer;%s start one with CREATE_SLOT=true (--create-slot) once, which creates the slot and publication from now; then run `streamer backfill --missing`, which sends every user that is in the table but not in the topic; consumers deduplicate on ce_id",
		what, s.cfg.Kafka.Topic, dropSlot))
}

// retryable marks a failure before streaming as worth retrying, unless
// Kafka refused access: that needs an operator.
func retryable(err error) error {
	if kafkasink.IsPermanent(err) {
		return permanent(err)
	}
	return fmt.Errorf("%w: %w", errBeforeStart, err)
}

func slotLostError(slot string, err error) error {
	return fmt.Errorf("%w. Rows committed since the last streamed position were NOT streamed: PostgreSQL can no longer decode them for this slot. To recover without a gap: stop every streamer; run `streamer drop-slot --yes`; start one streamer with CREATE_SLOT=true (--create-slot) once; then run `streamer backfill --missing`, which sends every user that is in the table but not in the topic", err)
}

func publicationError(err error) error {
	return fmt.Errorf("%w. Rows the publication did not publish were NOT streamed, and replaying the slot will not bring them back: after the fix, run `streamer backfill --missing`, then start the streamer", err)
}
